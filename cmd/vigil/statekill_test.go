package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/natstest"
)

// statefulRules are a first-seen rule and a sequence rule, alone: the
// default pack stays out so that every alert is one of theirs.
const statefulRules = `macros:
  ok: event.responseStatus.code >= 200 && event.responseStatus.code < 300
rules:
  - id: new-user-agent
    severity: medium
    condition: '!event.user.username.startsWith("system:")'
    new_terms:
      fields: [event.user.username, event.userAgent]
      learn: 1h
  - id: grant-then-workload
    severity: high
    sequence:
      by: [event.user.username]
      within: 10m
      steps:
        - {name: grant, condition: 'event.objectRef.resource in ["clusterrolebindings", "rolebindings"] && event.verb == "create" && macros.ok'}
        - {name: workload, condition: 'event.objectRef.resource in ["deployments", "daemonsets", "pods"] && event.verb in ["create", "patch", "update"] && macros.ok'}
`

// statefulWorkload is three hours of a cluster's requests, about 3,000 at
// both stages, from t0: people reading with their usual clients,
// controllers creating pods, carol granting roles and alice patching
// deployments (each a step of the sequence alone), with planted among them
// what the rules must catch and what they must not. It returns the log's
// lines in time order and the alerts planted, as stateKey gives them.
func statefulWorkload(t0 time.Time) (lines [][]byte, planted []string) {
	rng := rand.New(rand.NewPCG(7, 11))
	var reqs []request
	n := 0
	req := func(user, ua, verb, resource, ns string, code int, at time.Duration) string {
		n++
		r := request{id: fmt.Sprintf("req-%05d", n), user: user, userAgent: ua, verb: verb, resource: resource, ns: ns,
			name: fmt.Sprintf("%s-%d", resource, n), code: code, at: t0.Add(at)}
		switch resource {
		case "deployments", "daemonsets":
			r.apiGroup = "apps"
		case "rolebindings", "clusterrolebindings":
			r.apiGroup = "rbac.authorization.k8s.io"
		}
		if resource == "clusterrolebindings" {
			r.ns = ""
		}
		reqs = append(reqs, r)
		return r.id
	}
	plant := func(rule, anchor string) { planted = append(planted, rule+" "+anchor) }

	const (
		kubectl = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
		k9s     = "k9s/v0.32.5 (linux/amd64)"
		lens    = "Lens/6.5.2"
		kcm     = "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/system:serviceaccount:kube-system:replicaset-controller"
		kubelet = "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350"
	)
	people := map[string][]string{"alice": {kubectl, k9s}, "bob": {kubectl, lens}, "carol": {kubectl, k9s}, "dave": {kubectl, lens}}
	names := []string{"alice", "bob", "carol", "dave"}
	// Everyone shows both their clients in their first minutes: what they
	// use later is learned.
	for i, u := range names {
		for k, ua := range people[u] {
			req(u, ua, "get", "pods", "default", 200, time.Duration(2*i+k)*10*time.Second)
		}
	}
	const span = 3 * time.Hour
	for at := 2 * time.Minute; at < span; at += time.Duration(2000+rng.IntN(3000)) * time.Millisecond {
		switch x := rng.IntN(100); {
		case x < 50:
			u := names[rng.IntN(len(names))]
			if at > 105*time.Minute && rng.IntN(5) == 0 {
				req("erin", kubectl, "list", "configmaps", "team-e", 200, at)
				continue
			}
			req(u, people[u][rng.IntN(2)], []string{"get", "list", "watch"}[rng.IntN(3)], []string{"pods", "configmaps", "services"}[rng.IntN(3)], "default", 200, at)
		case x < 70:
			req("system:serviceaccount:kube-system:replicaset-controller", kcm, "create", "pods", "default", 201, at)
		case x < 90:
			req(fmt.Sprintf("system:node:n%d", rng.IntN(3)), kubelet, "get", "configmaps", "default", 200, at)
		case x < 95:
			req("carol", kubectl, "create", "rolebindings", "team-c", 201, at)
		default:
			req("alice", kubectl, "patch", "deployments", "default", 200, at)
		}
	}

	m := func(h, mins int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(mins)*time.Minute }
	// First-seen: clients new to their user once the user's hour of
	// learning is over alert, once each.
	plant("new-user-agent", req("alice", "python-requests/2.31.0", "list", "secrets", "default", 200, m(1, 30)))
	plant("new-user-agent", req("bob", "curl/8.5.0", "get", "pods", "default", 200, m(2, 10)))
	req("bob", "curl/8.5.0", "get", "pods", "default", 200, m(2, 20))
	plant("new-user-agent", req("carol", "kubectl/v1.31.0 (darwin/arm64) kubernetes/9edcffc", "get", "pods", "default", 200, m(2, 50)))
	// Near-misses: a client dave first used while learning; erin, first
	// seen at 1h45, learns for her own hour (Lens at 2h15 is learned, k9s
	// at 2h58 is new); a service account is no person.
	req("dave", "Go-http-client/1.1", "get", "pods", "default", 200, m(0, 20))
	req("dave", "Go-http-client/1.1", "get", "pods", "default", 200, m(2, 0))
	req("erin", kubectl, "get", "pods", "team-e", 200, m(1, 45))
	req("erin", lens, "get", "pods", "team-e", 200, m(2, 15))
	plant("new-user-agent", req("erin", k9s, "get", "pods", "team-e", 200, m(2, 58)))
	req("system:serviceaccount:ci:deployer", "argocd-application-controller/v2.11", "patch", "configmaps", "ci", 200, m(2, 30))

	// Sequences: a grant, then a workload change by the same user within
	// ten minutes; two grants before one change are two alerts.
	plant("grant-then-workload", req("mallory", kubectl, "create", "rolebindings", "team-m", 201, m(1, 0)))
	req("mallory", kubectl, "create", "deployments", "team-m", 201, m(1, 4))
	plant("grant-then-workload", req("trent", kubectl, "create", "clusterrolebindings", "", 201, m(1, 20)))
	plant("grant-then-workload", req("trent", kubectl, "create", "rolebindings", "team-t", 201, m(1, 22)))
	req("trent", kubectl, "create", "daemonsets", "team-t", 201, m(1, 25))
	// Near-misses: too late, the wrong order, two users, a grant denied
	// and a workload change denied.
	req("oscar", kubectl, "create", "rolebindings", "team-o", 201, m(2, 0))
	req("oscar", kubectl, "create", "deployments", "team-o", 201, m(2, 11))
	req("peggy", kubectl, "create", "deployments", "team-p", 201, m(2, 30))
	req("peggy", kubectl, "create", "rolebindings", "team-p", 201, m(2, 32))
	req("victor", kubectl, "create", "clusterrolebindings", "", 201, m(2, 40))
	req("walter", kubectl, "create", "pods", "team-w", 201, m(2, 42))
	req("sybil", kubectl, "create", "rolebindings", "team-s", 403, m(1, 40))
	req("sybil", kubectl, "create", "deployments", "team-s", 201, m(1, 42))
	req("sybil", kubectl, "create", "rolebindings", "team-s", 201, m(1, 50))
	req("sybil", kubectl, "create", "deployments", "team-s", 403, m(1, 53))

	slices.SortStableFunc(reqs, func(a, b request) int { return a.at.Compare(b.at) })
	for _, r := range reqs {
		for _, ev := range r.events() {
			b, err := json.Marshal(ev)
			if err != nil {
				panic(err)
			}
			lines = append(lines, b)
		}
	}
	slices.Sort(planted)
	return lines, planted
}

