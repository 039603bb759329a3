package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

// killSeedEnv names a seed to replay one run of TestRunSurvivesKillsAtAnyMoment.
const killSeedEnv = "VIGIL_KILL_SEED"

// expectDelivered waits until every alert of want reached sink (calling
// running to fail fast if vigil died), then until nothing is left to
// evaluate or deliver, so that what the sink holds is all vigil will send.
// It checks that AUDIT holds each of the events once and that the sink got
// no alert outside want, and returns how many deliveries were repeats.
func expectDelivered(ctx context.Context, t *testing.T, natsPort int, sink *alertSink, want map[string]bool, events int, running func()) (duplicates int) {
	t.Helper()
	waitUntil(t, 2*time.Minute, "every expected alert delivered", func() bool {
		running()
		got := sink.snapshot()
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	_, js := natstest.Connect(t, fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	waitUntil(t, time.Minute, "consumers idle", func() bool {
		return natstest.ConsumerIdle(ctx, js, bus.StreamAudit, bus.ConsumerEngine) &&
			natstest.ConsumerIdle(ctx, js, bus.StreamAlerts, bus.ConsumerNotifyPrefix+"sink")
	})
	if n := natstest.CountAuditEvents(t, js); n != events {
		t.Errorf("AUDIT holds %d events, want each of the %d appended or accepted once", n, events)
	}
	for id, n := range sink.snapshot() {
		if !want[id] {
			t.Errorf("unexpected alert %s", id)
		}
		duplicates += n - 1
	}
	return duplicates
}

// appendEvents appends events to the audit log at path, one per line, in
// one write (as a log writer flushing a buffer does).
func appendEvents(path string, events [][]byte) error {
	var buf []byte
	for _, e := range events {
		buf = append(buf, e...)
		buf = append(buf, '\n')
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestRunSurvivesKillsAtAnyMoment is "a process killed at any moment": one
// `vigil run` follows an audit log while it is being written and is
// SIGKILLed at pseudo-random moments — during start-up, ingest,
// evaluation, delivery — and started again on the same data_dir each time.
// In the end every event of the log is on the AUDIT stream once, and every
// alert the offline evaluator expects reaches the webhook at least once,
// with no alert it does not expect.
func TestRunSurvivesKillsAtAnyMoment(t *testing.T) {
	bin := vigilBinary(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(killSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", killSeedEnv, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with %s=%d)", seed, killSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))

	const (
		kills  = 6
		chunks = 24
	)
	events := workload(t, 20_000)
	want := expectedAlerts(t, events)
	if len(want) < 50 {
		t.Fatalf("workload raises only %d alerts offline; the attacks are not being detected", len(want))
	}
	sink, sinkSrv := newAlertSink(t)

	dataDir := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "audit.log")
	metricsPort, natsPort := freePort(t), freePort(t)
	cfgPath := writeRunConfig(t, dataDir, logPath, sinkSrv.URL, "", natsPort, metricsPort)

	// The log grows while vigil is being killed: a chunk every 250 ms, over
	// about as long as the kills take.
	ctx, cancel := context.WithCancel(context.Background())
	written := make(chan error, 1)
	writerDone := make(chan struct{})
	defer func() {
		cancel()
		<-writerDone
	}()
	go func() {
		defer close(writerDone)
		per := len(events) / chunks
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(events); i += per {
			if err := appendEvents(logPath, events[i:min(i+per, len(events))]); err != nil {
				written <- err
				return
			}
			select {
			case <-ctx.Done():
				written <- ctx.Err()
				return
			case <-tick.C:
			}
		}
		written <- nil
	}()

	for i := range kills {
		p := launch(t, bin, "run", fmt.Sprintf("run-%d", i+1), cfgPath, metricsPort)
		delay := 50*time.Millisecond + time.Duration(rng.Int64N(int64(1450*time.Millisecond)))
		select {
		case <-p.exited:
			t.Fatalf("%s exited by itself before being killed: %v\n%s", p.name, p.err, p.logs.String())
		case <-time.After(delay):
		}
		evaluated := p.eventsEvaluated() // -1: not serving metrics yet
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		t.Logf("%s killed %s after start (had evaluated %.0f events)", p.name, delay, evaluated)
	}
	if err := <-written; err != nil {
		t.Fatalf("writing the log: %v", err)
	}

	last := launch(t, bin, "run", "run-final", cfgPath, metricsPort)
	last.waitReady(t)
	duplicates := expectDelivered(ctx, t, natsPort, sink, want, len(events), func() {
		select {
		case <-last.exited:
			t.Fatalf("%s exited: %v", last.name, last.err)
		default:
		}
	})
	t.Logf("%d kills; %d expected alerts all delivered, %d deliveries in all, %d duplicates", kills, len(want), len(want)+duplicates, duplicates)
}
