package file

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/ingesttest"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/metrics"
)

func fileSize(t testing.TB, name string) int64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// eventLine is one audit log line as kube-apiserver writes it.
func eventLine(id string) string {
	return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"` + id +
		`","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get",` +
		`"user":{"username":"system:serviceaccount:default:app","groups":["system:serviceaccounts"]},` +
		`"sourceIPs":["10.0.0.7"],"userAgent":"curl/8.5.0","objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},` +
		`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-04T10:00:00.000000Z","stageTimestamp":"2026-03-04T10:00:00.001000Z"}` + "\n"
}

// events writes n events named prefix-0.. to want and returns their lines.
func events(want map[string]bool, prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		id := prefix + "-" + strconv.Itoa(i)
		want[id+"/ResponseComplete"] = true
		b.WriteString(eventLine(id))
	}
	return b.String()
}

func TestFollowsRealAuditLogAndDeadLettersWhatIsNotAnEvent(t *testing.T) {
	env := newJS(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	real := filepath.Join(corpus, "immudb-log-audit", "k8s.log")
	copyFile(t, real, log)
	malformedAt, _ := os.Stat(log)
	copyFile(t, filepath.Join(corpus, "falco-trace-files", "fal_01_003.json"), log)
	appendFile(t, log, []byte("\n"))                                                   // the corpus file has no final newline
	copyFile(t, filepath.Join(corpus, "falco-trace-files", "create_secret.json"), log) // ends with a blank line
	want := idsIn(t, real, filepath.Join(corpus, "falco-trace-files", "create_secret.json"))
	if len(want) != 2972 {
		t.Fatalf("corpus has %d distinct events, want 2972", len(want))
	}

	m := metrics.New(prometheus.NewRegistry())
	r := start(t, Options{Path: log, Metrics: m}, t.TempDir(), env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	env.waitCount(t, bus.StreamDead, 1)
	// Stored is not yet acknowledged to the tailer: its checkpoint moves
	// once the Publisher returns.
	waitFor(t, "the checkpoint to reach the end of the log", func() bool {
		return value(t, m.CheckpointOffset.WithLabelValues(log)) == float64(fileSize(t, log))
	})
	r.stop(t)

	env.expectExactlyOnce(t, want)
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 1 {
		t.Fatalf("DEAD holds %d messages, want 1 (the malformed line)", len(dead))
	}
	wantSrc := fmt.Sprintf("file:%s:%d", log, malformedAt.Size())
	if got := dead[0].Headers().Get(bus.HeaderSource); got != wantSrc {
		t.Errorf("dead letter source = %q, want %q", got, wantSrc)
	}
	if got := string(dead[0].Data()); got != `{"kind": 0}` {
		t.Errorf("dead letter data = %q, want the malformed line", got)
	}
	if reason := dead[0].Headers().Get(bus.HeaderReason); !strings.Contains(reason, "malformed") {
		t.Errorf("dead letter reason = %q, want it to say the event is malformed", reason)
	}
}

func TestFollowsRotationTruncationAndLateCreation(t *testing.T) {
	env := newJS(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	want := map[string]bool{}

	// The log does not exist yet when vigil starts.
	r := start(t, Options{Path: log}, t.TempDir(), env.pub)
	appendFile(t, log, []byte(events(want, "created-late", 50)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))

	// Rotation as lumberjack does it: the last lines land just before
	// the rename, then a new file is created.
	appendFile(t, log, []byte(events(want, "before-rename", 50)))
	if err := os.Rename(log, filepath.Join(dir, "audit-2026-03-04T10-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "after-rename", 50)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))

	// copytruncate: lines written just before the copy are read from the
	// copy if the truncation came first.
	appendFile(t, log, []byte(events(want, "before-copy", 50)))
	copyFile(t, log, log+".1")
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "after-copytruncate", 20)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))

	// Plain truncation, then more lines than were there before: the
	// fingerprint of the first bytes tells the file was rewritten.
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "after-truncate", 200)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))

	// A line written in two parts is published once, whole.
	line := eventLine("split")
	want["split/ResponseComplete"] = true
	appendFile(t, log, []byte(line[:100]))
	appendFile(t, log, []byte(line[100:]))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))

	r.stop(t)
	env.expectExactlyOnce(t, want)
	if n := env.count(t, bus.StreamDead); n != 0 {
		t.Errorf("DEAD holds %d messages, want 0: no line was malformed", n)
	}
}

