package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/pubsubtest"
	"github.com/vigil-k8s/vigil/rules"
)

// The Pub/Sub client, linked through the gke source, leaves goroutines of
// its own behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, pubsubtest.IgnoreLeaks()...) }

func defaultSet(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.Load(rules.LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestWorkloadIsDeterministicAndRealistic checks what the figures rest on:
// the same seed gives the same events, every event is a valid audit event,
// the mix has the advertised rates, and auditIDs are fresh on every replay
// of the corpus but shared by the stages of one request.
func TestWorkloadIsDeterministicAndRealistic(t *testing.T) {
	w1, err := NewWorkload(7)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := NewWorkload(7)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewWorkload(8)
	if err != nil {
		t.Fatal(err)
	}
	// Past one replay of the corpus, so that the second replay's IDs are checked.
	n := w1.CorpusEvents()*11/10 + 200
	kinds := map[Kind]int{}
	ids := map[string]map[string]bool{} // auditID → stages
	var a, b []byte
	differs := false
	for i := range n {
		var k Kind
		a, k = w1.Event(a[:0], i)
		b, _ = w2.Event(b[:0], i)
		if !bytes.Equal(a, b) {
			t.Fatalf("event %d differs between two workloads of one seed", i)
		}
		if c, _ := other.Event(nil, i); !bytes.Equal(a, c) {
			differs = true
		}
		ev, err := audit.Decode(a)
		if err != nil {
			t.Fatalf("event %d (%v) is not an audit event: %v\n%s", i, k, err, a)
		}
		if ev.Time().Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("event %d keeps its old time %s", i, ev.Time())
		}
		kinds[k]++
		if ids[ev.AuditID] == nil {
			ids[ev.AuditID] = map[string]bool{}
		}
		if ids[ev.AuditID][ev.Stage] {
			t.Fatalf("event %d: auditID %s stage %s seen twice: replays must get fresh auditIDs", i, ev.AuditID, ev.Stage)
		}
		ids[ev.AuditID][ev.Stage] = true
		if k == KindLarge {
			if len(ev.RequestObject)+len(ev.ResponseObject) < minBody || ev.Level != "RequestResponse" {
				t.Fatalf("large event %d: level %s, bodies of %d and %d bytes", i, ev.Level, len(ev.RequestObject), len(ev.ResponseObject))
			}
		}
	}
	if !differs {
		t.Error("seeds 7 and 8 give the same events")
	}
	attack, large := w1.Rates()
	if got := float64(kinds[KindAttack]) / float64(n); got < attack*0.9 || got > attack*1.1 {
		t.Errorf("attack share %.4f, want %.4f", got, attack)
	}
	if got := float64(kinds[KindLarge]) / float64(n); got < large*0.9 || got > large*1.1 {
		t.Errorf("large share %.4f, want %.4f", got, large)
	}
	multi := 0
	for _, stages := range ids {
		if len(stages) > 1 {
			multi++
		}
	}
	if multi < 1000 {
		t.Errorf("only %d requests have several stages: replay lost the stage pairing", multi)
	}
}

// TestAttacksAreDetected checks that each attack template raises the alert
// it stands for under the default pack, so that the end-to-end phase
// measures alerts, not silence.
func TestAttacksAreDetected(t *testing.T) {
	w, err := NewWorkload(1)
	if err != nil {
		t.Fatal(err)
	}
	ev := engine.NewEvaluator(defaultSet(t), engine.NewMemoryThresholds())
	fired := map[string]int{}
	seen := map[string]bool{}
	for i := range 5000 {
		line, k := w.Event(nil, i)
		if k != KindAttack {
			continue
		}
		e, err := audit.Decode(line)
		if err != nil {
			t.Fatal(err)
		}
		as, err := ev.Evaluate(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			fired[a.Rule]++
		}
		if len(as) == 0 {
			t.Errorf("attack event %d raised no alert:\n%s", i, line)
		}
	}
	for _, r := range w.AttackRules() {
		seen[r] = true
		if fired[r] == 0 {
			t.Errorf("no attack raised %s; fired: %v", r, fired)
		}
	}
	if len(seen) != 5 {
		t.Errorf("attack rules %v, want 5 distinct", w.AttackRules())
	}
}

// TestRunReportsEveryPhase runs the harness small: every figure is filled,
// the end-to-end phase delivers exactly the alerts the offline evaluation
// expects, and the webhook phase stores every event.
func TestRunReportsEveryPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole pipeline three times")
	}
	r, err := Run(context.Background(), Options{
		Events:   1_000,
		Rate:     1_000,
		Duration: time.Second,
		TempDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		t.Errorf("problem: %s", p)
	}
	if r.Engine.Events != 1_000 || r.Engine.EventsPerSec <= 0 || r.Engine.Alerts == 0 {
		t.Errorf("engine phase incomplete: %+v", r.Engine)
	}
	e := r.EndToEnd
	if e == nil || e.ExpectedAlerts == 0 || e.Missing != 0 || e.Delivered != e.ExpectedAlerts || e.Duplicates != 0 || e.Evaluated != 1_000 || e.EventsPerSec <= 0 {
		t.Errorf("end to end did not deliver every expected alert once: %+v", e)
	}
	if wh := r.Webhook; wh == nil || !wh.Segments || wh.Stored != 1_000 || wh.Failed != 0 || wh.EventsPerSec <= 0 || wh.Messages >= wh.Stored {
		t.Errorf("webhook phase did not store every event in segments: %+v", wh)
	}
	if wh := r.WebhookSingle; wh == nil || wh.Segments || wh.Stored != 1_000 || wh.Messages != 1_000 || wh.Failed != 0 {
		t.Errorf("webhook phase without segments did not store every event in a message of its own: %+v", wh)
	}
	if l := r.Latency; l == nil || l.Events == 0 || l.Samples == 0 || l.Missing != 0 || l.MaxMs < l.P99Ms || l.P99Ms < l.P50Ms || l.P50Ms <= 0 {
		t.Errorf("latency phase incomplete: %+v", l)
	}
	if r.PeakRSSBytes == 0 && runtime.GOOS == "linux" {
		t.Error("peak RSS not measured")
	}
	if _, err := exec.LookPath("jq"); err == nil {
		if j := r.JQ; j == nil || !j.Ran || j.Ratio <= 0 || j.JQMatches != j.VigilMatches || j.JQMatches == 0 {
			t.Errorf("jq phase incomplete or its rule not equivalent: %+v", j)
		}
	}
	if len(r.Targets) != 6 {
		t.Errorf("%d targets, want the 6 of the issue", len(r.Targets))
	}
	if r.PerPhaseRSS {
		// Sustained load is the latency phase, not the bursts of the
		// throughput phases.
		want := fmt.Sprintf("%.0f MiB (latency phase)", float64(r.Latency.PeakRSSBytes)/mib)
		for _, tg := range r.Targets {
			if strings.HasPrefix(tg.Figure, "peak RSS") && tg.Measured != want {
				t.Errorf("peak RSS target measured %q, want %q", tg.Measured, want)
			}
		}
	}

	var text, js bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"engine (1 core", "end to end", "webhook ingest, segments", "webhook ingest, 1 event/message", "latency", "peak RSS", "vigil / jq", "≥ 300,000 events/s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Engine == nil || back.EndToEnd == nil || back.Latency == nil {
		t.Errorf("JSON report does not round-trip: %v", err)
	}
}

