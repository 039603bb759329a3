package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

// vigilCmd runs `vigil ARGS...` as a process of its own, as an operator
// would from another shell, and returns its stdout; it fails the test if
// the command fails.
func vigilCmd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, errOut, err := runVigil(bin, args...)
	if err != nil {
		t.Fatalf("vigil %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func runVigil(bin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), asVigilEnv+"=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// secretRead is a Secret read by an application's service account, at
// both stages: one secret-read-by-non-node alert.
func secretRead(auditID string, at time.Time) [][]byte {
	var out [][]byte
	for _, stage := range []string{"RequestReceived", "ResponseComplete"} {
		ev := map[string]any{
			"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": auditID, "stage": stage,
			"requestURI": "/api/v1/namespaces/default/secrets/db", "verb": "get",
			"user":      map[string]any{"username": "system:serviceaccount:default:app", "groups": []string{"system:serviceaccounts"}},
			"sourceIPs": []string{"10.9.9.9"}, "userAgent": "curl/8.5.0",
			"objectRef":                map[string]any{"resource": "secrets", "namespace": "default", "name": "db", "apiVersion": "v1"},
			"requestReceivedTimestamp": at.Format(time.RFC3339Nano), "stageTimestamp": at.Format(time.RFC3339Nano),
		}
		if stage == "ResponseComplete" {
			ev["responseStatus"] = map[string]any{"code": 200}
		}
		b, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

var silencedLine = regexp.MustCompile(`(?m)^vigil_alerts_silenced_total\{rule="secret-read-by-non-node"\} (\S+)$`)

// silencedTotal reads vigil_alerts_silenced_total of the rule from p.
func (p *proc) silencedTotal(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := silencedLine.FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestSilenceThroughThePipeline is silences as the operator on call uses
// them: against a live `vigil run` (embedded NATS on nats.listen, a file
// source, a webhook destination), `vigil silence` run from other
// processes with the same configuration. A silenced alert reaches no
// destination but stays on ALERTS, its silencing is recorded and shown,
// the metric counts it, and after `silence expire` the rule alerts again.
func TestSilenceThroughThePipeline(t *testing.T) {
	bin := vigilBinary(t)
	sink, sinkSrv := newAlertSink(t)
	dataDir := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	metricsPort, natsPort := freePort(t), freePort(t)
	cfg := writeRunConfig(t, dataDir, logPath, sinkSrv.URL, "", natsPort, metricsPort)
	run := launch(t, bin, "run", "run", cfg, metricsPort)
	run.waitReady(t)

	// A mistake is refused before anything is stored.
	_, errOut, err := runVigil(bin, "silence", "add", "--config", cfg, "--when", `alert.usr == "x"`, "--for", "1h", "--comment", "c")
	if err == nil || !strings.Contains(errOut, `--when: 1:7: unknown field "usr" of alert, did you mean "user"?`) {
		t.Errorf("a misspelt --when: %v\n%s", err, errOut)
	}

	id := strings.TrimSpace(vigilCmd(t, bin, "silence", "add", "--config", cfg, "--rule", "secret-read-by-non-node",
		"--for", "1h", "--comment", "rotating the db credentials, CHG-42", "--author", "alice"))
	if list := vigilCmd(t, bin, "silence", "list", "--config", cfg); !strings.Contains(list, id) || !strings.Contains(list, "active") {
		t.Fatalf("silence list does not show %s active:\n%s", id, list)
	}
	// Restarted, the notifier starts with the silences in force: the
	// alert below cannot race the silence's arrival.
	if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-run.exited
	run = launch(t, bin, "run", "run-2", cfg, metricsPort)
	run.waitReady(t)

	_, js := natstest.Connect(t, fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	ctx := context.Background()
	idle := func() bool {
		return natstest.ConsumerIdle(ctx, js, bus.StreamAudit, bus.ConsumerEngine) && natstest.ConsumerIdle(ctx, js, bus.StreamAlerts, bus.ConsumerNotifyPrefix+"sink")
	}
	t0 := time.Now().UTC()
	if err := appendEvents(logPath, secretRead("silenced-1", t0)); err != nil {
		t.Fatal(err)
	}
	silencedID := alert.ID("secret-read-by-non-node", "silenced-1")
	waitUntil(t, 30*time.Second, "the alert raised and settled", func() bool {
		return natstest.Count(t, js, bus.StreamAlerts) == 1 && idle()
	})
	if n := sink.snapshot()[silencedID]; n != 0 {
		t.Errorf("silenced alert delivered %d times", n)
	}
	if got := string(natstest.Messages(t, js, bus.StreamAlerts)[0].Data()); !strings.Contains(got, `"id":"`+silencedID+`"`) {
		t.Errorf("ALERTS does not hold the silenced alert: %s", got)
	}
	if n := run.silencedTotal(t); n != 1 {
		t.Errorf("vigil_alerts_silenced_total = %v, want 1", n)
	}
	var shown struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		CreatedBy string `json:"createdBy"`
		Comment   string `json:"comment"`
		Silenced  []struct {
			Silence, Alert, Rule, Destination string
			At                                time.Time
		} `json:"silenced"`
	}
	if err := json.Unmarshal([]byte(vigilCmd(t, bin, "silence", "show", id, "--config", cfg, "--output", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.ID != id || shown.State != "active" || shown.CreatedBy != "alice" || len(shown.Silenced) != 1 ||
		shown.Silenced[0].Alert != silencedID || shown.Silenced[0].Destination != "sink" || shown.Silenced[0].At.IsZero() {
		t.Errorf("silence show: %+v", shown)
	}

	if out := vigilCmd(t, bin, "silence", "expire", id, "--config", cfg); !strings.Contains(out, "silence "+id+" expired") {
		t.Errorf("silence expire printed %q", out)
	}
	if list := vigilCmd(t, bin, "silence", "list", "--config", cfg); strings.Contains(list, id) {
		t.Errorf("silence list still shows the expired %s:\n%s", id, list)
	}
	if list := vigilCmd(t, bin, "silence", "list", "--all", "--config", cfg); !strings.Contains(list, id) || !strings.Contains(list, "expired") {
		t.Errorf("silence list --all does not show %s expired:\n%s", id, list)
	}
	// The notifier hears of the expiry within moments; a request until
	// then may still be silenced, so each try is a new one.
	for i := 0; ; i++ {
		auditID := fmt.Sprintf("after-expiry-%d", i)
		if err := appendEvents(logPath, secretRead(auditID, time.Now().UTC())); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "the alert raised and settled", func() bool {
			return natstest.Count(t, js, bus.StreamAlerts) == uint64(i+2) && idle()
		})
		if sink.snapshot()[alert.ID("secret-read-by-non-node", auditID)] == 1 {
			break
		}
		if i == 20 {
			t.Fatal("the rule's alerts are still silenced after the silence was expired")
		}
	}
	if n := sink.snapshot()[silencedID]; n != 0 {
		t.Errorf("the alert silenced before the expiry was delivered %d times", n)
	}
}
