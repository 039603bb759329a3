package alertmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/engine"
	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/backoff"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/pkitest"
	"github.com/vigil-k8s/vigil/internal/waittest"
	"github.com/vigil-k8s/vigil/notify"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// BinaryEnv names the Alertmanager binary the tests run; unset, they look
// for bin/alertmanager at the module root, where `make alertmanager` puts
// it.
const BinaryEnv = "VIGIL_ALERTMANAGER"

// The basic auth user of the test Alertmanager; the hash is bcrypt's
// (cost 4) of the password, as Alertmanager's web config wants it.
const (
	amUser     = "vigil"
	amPassword = "am-s3cret"
	amHash     = "$2a$04$n0.Xrx9ZAFCFTqIgk9LOiu.SQ2UgUthUdBpUNZOEmwMSwOlUXp78e"
)

func alertmanagerBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "alertmanager")
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no Alertmanager binary at %s (%v): run `make alertmanager`, or set %s", bin, err, BinaryEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// realAM is an Alertmanager process serving HTTPS with basic auth.
type realAM struct {
	url    string
	client *http.Client
}

// startAlertmanager runs Alertmanager on a free port with a route that
// notifies nobody, a storage folder of its own and no cluster, and stops
// it when the test ends.
func startAlertmanager(t *testing.T, pki *pkitest.PKI) *realAM {
	t.Helper()
	bin := alertmanagerBinary(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("alertmanager.yml", "route:\n  receiver: none\n  group_wait: 1h\nreceivers:\n  - name: none\n")
	web := write("web.yml", fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n",
		pki.CertFile, pki.KeyFile, amUser, amHash))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+cfg, "--web.config.file="+web,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=",
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", out.String())
		}
	})
	am := &realAM{
		url: "https://" + addr,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12},
		}},
	}
	t.Cleanup(am.client.CloseIdleConnections)
	waittest.Until(t, 30*time.Second, "alertmanager to be ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("alertmanager exited:\n%s", out.String())
		default:
		}
		resp, err := am.get("/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return am
}

func (am *realAM) get(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, am.url+path, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(amUser, amPassword)
	return am.client.Do(req)
}

// gettable is the part of Alertmanager's gettableAlert the tests check.
type gettable struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

// alerts reads GET /api/v2/alerts, keyed by the user label.
func (am *realAM) alerts(t *testing.T) map[string]gettable {
	t.Helper()
	resp, err := am.get("/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v2/alerts: %s: %s", resp.Status, body)
	}
	var list []gettable
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /api/v2/alerts: %v: %s", err, body)
	}
	out := map[string]gettable{}
	for _, g := range list {
		if _, dup := out[g.Labels[LabelUser]]; dup {
			t.Fatalf("two Alertmanager alerts for user %q: %s", g.Labels[LabelUser], body)
		}
		out[g.Labels[LabelUser]] = g
	}
	return out
}

