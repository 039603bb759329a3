package file

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/natefinch/lumberjack.v2"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	auditlog "k8s.io/apiserver/plugin/pkg/audit/log"

	"github.com/vigil-k8s/vigil/internal/bus"
)

// The kill test re-runs this test binary as the tailer process, so that it
// can be killed with SIGKILL like a real vigil.
const (
	childEnv     = "VIGIL_TEST_TAILER_CHILD"
	childNATSEnv = "VIGIL_TEST_NATS_URL"
	childLogEnv  = "VIGIL_TEST_LOG"
	childDataEnv = "VIGIL_TEST_DATA"
	// childKillEnv makes the child kill itself with SIGKILL once the
	// batch it has just stored is acknowledged, before its checkpoint
	// records that.
	childKillEnv = "VIGIL_TEST_KILL_AFTER_STORE"
)

// runChild tails the log named in the environment until killed, or until
// its stdin closes (the test process is gone).
func runChild() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	nc, err := nats.Connect(os.Getenv(childNATSEnv), nats.MaxReconnects(-1))
	if err != nil {
		logger.Error("connect", "err", err)
		return 2
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		logger.Error("jetstream", "err", err)
		return 2
	}
	src, err := New(Options{Path: os.Getenv(childLogEnv), PollInterval: 5 * time.Millisecond, DataDir: os.Getenv(childDataEnv)}, logger)
	if err != nil {
		logger.Error("new", "err", err)
		return 2
	}
	if os.Getenv(childKillEnv) != "" {
		src.afterStore = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := src.Run(ctx, bus.NewPublisher(js, "test")); err != nil {
		logger.Error("run", "err", err)
		return 1
	}
	return 0
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startChild(t *testing.T, natsURL, log, data string, stderr io.Writer, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childNATSEnv+"="+natsURL, childLogEnv+"="+log, childDataEnv+"="+data)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.stdin.Close()
}

// apiserverEvent is a realistic event as kube-apiserver's audit layer
// builds it.
func apiserverEvent(i int) *auditinternal.Event {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	stage := auditinternal.StageResponseComplete
	if i%3 == 0 {
		stage = auditinternal.StageRequestReceived
	}
	return &auditinternal.Event{
		Level:      auditinternal.LevelMetadata,
		AuditID:    types.UID(fmt.Sprintf("6f1c1b0e-0000-4000-8000-%012d", i)),
		Stage:      stage,
		RequestURI: fmt.Sprintf("/api/v1/namespaces/team-%d/secrets/db-%d", i%17, i),
		Verb:       "get",
		User: authnv1.UserInfo{
			Username: fmt.Sprintf("system:serviceaccount:team-%d:app", i%17),
			UID:      "b5e1d0a4-7c44-4c2e-9e51-b0c1f0f9a001",
			Groups:   []string{"system:serviceaccounts", user.AllAuthenticated},
		},
		SourceIPs: []string{"10.0.0.7"},
		UserAgent: "app/1.0 (linux/amd64) kubernetes/v1.33",
		ObjectRef: &auditinternal.ObjectReference{
			Resource: "secrets", Namespace: fmt.Sprintf("team-%d", i%17), Name: fmt.Sprintf("db-%d", i), APIVersion: "v1",
		},
		ResponseStatus:           &metav1.Status{Code: 200},
		RequestReceivedTimestamp: metav1.NewMicroTime(now),
		StageTimestamp:           metav1.NewMicroTime(now.Add(time.Millisecond)),
		Annotations: map[string]string{
			"authorization.k8s.io/decision": "allow",
			"authorization.k8s.io/reason":   `RBAC: allowed by RoleBinding "app-secrets" of Role "secret-reader" to ServiceAccount "app"`,
		},
	}
}

