package file

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/bus"
)

// BenchmarkFileToJetStream measures a log read from the start into a real
// JetStream (file storage), acknowledged, checkpointed.
func BenchmarkFileToJetStream(b *testing.B) {
	env := newJS(b)
	log := filepath.Join(b.TempDir(), "audit.log")
	appendFile(b, log, []byte(events(map[string]bool{}, "bench", b.N)))
	b.SetBytes(int64(len(eventLine("bench-0"))))
	b.ResetTimer()
	began := time.Now()
	r := start(b, Options{Path: log}, b.TempDir(), env.pub)
	env.waitCount(b, bus.StreamAudit, uint64(b.N))
	elapsed := time.Since(began)
	b.StopTimer()
	r.stop(b)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkLineReader measures splitting a log into lines.
func BenchmarkLineReader(b *testing.B) {
	data := strings.Repeat(eventLine("6f1c1b0e-0000-4000-8000-000000000001"), 1000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		lr := newLineReader(strings.NewReader(data), 0, 16<<20, 0)
		for {
			if _, err := lr.next(); err != nil {
				break
			}
		}
	}
}