func TestResumesAfterRestartWhenRotatedWhileStopped(t *testing.T) {
	env := newJS(t)
	dir, data := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "audit.log")
	want := map[string]bool{}
	appendFile(t, log, []byte(events(want, "first-run", 100)))
	r := start(t, Options{Path: log}, data, env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	r.stop(t)

	// While stopped: more lines in the checkpointed file, then two
	// rotations.
	appendFile(t, log, []byte(events(want, "unread-tail", 30)))
	if err := os.Rename(log, filepath.Join(dir, "audit-2026-03-04T10-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "second-file", 40)))
	if err := os.Rename(log, filepath.Join(dir, "audit-2026-03-04T10-05-00.000.log")); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "active", 20)))

	r = start(t, Options{Path: log}, data, env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	appendFile(t, log, []byte(events(want, "after-restart", 10)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	r.stop(t)
	env.expectExactlyOnce(t, want)
}

func TestStartAtEndSkipsWhatWasThere(t *testing.T) {
	env := newJS(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	old := map[string]bool{}
	partial := eventLine("being-written")
	appendFile(t, log, []byte(events(old, "old", 100)+partial[:50]))

	data := t.TempDir()
	r := start(t, Options{Path: log, StartAt: StartEnd}, data, env.pub)
	// The end is where the log ends when vigil opens it, which it records
	// in its first checkpoint.
	waitFor(t, "first checkpoint", func() bool {
		cks, _ := filepath.Glob(filepath.Join(data, "checkpoints", "file", "*.json"))
		return len(cks) == 1
	})
	want := map[string]bool{}
	// The rest of the line being written when vigil started is part of
	// the past: it must be skipped, not dead-lettered as half an event.
	appendFile(t, log, []byte(partial[50:]+events(want, "new", 25)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	r.stop(t)
	env.expectExactlyOnce(t, want)
	if n := env.count(t, bus.StreamDead); n != 0 {
		t.Errorf("DEAD holds %d messages, want 0", n)
	}
}

func TestGlobFollowsEachActiveLogWithItsOwnCheckpoint(t *testing.T) {
	env := newJS(t)
	dir, data := t.TempDir(), t.TempDir()
	want := map[string]bool{}
	appendFile(t, filepath.Join(dir, "apiserver-1.log"), []byte(events(want, "one", 30)))
	appendFile(t, filepath.Join(dir, "apiserver-2.log"), []byte(events(want, "two", 30)))
	// A backup matches the glob too, but is not a log of its own.
	appendFile(t, filepath.Join(dir, "apiserver-1-2026-03-04T10-00-00.000.log"), []byte(events(map[string]bool{}, "backup", 30)))

	r := start(t, Options{Path: filepath.Join(dir, "*.log")}, data, env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	// An apiserver that joins later is picked up.
	appendFile(t, filepath.Join(dir, "apiserver-3.log"), []byte(events(want, "three", 30)))
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	r.stop(t)
	env.expectExactlyOnce(t, want)

	cks, err := filepath.Glob(filepath.Join(data, "checkpoints", "file", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cks) != 3 {
		t.Errorf("checkpoints %v, want one per active log (3)", cks)
	}
}

func TestOverlongLineIsDeadLetteredAndReadingGoesOn(t *testing.T) {
	env := newJS(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	const limit = 64 << 10
	huge := strings.Replace(eventLine("huge"), `"level":"Metadata"`, `"level":"Metadata","annotations":{"x":"`+strings.Repeat("a", 1<<20)+`"}`, 1)
	want := map[string]bool{}
	appendFile(t, log, []byte(huge+events(want, "after", 5)))

	m := metrics.New(prometheus.NewRegistry())
	r := start(t, Options{Path: log, MaxLineBytes: limit, Metrics: m}, t.TempDir(), env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	env.waitCount(t, bus.StreamDead, 1)
	r.stop(t)
	if got := value(t, m.LimitExceeded.WithLabelValues("max_line_bytes")); got != 1 {
		t.Errorf(`vigil_limit_exceeded_total{limit="max_line_bytes"} = %v, want 1`, got)
	}
	env.expectExactlyOnce(t, want)
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 1 {
		t.Fatalf("DEAD holds %d messages, want 1", len(dead))
	}
	if n := len(dead[0].Data()); n != sampleBytes {
		t.Errorf("dead letter carries %d bytes, want a %d-byte sample", n, sampleBytes)
	}
	reason := dead[0].Headers().Get(bus.HeaderReason)
	if !strings.Contains(reason, strconv.Itoa(len(huge)-1)) || !strings.Contains(reason, "max_line_bytes") {
		t.Errorf("dead letter reason %q should name the line length and max_line_bytes", reason)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Options
		want string
	}{
		{Options{}, "path is required"},
		{Options{Path: "/var/log/[audit.log"}, "bad glob"},
		{Options{Path: "/x", StartAt: "middle"}, `start_at must be "beginning" or "end", got "middle"`},
		{Options{Path: "/x", MaxLineBytes: -1}, "max_line_bytes must be positive"},
		{Options{Path: "/x", PollInterval: -1}, "poll_interval must be positive"},
	} {
		tc.cfg.DataDir = t.TempDir()
		_, err := New(tc.cfg, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestEventTooLargeForNATSIsDeadLetteredAndReadingGoesOn(t *testing.T) {
	env := newJS(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	// Within max_line_bytes, beyond the server's 1 MiB max_payload: a
	// ConfigMap near etcd's size limit logged at Request level.
	big := strings.Replace(eventLine("big"), `"level":"Metadata"`, `"level":"Request","requestObject":{"data":{"x":"`+strings.Repeat("a", 2<<20)+`"}}`, 1)
	want := map[string]bool{}
	appendFile(t, log, []byte(events(want, "before", 3)+big+events(want, "after", 3)))

	r := start(t, Options{Path: log}, t.TempDir(), env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	env.waitCount(t, bus.StreamDead, 1)
	r.stop(t)
	env.expectExactlyOnce(t, want)
	dead := env.messages(t, bus.StreamDead)
	if len(dead) != 1 {
		t.Fatalf("DEAD holds %d messages, want 1", len(dead))
	}
	if reason := dead[0].Headers().Get(bus.HeaderReason); !strings.Contains(reason, "big/ResponseComplete") || !strings.Contains(reason, "max_payload") {
		t.Errorf("dead letter reason %q should name the event and max_payload", reason)
	}
	if n := len(dead[0].Data()); n != sampleBytes {
		t.Errorf("dead letter carries %d bytes, want a %d-byte sample", n, sampleBytes)
	}
}

// TestLineNestedTooDeepIsDeadLettered: with max_json_depth 20, a line whose
// requestObject nests 30 levels is dead-lettered and counted, the lines
// around it stored.
func TestLineNestedTooDeepIsDeadLettered(t *testing.T) {
	env := newJS(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	want := map[string]bool{}
	deep := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"deep","stage":"ResponseComplete","requestObject":` +
		strings.Repeat(`{"a":`, 29) + `1` + strings.Repeat(`}`, 29) + "}\n"
	appendFile(t, log, []byte(events(want, "before", 3)+deep+events(want, "after", 3)))
	m := metrics.New(prometheus.NewRegistry())
	r := start(t, Options{Path: log, MaxJSONDepth: 20, Metrics: m}, t.TempDir(), env.pub)
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	env.waitCount(t, bus.StreamDead, 1)
	r.stop(t)
	env.expectExactlyOnce(t, want)
	if reason := env.messages(t, bus.StreamDead)[0].Headers().Get(bus.HeaderReason); !strings.Contains(reason, "exceeded max depth") {
		t.Errorf("dead letter reason %q, want it to say the nesting is too deep", reason)
	}
	if got := value(t, m.LimitExceeded.WithLabelValues("max_json_depth")); got != 1 {
		t.Errorf(`vigil_limit_exceeded_total{limit="max_json_depth"} = %v, want 1`, got)
	}
}

// TestTheRotationLogNamesTheBackup checks that the log line of a finished
// rotated file names the backup the file became, not the active log's
// name, which another file has taken.
func TestTheRotationLogNamesTheBackup(t *testing.T) {
	env := newJS(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	want := map[string]bool{}
	appendFile(t, log, []byte(events(want, "before", 10)))
	var buf logtest.Buffer
	src, err := New(Options{Path: log, PollInterval: 10 * time.Millisecond, DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ingesttest.Start(t, src, env.pub)
	env.waitCount(t, bus.StreamAudit, 10)
	backup := filepath.Join(dir, "audit-2026-03-04T10-00-00.000.log")
	if err := os.Rename(log, backup); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "after", 10)))
	env.waitCount(t, bus.StreamAudit, 20)
	waitFor(t, "the rotation logged", func() bool { return strings.Contains(buf.String(), "finished rotated file") })
	if line := buf.String(); !strings.Contains(line, "rotated="+backup) {
		t.Errorf("rotation logged as\n%s\nwant rotated=%s", line, backup)
	}
}