// dispatch runs the notify pipeline on an embedded JetStream, delivering
// to n, and returns how to publish alerts to the ALERTS stream.
func dispatch(t *testing.T, n *Notifier) func(...*alert.Alert) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	dests := []notify.Destination{{Name: "alertmanager", Notifier: n, Batch: true, RateLimit: DefaultRate, Timeout: 5 * time.Second}}
	d, err := notify.NewDispatcher(js, dests, nil, notify.Options{
		AckWait: 10 * time.Second, MaxAttempts: 5, MaxAge: time.Hour,
		Backoff:    backoff.Policy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		FetchBatch: 100, FetchWait: 100 * time.Millisecond,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	})
	return func(alerts ...*alert.Alert) {
		t.Helper()
		if err := engine.PublishAlerts(context.Background(), js, alerts); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRealAlertmanager sends alerts through the notify pipeline to a real
// Alertmanager, over TLS with basic auth, and reads them back.
func TestRealAlertmanager(t *testing.T) {
	pki := pkitest.New(t)
	am := startAlertmanager(t, pki)
	n, err := New(Config{
		URLs: []string{am.url}, Username: amUser, Password: amPassword, CAFile: pki.CAFile,
		GeneratorURL: "https://vigil.example/alerts?rule={rule}&id={id}",
		Timeout:      5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	publish := dispatch(t, n)

	// Two reads of two secrets by one service account: one Alertmanager
	// alert. A cluster-scoped change by someone else: another.
	reads := alerttest.Many(3)
	for _, r := range reads {
		r.Description = "Anything but a kubelet or the control plane reading Secrets may be credential theft."
		r.RunbookURL = "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#secrets-secretsyaml"
	}
	rbac := alerttest.Sample()
	rbac.Rule, rbac.Title, rbac.Severity = "cluster-admin-binding", "Binding to cluster-admin", alert.SeverityCritical
	rbac.AuditID = "5c1c2f0e-8a3b-4a9e-9d7c-1f0e2d3c4b5a"
	rbac.ID = alert.ID(rbac.Rule, rbac.AuditID)
	rbac.User, rbac.Verb, rbac.Resource, rbac.Namespace, rbac.Name = "alice@example.com", "create", "clusterrolebindings", "", "alice-admin"
	rbac.Output = "alice@example.com create clusterrolebindings alice-admin"
	publish(reads[0], reads[1], rbac)

	var got map[string]gettable
	waittest.Until(t, 30*time.Second, "two alerts in Alertmanager", func() bool {
		got = am.alerts(t)
		return len(got) == 2
	})
	sa := got[reads[0].User]
	wantLabels := map[string]string{
		"alertname": "secret-read-by-non-node", "rule": "secret-read-by-non-node", "severity": "high",
		"cluster": "prod-eu-1", "namespace": "default", "user": "system:serviceaccount:default:app",
		"verb": "get", "resource": "secrets",
	}
	if !maps.Equal(sa.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", sa.Labels, wantLabels)
	}
	if sa.Annotations["summary"] != reads[0].Title || !strings.HasPrefix(sa.Annotations["output"], reads[0].User+" get secrets default/db-") {
		t.Errorf("annotations = %v", sa.Annotations)
	}
	if sa.Annotations["description"] != reads[0].Description || sa.Annotations["runbook_url"] != reads[0].RunbookURL {
		t.Errorf("annotations = %v, want the rule's description and runbook_url", sa.Annotations)
	}
	if sa.Annotations["tags"] != "credential-access, T1552.007" || sa.Annotations["source_ips"] != "10.0.0.7" {
		t.Errorf("annotations = %v", sa.Annotations)
	}
	if sa.Status.State != "active" || !sa.StartsAt.Equal(alerttest.Time.Truncate(time.Millisecond)) || !sa.EndsAt.After(time.Now()) {
		t.Errorf("state %q, startsAt %s, endsAt %s: want an active alert from the alert's time (to the millisecond, as Alertmanager keeps it) %s ending in the future", sa.Status.State, sa.StartsAt, sa.EndsAt, alerttest.Time)
	}
	if !strings.HasPrefix(sa.GeneratorURL, "https://vigil.example/alerts?rule=secret-read-by-non-node&id=secret-read-by-non-node%2F") {
		t.Errorf("generatorURL = %q", sa.GeneratorURL)
	}
	cr := got[rbac.User]
	if _, ok := cr.Labels[LabelNamespace]; ok || cr.Labels[LabelSeverity] != "critical" || cr.Labels[LabelAlertname] != rbac.Rule {
		t.Errorf("cluster-scoped alert labels = %v", cr.Labels)
	}
	if cr.Annotations["object"] != "alice-admin" {
		t.Errorf("cluster-scoped alert annotations = %v", cr.Annotations)
	}

	// A later repeat with the same labels is the same Alertmanager alert,
	// now carrying the repeat's annotations.
	publish(reads[2])
	waittest.Until(t, 30*time.Second, "the repeat to update the alert", func() bool {
		got = am.alerts(t)
		return got[reads[2].User].Annotations["alert_id"] == reads[2].ID
	})
	if len(got) != 2 || got[reads[2].User].Fingerprint != sa.Fingerprint {
		t.Errorf("after a repeat: %d alerts, fingerprint %s (was %s); want the same 2", len(got), got[reads[2].User].Fingerprint, sa.Fingerprint)
	}
}

// TestRealAlertmanagerRefusesBadPassword: a 401 is not retried.
func TestRealAlertmanagerRefusesBadPassword(t *testing.T) {
	pki := pkitest.New(t)
	am := startAlertmanager(t, pki)
	n, err := New(Config{URLs: []string{am.url}, Username: amUser, Password: "wrong", CAFile: pki.CAFile, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	retry, err := n.Notify(context.Background(), alerttest.Sample())
	if err == nil || retry || !strings.Contains(err.Error(), "401") {
		t.Errorf("Notify with a wrong password: retry=%v err=%v; want a final 401", retry, err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error shows the password: %v", err)
	}
}
