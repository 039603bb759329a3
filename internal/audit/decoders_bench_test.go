package audit

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"testing"

	goccy "github.com/goccy/go-json"
)

// BenchmarkDecoders decodes every line of the real-cluster log (2,971
// events of a MicroK8s cluster, the file vigil bench replays) into an
// Event with vigil's decoder, with goccy/go-json and with encoding/json,
// and reports the cost per event. All three fill the same struct, bodies
// kept as raw JSON; vigil's shares the strings of its input when told the
// input never changes (DecodeShared), as the engine's does.
//
//	go test -run '^$' -bench Decoders -benchmem ./internal/audit
func BenchmarkDecoders(b *testing.B) {
	lines, size := clusterLog(b)
	for _, dec := range []struct {
		name   string
		decode func([]byte, *Event) error
	}{
		{"vigil", DecodeInto},
		{"vigil-shared", DecodeShared},
		{"goccy", func(line []byte, ev *Event) error { *ev = Event{}; return goccy.Unmarshal(line, ev) }},
		{"encoding-json", func(line []byte, ev *Event) error { *ev = Event{}; return json.Unmarshal(line, ev) }},
	} {
		b.Run(dec.name, func(b *testing.B) {
			b.SetBytes(size)
			var ev Event
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c0, passes := cpuTime(), 0
			for b.Loop() {
				for _, line := range lines {
					if err := dec.decode(line, &ev); err != nil {
						b.Fatal(err)
					}
				}
				passes++
			}
			cpu := cpuTime() - c0
			runtime.ReadMemStats(&m1)
			events := float64(passes * len(lines))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
			b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/events, "allocs/event")
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/events, "B/event")
		})
	}
}

// clusterLog reads the lines of the real-cluster log shipped with vigil
// bench, and their size in bytes.
func clusterLog(b *testing.B) ([][]byte, int64) {
	f, err := os.Open("../bench/testdata/k8s.log.gz")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	var size int64
	for line := range bytes.Lines(data) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			lines = append(lines, line)
			size += int64(len(line))
		}
	}
	if len(lines) != 2971 {
		b.Fatalf("read %d events of the cluster log, want 2971", len(lines))
	}
	return lines, size
}