func TestEveryEventOnceAcrossKillsAndRotations(t *testing.T) {
	env := newJS(t)
	dir, data := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "audit.log")
	stderr, err := os.Create(filepath.Join(t.TempDir(), "tailer.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(stderr.Name())
			t.Logf("tailer output:\n%s", b)
		}
	}()

	// kube-apiserver's own log backend, rotating at 1 MB (lumberjack's
	// smallest size) as --audit-log-maxsize=1 does.
	lj := &lumberjack.Logger{Filename: log, MaxSize: 1}
	defer lj.Close()
	backend := auditlog.NewBackend(lj, auditlog.FormatJson, auditv1.SchemeGroupVersion)
	want := map[string]bool{}
	next := 0
	write := func(n int) {
		for range n {
			ev := apiserverEvent(next)
			next++
			if !backend.ProcessEvents(ev) {
				t.Fatalf("log backend failed to write event %d", next)
			}
			want[string(ev.AuditID)+"/"+string(ev.Stage)] = true
		}
	}

	rotations := func() int {
		backups, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
		if err != nil {
			t.Fatal(err)
		}
		return len(backups)
	}
	const total, chunk = 20_000, 1_000
	c := startChild(t, env.url, log, data, stderr)
	kills := 0
	for round := 1; next < total; round++ {
		write(chunk)
		switch {
		case round%3 == 0:
			// Kill right after a rotation, while the tailer is still busy
			// with what was just written.
			env.waitCount(t, bus.StreamAudit, uint64(next-chunk/2))
			for n := rotations(); rotations() == n; {
				write(1)
			}
			c.kill()
			kills++
			c = startChild(t, env.url, log, data, stderr)
		case round == 10:
			// Several rotations while no tailer runs.
			c.kill()
			kills++
			write(4_000)
			c = startChild(t, env.url, log, data, stderr)
		}
	}
	env.waitCount(t, bus.StreamAudit, uint64(len(want)))
	c.kill()

	t.Logf("%d events, %d rotations, %d kills", len(want), rotations(), kills)
	if rotations() < 10 || kills < 5 {
		t.Fatalf("only %d rotations and %d kills: the test no longer exercises what it is for", rotations(), kills)
	}
	env.expectExactlyOnce(t, want)
	if n := env.count(t, bus.StreamDead); n != 0 {
		t.Errorf("DEAD holds %d messages, want 0", n)
	}
}

// TestKillBetweenPubAckAndCheckpoint kills the tailer after JetStream
// acknowledged a batch's segments and before the checkpoint said so, and
// lets the log grow before the restart: re-read with more lines behind
// it, the batch would be cut elsewhere and some of its events stored
// twice, unless the restart cuts and names it as the intent recorded.
func TestKillBetweenPubAckAndCheckpoint(t *testing.T) {
	env := newJS(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	data := t.TempDir()
	want := map[string]bool{}
	// 100 events: segments of 64 and 36, the second cut by the end of
	// what was there to read.
	appendFile(t, log, []byte(events(want, "first", 100)))
	c := startChild(t, env.url, log, data, io.Discard, childKillEnv+"=1")
	if err := c.cmd.Wait(); err == nil || c.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("tailer ended with %v, want killed by SIGKILL after storing its batch", err)
	}
	c.stdin.Close()
	env.expectExactlyOnce(t, want)
	ck, err := newCheckpointStore(filepath.Join(data, "checkpoints", "file"), log).load()
	if err != nil || ck == nil {
		t.Fatalf("checkpoint after the kill: %v, %v", ck, err)
	}
	if ck.Offset != 0 || ck.Intent == nil || len(ck.Intent.Ends) != 2 {
		t.Fatalf("checkpoint after the kill at offset %d with intent %+v, want offset 0 and the 2 segments being published", ck.Offset, ck.Intent)
	}

	appendFile(t, log, []byte(events(want, "later", 50)))
	c = startChild(t, env.url, log, data, io.Discard)
	size := fileSize(t, log)
	waitFor(t, "the checkpoint at the end of the log", func() bool {
		ck, err := newCheckpointStore(filepath.Join(data, "checkpoints", "file"), log).load()
		return err == nil && ck != nil && ck.Offset == size && ck.Intent == nil
	})
	c.kill()
	env.expectExactlyOnce(t, want)
}
