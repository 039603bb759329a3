package file

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/disktest"
)

// TestFullDataDirDelaysCheckpointsWithoutStopping fills the file system of
// data_dir (where checkpoints are) but not JetStream's: the source goes on
// publishing, keeps the last checkpoint it could save (never one past what
// is stored), and saves the current one once space is freed.
func TestFullDataDirDelaysCheckpointsWithoutStopping(t *testing.T) {
	env := newJS(t)
	dataDir := disktest.Tmpfs(t, "1m")
	log := filepath.Join(t.TempDir(), "audit.log")
	want := map[string]bool{}
	appendFile(t, log, []byte(events(want, "before", 100)))
	r := start(t, Options{Path: log}, dataDir, env.pub)
	env.waitCount(t, bus.StreamAudit, 100)
	store := newCheckpointStore(filepath.Join(dataDir, "checkpoints", "file"), log)
	offset := func() int64 {
		ck, err := store.load()
		if err != nil {
			t.Fatal(err)
		}
		if ck == nil {
			return -1
		}
		return ck.Offset
	}
	before := fileSize(t, log)
	waitFor(t, "checkpoint after the first events", func() bool { return offset() == before })

	ballast := filepath.Join(dataDir, "ballast")
	disktest.Fill(t, ballast)
	appendFile(t, log, []byte(events(want, "during", 100)))
	env.waitCount(t, bus.StreamAudit, 200)
	select {
	case err := <-r.done:
		r.done = nil
		t.Fatalf("Run returned with data_dir full: %v", err)
	default:
	}
	if got := offset(); got != before {
		t.Errorf("checkpoint at %d with data_dir full, want it left at %d", got, before)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(events(want, "after", 100)))
	env.waitCount(t, bus.StreamAudit, 300)
	end := fileSize(t, log)
	waitFor(t, "checkpoint at the end of the log once space is freed", func() bool { return offset() == end })
	r.stop(t)
	env.expectExactlyOnce(t, want)
}