// stateKey names an alert of the stateful rules by rule and the request
// that makes it: the new value's for a first-seen rule, the first step's
// for a sequence.
func stateKey(a alert.Alert) string {
	if len(a.Steps) > 0 && len(a.Members) > 0 {
		return a.Rule + " " + a.Members[0].AuditID
	}
	return a.Rule + " " + a.AuditID
}

// decodeAlerts reads alerts as `vigil replay -o json` prints them, one a
// line.
func decodeAlerts(t *testing.T, out string) []alert.Alert {
	t.Helper()
	var as []alert.Alert
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var a alert.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("replay output %q: %v", line, err)
		}
		as = append(as, a)
	}
	return as
}

// TestStatefulRulesThroughKilledWorkerMatchReplay: through the real
// pipeline — `vigil ingest` following a log as it is written, three
// `vigil worker` processes on one NATS server, one of them SIGKILLed
// mid-way and started again — a first-seen rule and a sequence rule give
// exactly the alerts `vigil replay` gives offline on the same log, each
// stored on ALERTS once.
//
// The log is written over about 20 s, so that a killed worker's events
// come back (after ack_wait, 3 s) about half an hour of event time late:
// the planted cases keep further than that from the edges of the learning
// period and of the sequence's span, as a real cluster's, whose events
// come in at the pace of their own time, are from its 30 s ack_wait.
func TestStatefulRulesThroughKilledWorkerMatchReplay(t *testing.T) {
	bin := vigilBinary(t)
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "stateful.yaml")
	if err := os.WriteFile(rulesPath, []byte(statefulRules), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, planted := statefulWorkload(time.Date(2026, 3, 4, 8, 0, 0, 0, time.UTC))
	full := filepath.Join(dir, "full.log")
	writeEvents(t, full, lines)

	// What replay says, offline, in file order.
	out, errOut, err := runVigil(bin, "replay", "--rules", rulesPath, "-o", "json", full)
	if err != nil || errOut != "" {
		t.Fatalf("vigil replay: %v\n%s", err, errOut)
	}
	want := map[string]bool{}
	var offline []string
	for _, a := range decodeAlerts(t, out) {
		if want[a.ID] {
			t.Errorf("replay printed alert %s twice", a.ID)
		}
		want[a.ID] = true
		offline = append(offline, stateKey(a))
	}
	slices.Sort(offline)
	// The expected alerts come from replay, so replay must first be right:
	// the planted cases and nothing else.
	if !slices.Equal(offline, planted) {
		t.Fatalf("replay alerts on\n  %s\nwant the planted\n  %s", strings.Join(offline, "\n  "), strings.Join(planted, "\n  "))
	}

	srv := natstest.RunServer(t)
	natsSection := fmt.Sprintf("nats: {url: %q}", srv.ClientURL())
	_, js := natstest.Connect(t, srv.ClientURL())
	ruleCfg := fmt.Sprintf("default_rules: false\nrules: [%s]\n", rulesPath)
	var workers []*proc
	for i := range 3 {
		workers = append(workers, startProc(t, bin, "worker", fmt.Sprintf("worker-%d", i+1), natsSection, ruleCfg))
	}
	logPath := filepath.Join(dir, "audit.log")
	ingest := startProc(t, bin, "ingest", "ingest", natsSection, fmt.Sprintf(`ingest:
  silent_after: off
  files: [{path: %s, poll_interval: 20ms}]
`, logPath))
	for _, p := range append(slices.Clone(workers), ingest) {
		p.waitReady(t)
	}

	const chunks = 80
	written := make(chan error, 1)
	go func() {
		per := (len(lines) + chunks - 1) / chunks
		for i := 0; i < len(lines); i += per {
			if err := appendEvents(logPath, lines[i:min(i+per, len(lines))]); err != nil {
				written <- err
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		written <- nil
	}()

	// Killed once it is well into its share, with a batch in hand.
	waitUntil(t, 40*time.Second, "worker-1 to evaluate a sixth of the log", func() bool {
		return workers[0].eventsEvaluated() > float64(len(lines)/6)
	})
	killedAt := workers[0].eventsEvaluated()
	if err := workers[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-workers[0].exited
	restarted := startProc(t, bin, "worker", "worker-1-again", natsSection, ruleCfg)
	restarted.waitReady(t)
	if err := <-written; err != nil {
		t.Fatalf("writing the log: %v", err)
	}

	natstest.WaitAuditEvents(t, js, len(lines), time.Minute)
	ctx := context.Background()
	waitUntil(t, time.Minute, "every event evaluated and acknowledged", func() bool {
		return natstest.ConsumerIdle(ctx, js, bus.StreamAudit, bus.ConsumerEngine)
	})

	msgs := natstest.Messages(t, js, bus.StreamAlerts)
	stored := map[string]int{}
	for _, m := range msgs {
		var a alert.Alert
		if err := json.Unmarshal(m.Data(), &a); err != nil {
			t.Fatalf("ALERTS message %s: %v", m.Headers().Get(jetstream.MsgIDHeader), err)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != a.ID {
			t.Errorf("ALERTS message with MsgID %q holds alert %q", id, a.ID)
		}
		stored[a.ID]++
	}
	for id, n := range stored {
		switch {
		case !want[id]:
			t.Errorf("pipeline alert %s, which replay does not give", id)
		case n > 1:
			t.Errorf("alert %s stored %d times on ALERTS, want once", id, n)
		}
	}
	for id := range want {
		if stored[id] == 0 {
			t.Errorf("replay's alert %s is not on ALERTS", id)
		}
	}
	if len(msgs) != len(want) {
		t.Errorf("ALERTS holds %d messages, want the %d alerts of replay once each", len(msgs), len(want))
	}
	for _, w := range append(workers[1:], restarted) {
		if n := w.eventsEvaluated(); n <= 0 {
			t.Errorf("%s evaluated %v events: the work was not shared", w.name, n)
		}
	}
	t.Logf("%d events; %d alerts as replay's, each stored once; worker-1 evaluated %.0f before SIGKILL, then worker-2 %.0f, worker-3 %.0f, worker-1-again %.0f",
		len(lines), len(want), killedAt, workers[1].eventsEvaluated(), workers[2].eventsEvaluated(), restarted.eventsEvaluated())
}
