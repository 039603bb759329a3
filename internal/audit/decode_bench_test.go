package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	goccy "github.com/goccy/go-json"
)

// cpuTime is the process's CPU time: on a busy machine wall-clock ns/op
// varies with the neighbours, CPU time far less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs f b.N times and reports its CPU time per call.
func loopCPU(b *testing.B, f func(i int)) {
	b.ReportAllocs()
	c0, n := cpuTime(), 0
	for i := 0; b.Loop(); i++ {
		f(i)
		n++
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(n), "cpu-ns/op")
}

// benchLines are the real cluster log, plus a RequestResponse event with
// 50 KiB bodies like those `vigil bench` mixes in.
func benchLines(b *testing.B) (small, large [][]byte) {
	data, err := os.ReadFile("../../../shared/corpus/immudb-log-audit/k8s.log")
	if err != nil {
		b.Fatal(err)
	}
	for line := range bytes.Lines(data) {
		small = append(small, bytes.TrimSpace(line))
	}
	fill := strings.Repeat("lorem ipsum dolor sit amet ", 50<<10/27)
	large = append(large, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5b0d3f3e-8d4c-4c43-9a55-1f0e4c5b6a7d",`+
		`"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/monitoring/configmaps/dash","verb":"update",`+
		`"user":{"username":"system:serviceaccount:argocd:argocd-application-controller","groups":["system:serviceaccounts","system:authenticated"]},`+
		`"sourceIPs":["10.1.12.4"],"userAgent":"argocd-application-controller/v2.10.0","objectRef":{"resource":"configmaps","namespace":"monitoring","name":"dash","apiVersion":"v1"},`+
		`"responseStatus":{"metadata":{},"code":200},`+
		`"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"dash","namespace":"monitoring"},"data":{"dashboards.json":"`+fill+`"}},`+
		`"responseObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"dash","namespace":"monitoring","resourceVersion":"918273"},"data":{"dashboards.json":"`+fill+`"}},`+
		`"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.003000Z",`+
		`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}`))
	return small, large
}

func BenchmarkDecode(b *testing.B) {
	small, large := benchLines(b)
	for _, set := range []struct {
		name  string
		lines [][]byte
	}{{"cluster-log", small}, {"large-bodies", large}} {
		var n int64
		for _, l := range set.lines {
			n += int64(len(l))
		}
		b.Run(set.name, func(b *testing.B) {
			b.SetBytes(n / int64(len(set.lines)))
			var ev Event
			loopCPU(b, func(i int) {
				if err := DecodeInto(set.lines[i%len(set.lines)], &ev); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(set.name+"-shared", func(b *testing.B) {
			b.SetBytes(n / int64(len(set.lines)))
			var ev Event
			loopCPU(b, func(i int) {
				if err := DecodeShared(set.lines[i%len(set.lines)], &ev); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(set.name+"-encoding-json", func(b *testing.B) {
			b.SetBytes(n / int64(len(set.lines)))
			loopCPU(b, func(i int) {
				var ev Event
				if err := json.Unmarshal(set.lines[i%len(set.lines)], &ev); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(set.name+"-goccy", func(b *testing.B) {
			b.SetBytes(n / int64(len(set.lines)))
			loopCPU(b, func(i int) {
				var ev Event
				if err := goccy.Unmarshal(set.lines[i%len(set.lines)], &ev); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(set.name+"-ParseRaw", func(b *testing.B) {
			b.SetBytes(n / int64(len(set.lines)))
			loopCPU(b, func(i int) {
				if _, err := ParseRaw(set.lines[i%len(set.lines)]); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
