package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-k8s/vigil/internal/app"
	"github.com/vigil-k8s/vigil/internal/bus"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/kafkatest"
	"github.com/vigil-k8s/vigil/internal/logtest"
	"github.com/vigil-k8s/vigil/internal/natstest"
	"github.com/vigil-k8s/vigil/internal/waittest"
)

const (
	kafkaTopic = "insights-logs-kube-audit"
	kafkaGroup = "vigil-e2e"
)

func newKafka(t *testing.T) *kafkatest.Kafka { return kafkatest.New(t, kafkaTopic, nil) }

func kafkaConfig(t *testing.T, dir, brokers, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("kafka.yaml", fmt.Appendf(nil, `
cluster: e2e
data_dir: %s
reload: {watch: false}
ingest:
  sources:
    - {type: kafka, brokers: [%q], topics: [%s], group: %s, start_at: beginning}
%s`, filepath.Join(dir, "data"), brokers, kafkaTopic, kafkaGroup, extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// aksRecord wraps an event as an AKS diagnostic setting delivers it.
func aksRecord(ev string) string {
	b, _ := json.Marshal(map[string]any{
		"time": "2026-03-04T10:00:00.0000000Z", "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/E2E",
		"category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
		"properties": map[string]any{"log": ev, "stream": "stdout", "pod": "kube-apiserver-6c9b7f7d4-2xk8p"},
	})
	return string(b)
}

// deletionRecords is a deletion the default pack alerts on once per
// request, logged at two stages: as two raw Events, or as an AKS
// {"records": [...]} document of both.
func deletionRecords(auditID string, aks bool) (alertID string, records []string) {
	stages := []string{"RequestReceived", "ResponseComplete"}
	evs := make([]string, len(stages))
	for i, st := range stages {
		evs[i] = event(auditID, st, "mallory", []string{"system:authenticated"}, "delete", "deployments", "default", auditID, 200)
	}
	if !aks {
		return "deployment-deleted-in-default/" + auditID, evs
	}
	return "deployment-deleted-in-default/" + auditID, []string{`{"records":[` + aksRecord(evs[0]) + "," + aksRecord(evs[1]) + "]}"}
}

// produceDeletions produces n deletions, every other one as an AKS
// document, and returns their alert ids.
func produceDeletions(k *kafkatest.Kafka, t *testing.T, prefix string, n int) []string {
	t.Helper()
	var ids, values []string
	for i := range n {
		id, rs := deletionRecords(fmt.Sprintf("%s-%d", prefix, i), i%2 == 1)
		ids = append(ids, id)
		values = append(values, rs...)
	}
	k.Produce(t, values...)
	return ids
}

// TestKafkaEveryEventOnceAcrossARestart runs vigil on a Kafka topic: what
// is produced before, while and after vigil is stopped raises its alert
// once, and the group has committed every record.
func TestKafkaEveryEventOnceAcrossARestart(t *testing.T) {
	k := newKafka(t)
	dir := t.TempDir()
	s := newSink(t)
	cfg := kafkaConfig(t, dir, k.Addr, fmt.Sprintf("destinations:\n  - {name: sink, type: webhook, url: %q}\n", s.srv.URL))
	buf := &logtest.Buffer{}

	want := produceDeletions(k, t, "before", 6)
	r := start(t, cfg, buf)
	s.waitFor(t, want...)
	want = append(want, produceDeletions(k, t, "running", 4)...)
	s.waitFor(t, want...)
	r.stop(t)
	if n := k.Lag(t, kafkaGroup); n != 0 {
		t.Errorf("after a clean stop the group lags %d records, want 0", n)
	}

	want = append(want, produceDeletions(k, t, "stopped", 4)...)
	r = start(t, cfg, buf)
	s.waitFor(t, want...)
	want = append(want, produceDeletions(k, t, "after", 2)...)
	s.waitFor(t, want...)
	waittest.Until(t, 30*time.Second, "every record committed", func() bool { return k.Lag(t, kafkaGroup) == 0 })
	r.stop(t)
	expectOnce(t, s, want)
}

// TestKafkaRebalance runs a second ingest joining the group and the
// first leaving it: the partitions move between them, and every alert
// comes once.
func TestKafkaRebalance(t *testing.T) {
	k := newKafka(t)
	s := newSink(t)
	buf := &logtest.Buffer{}
	srv, nats, w := startBackend(t, s, buf)
	defer w.stop(t)

	first := startRole(t, kafkaConfig(t, t.TempDir(), k.Addr, nats), app.RoleIngest, buf)
	want := produceDeletions(k, t, "one", 6)
	s.waitFor(t, want...)

	second := startRole(t, kafkaConfig(t, t.TempDir(), k.Addr, nats), app.RoleIngest, buf)
	waittest.Until(t, 30*time.Second, "both members own partitions", func() bool { return k.Members(t, kafkaGroup) == 2 })
	want = append(want, produceDeletions(k, t, "two", 6)...)
	s.waitFor(t, want...)

	first.stop(t)
	want = append(want, produceDeletions(k, t, "three", 6)...)
	s.waitFor(t, want...)
	waittest.Until(t, 30*time.Second, "every record committed", func() bool { return k.Lag(t, kafkaGroup) == 0 })
	second.stop(t)
	expectOnce(t, s, want)
	_, js := natstest.Connect(t, srv.ClientURL())
	for id, n := range natstest.StoredAudit(t, js) {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
}

// TestKafkaBadRecordsDeadLetteredAndCommitted produces a record that is
// not JSON and an AKS document with one bad record among good ones: each
// bad part is a dead letter naming where it is, the good events raise
// their alerts, and the group commits past all of them.
func TestKafkaBadRecordsDeadLetteredAndCommitted(t *testing.T) {
	k := newKafka(t)
	srv := natstest.RunServer(t)
	s := newSink(t)
	cfg := kafkaConfig(t, t.TempDir(), k.Addr, fmt.Sprintf("nats: {url: %q}\ndestinations:\n  - {name: sink, type: webhook, url: %q}\n", srv.ClientURL(), s.srv.URL))
	good, evs := deletionRecords("good", false)
	// One partition, so that the offsets are known: 0 the garbage, 1 the
	// document.
	doc := `{"records":[` + aksRecord(evs[0]) + `,` + aksRecord(`{"kind":"Event","stage":"ResponseComplete"}`) + `,` + aksRecord(evs[1]) + `]}`
	k.ProduceRecords(t, &kgo.Record{Partition: 1, Value: []byte("not json at all")}, &kgo.Record{Partition: 1, Value: []byte(doc)})

	r := startRole(t, cfg, app.RoleAll, &logtest.Buffer{})
	s.waitFor(t, good)
	waittest.Until(t, 30*time.Second, "both records committed", func() bool { return k.Committed(t, kafkaGroup)[1] == 2 })
	r.stop(t)
	expectOnce(t, s, []string{good})

	_, js := natstest.Connect(t, srv.ClientURL())
	dead := map[string]string{}
	for _, m := range natstest.Messages(t, js, bus.StreamDead) {
		dead[m.Headers().Get(bus.HeaderSource)] = m.Headers().Get(bus.HeaderReason)
	}
	for where, reason := range map[string]string{
		"kafka:" + kafkaTopic + "/1/0":                           "not JSON",
		"kafka:" + kafkaTopic + "/1/1:records[1].properties.log": "no auditID",
	} {
		if got, ok := dead[where]; !ok || !strings.Contains(got, reason) {
			t.Errorf("dead letter %s: reason %q, want one mentioning %q (dead letters: %v)", where, got, reason, dead)
		}
	}
	if len(dead) != 2 {
		t.Errorf("%d dead letters, want 2: %v", len(dead), dead)
	}
}

// TestKafkaAKSCorpus reads the corpus's AKS diagnostic records from Kafka,
// some a record each, the others in {"records": [...]} documents, as
// Event Hubs delivers them: the default pack raises their alerts once.
func TestKafkaAKSCorpus(t *testing.T) {
	k := newKafka(t)
	s := newSink(t)
	cfg := kafkaConfig(t, t.TempDir(), k.Addr, fmt.Sprintf("destinations:\n  - {name: sink, type: webhook, url: %q}\n", s.srv.URL))
	records, auditIDs := aksCorpus(t)
	if len(records) != 34 {
		t.Fatalf("%d AKS records in the corpus, want 34", len(records))
	}
	values := records[:17]
	for i := 17; i < len(records); i += 5 {
		values = append(values, `{"records":[`+strings.Join(records[i:min(i+5, len(records))], ",")+`]}`)
	}
	k.Produce(t, values...)
	r := start(t, cfg, &logtest.Buffer{})
	// What the provider package's corpus test expects of these records.
	want := map[string]string{
		"AKS DaemonSet Created":          "daemonset-created",
		"AKS Exec Into Pod (realistic)":  "pod-exec-or-attach",
		"AKS Privileged Pod Created":     "privileged-container",
		"AKS Ingress without TLS":        "ingress-without-tls",
		"AKS system ClusterRole deleted": "system-role-modified",
		"AKS Pod With Host PID":          "host-namespace-pod",
	}
	var ids []string
	for test, rule := range want {
		ids = append(ids, rule+"/"+auditIDs[test])
	}
	s.waitFor(t, ids...)
	waittest.Until(t, 30*time.Second, "every record committed", func() bool { return k.Lag(t, kafkaGroup) == 0 })
	r.stop(t)
	for id, n := range s.snapshot() {
		if n != 1 {
			t.Errorf("alert %s delivered %d times", id, n)
		}
	}
}

// aksCorpus returns the corpus's AKS records, each given a unique
// auditID and the stage a real one carries (Panther's hand-written ones
// may leave it out), and their auditIDs by test name.
func aksCorpus(t *testing.T) (records []string, auditIDs map[string]string) {
	t.Helper()
	f, err := os.Open("../../../shared/corpus/panther-analysis/panther_k8s_rule_tests.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	auditIDs = map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for line := 1; sc.Scan(); line++ {
		var w struct {
			Test string         `json:"test_name"`
			Log  map[string]any `json:"log"`
		}
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatal(err)
		}
		props, ok := w.Log["properties"].(map[string]any)
		if !ok {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(props["log"].(string)), &ev); err != nil {
			t.Fatal(err)
		}
		// Hand-written records share auditIDs ("abc-123"), which
		// JetStream would take for one event read twice.
		ev["auditID"] = fmt.Sprintf("panther-%d", line)
		if ev["stage"] == nil {
			ev["stage"] = "ResponseComplete"
		}
		auditIDs[w.Test] = ev["auditID"].(string)
		b, _ := json.Marshal(ev)
		props["log"] = string(b)
		rec, _ := json.Marshal(w.Log)
		records = append(records, string(rec))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return records, auditIDs
}