func TestRunRejectsUnknownPhase(t *testing.T) {
	_, err := Run(context.Background(), Options{Events: 10, Skip: []string{"e2e", "everything"}})
	if err == nil || !strings.Contains(err.Error(), `"everything"`) {
		t.Fatalf("err = %v, want one naming the unknown phase", err)
	}
}

// BenchmarkEngine is the engine phase as a Go benchmark, for profiling:
// decode and evaluate the bench workload with the full default pack, as a
// whole (mix) and by kind of event, and decoding alone.
//
//	go test -run '^$' -bench Engine -cpuprofile cpu.out ./internal/bench
func BenchmarkEngine(b *testing.B) {
	w, err := NewWorkload(DefaultSeed)
	if err != nil {
		b.Fatal(err)
	}
	const n = 20_000
	byKind := map[string][][]byte{}
	for i := range n {
		line, k := w.Event(nil, i)
		byKind["mix"] = append(byKind["mix"], line)
		name := map[Kind]string{KindBenign: "benign", KindAttack: "attack", KindLarge: "large"}[k]
		byKind[name] = append(byKind[name], line)
	}
	ev := engine.NewEvaluator(defaultSet(b), engine.NewMemoryThresholds())
	ctx := context.Background()
	for _, name := range []string{"mix", "benign", "attack", "large"} {
		lines := byKind[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var e audit.Event
			for i := 0; b.Loop(); i++ {
				if err := audit.DecodeShared(lines[i%len(lines)], &e); err != nil {
					b.Fatal(err)
				}
				if _, err := ev.Evaluate(ctx, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/decode-only", func(b *testing.B) {
			b.ReportAllocs()
			var e audit.Event
			for i := 0; b.Loop(); i++ {
				if err := audit.DecodeShared(lines[i%len(lines)], &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplay is the vigil side of the jq comparison: engine.Replay
// over a log of the workload, read from a file, full pack.
func BenchmarkReplay(b *testing.B) {
	w, err := NewWorkload(DefaultSeed)
	if err != nil {
		b.Fatal(err)
	}
	const n = 20_000
	var data []byte
	for i := range n {
		data, _ = w.Event(data, i)
		data = append(data, '\n')
	}
	path := filepath.Join(b.TempDir(), "audit.log")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	set := defaultSet(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		st, err := engine.Replay(context.Background(), set, []string{path}, engine.ReplayOptions{OnAlert: func(*alert.Alert) error { return nil }})
		if err != nil || st.Events != n {
			b.Fatalf("replayed %d events: %v", st.Events, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
