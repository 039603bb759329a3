package engine

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// BenchmarkEval runs the full default pack over the real benign cluster log:
// the per-event cost of the engine, excluding decoding.
func BenchmarkEval(b *testing.B) {
	data, err := os.ReadFile("../../shared/corpus/immudb-log-audit/k8s.log")
	if err != nil {
		b.Fatal(err)
	}
	var events []*audit.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ev, err := audit.Decode(sc.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, ev)
	}
	ev := NewEvaluator(defaultSet(b), NewMemoryThresholds())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := ev.Evaluate(ctx, events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvalWithBodies runs the full pack over Falco's captures, most of
// them RequestResponse events whose bodies the workload rules decode.
func BenchmarkEvalWithBodies(b *testing.B) {
	files, err := filepath.Glob("../../shared/corpus/falco-trace-files/*.json")
	if err != nil {
		b.Fatal(err)
	}
	var events []*audit.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if ev, err := audit.Decode(line); err == nil {
				events = append(events, ev)
			}
		}
	}
	ev := NewEvaluator(defaultSet(b), NewMemoryThresholds())
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ev.Evaluate(ctx, events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
	}
}
