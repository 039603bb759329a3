package provider_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/rules"
)

const pantherCorpus = "../../../../shared/corpus/panther-analysis/panther_k8s_rule_tests.jsonl"

// corpusOutcome is what the default pack raises on one of Panther's AKS
// or GKE records, once converted. note is required where that is not what
// Panther's label expects (an alert, or none): it says why.
type corpusOutcome struct {
	alerts []string
	note   string
}

const (
	noRule      = "the default pack has no rule for this: "
	packDecides = "the default pack decides otherwise: "
)

// pantherCorpusOutcomes holds every AKS and GKE record of the corpus, by
// Panther's test name.
var pantherCorpusOutcomes = map[string]corpusOutcome{
	// AKS: properties.log holds the apiserver's Event.
	"AKS ValidatingWebhookConfiguration Created":         {alerts: []string{"webhook-configuration-changed"}},
	"AKS Anonymous API Access":                           {alerts: []string{"anonymous-request-allowed"}},
	"AKS client certificate CSR created":                 {note: noRule + "creating a CSR (csr-approved alerts when one is approved)"},
	"AKS node bootstrap CSR (excluded)":                  {},
	"AKS ClusterRoleBinding to system:masters":           {alerts: []string{"privileged-role-binding", "rolebinding-created"}},
	"AKS CronJob Updated":                                {note: packDecides + "cronjob-created alerts on creation, not on updates"},
	"AKS DaemonSet Created":                              {alerts: []string{"daemonset-created"}},
	"AKS Exec Into Pod (realistic)":                      {alerts: []string{"pod-exec-or-attach"}},
	"AKS Ingress without TLS":                            {alerts: []string{"ingress-without-tls"}},
	"AKS Activity from Tor Exit Node":                    {note: noRule + "the IP is flagged by Panther's Tor enrichment, not by the event"},
	"AKS kubectl cp from pod with SSH keys":              {alerts: []string{"pod-exec-or-attach"}},
	"AKS 403 from Public IP":                             {note: noRule + "a single denial; forbidden-burst alerts on 20 within 5 minutes"},
	"AKS pod created in kube-public":                     {alerts: []string{"pod-created-in-kube-namespace"}},
	"AKS Pod with NET_ADMIN Capability":                  {alerts: []string{"dangerous-capabilities"}},
	"AKS Pod with HostIPC":                               {alerts: []string{"host-namespace-pod"}},
	"AKS Pod With Host Network":                          {alerts: []string{"host-namespace-pod"}},
	"AKS Pod With Host PID":                              {alerts: []string{"host-namespace-pod"}},
	"AKS Pod With HostPath":                              {note: packDecides + "sensitive-hostpath-mount flags sensitive host paths, and /mnt/data is not one"},
	"AKS Privileged Pod Created":                         {alerts: []string{"privileged-container"}},
	"AKS ClusterRole with nodes/* permission":            {alerts: []string{"role-with-wildcard", "role-with-write-privileges", "role-with-nodes-proxy", "role-created"}},
	"AKS Role with pods/exec in namespace":               {alerts: []string{"role-with-pod-exec", "role-with-write-privileges", "role-created"}},
	"AKS Role with wildcard verbs only":                  {alerts: []string{"role-with-wildcard", "role-with-write-privileges", "role-created"}},
	"AKS Role with create and update on pods":            {alerts: []string{"role-with-write-privileges", "role-created"}},
	"AKS failed secret get (401 Unauthorized)":           {note: packDecides + "secret-access-forbidden is about denials (403); a 401 is an unauthenticated request"},
	"AKS cluster-wide secret list":                       {alerts: []string{"secret-read-by-non-node", "secrets-listed-cluster-wide"}},
	"AKS NodePort Service Created":                       {alerts: []string{"nodeport-service-created", "service-created"}},
	"AKS long-lived token created":                       {alerts: []string{"serviceaccount-token-requested"}},
	"AKS read serviceaccount directory":                  {alerts: []string{"pod-exec-or-attach"}},
	"AKS workload identity token theft":                  {alerts: []string{"pod-exec-or-attach"}},
	"AKS System ServiceAccount from Non-Azure Public IP": {note: noRule + "telling the cloud's own addresses from others needs address ranges the pack does not carry"},
	"AKS CSI Disk Driver from Azure Node":                {},
	"AKS CSI File Driver from Azure Node":                {},
	"AKS System Node from Azure IP":                      {},
	"AKS system ClusterRole deleted":                     {alerts: []string{"system-role-modified", "role-deleted"}},

	// GKE: Cloud Audit LogEntries, converted.
	"GKE MutatingWebhookConfiguration Created": {alerts: []string{"webhook-configuration-changed"}},
	"GCP GKE Anonymous API Access": {note: "the record names system:anonymous only in authenticationInfo.authoritySelector, " +
		"which is not the principal; GKE writes an anonymous caller's name in principalEmail, as the other records here do"},
	"Google Load Balancer Health Check (excluded)":                {},
	"GKE client certificate CSR created":                          {note: noRule + "creating a CSR (csr-approved alerts when one is approved)"},
	"GKE ClusterRoleBinding to admin role":                        {alerts: []string{"privileged-role-binding", "rolebinding-created"}},
	"GCP GKE CronJob Created":                                     {alerts: []string{"cronjob-created"}},
	"GCP GKE DaemonSet Created":                                   {alerts: []string{"pod-created-in-kube-namespace", "daemonset-created"}},
	"GCP GKE Exec Into Pod":                                       {alerts: []string{"pod-exec-or-attach"}},
	"GKE Ingress without TLS with external DNS annotation":        {alerts: []string{"ingress-without-tls"}},
	"GCP GKE Activity from Tor Exit Node":                         {note: noRule + "the IP is flagged by Panther's Tor enrichment, not by the event"},
	"Non-K8s GCP Activity (Excluded)":                             {},
	"GKE kubectl cp from pod":                                     {alerts: []string{"pod-exec-or-attach"}},
	"GCP GKE 403 from Public IP":                                  {note: noRule + "a single denial; forbidden-burst alerts on 20 within 5 minutes"},
	"GKE pod created in gke-system":                               {note: packDecides + "lists.kube_namespaces holds Kubernetes' own namespaces; add gke-system with an override"},
	"GKE Pod with BPF Capability":                                 {alerts: []string{"dangerous-capabilities"}},
	"GKE Pod with HostIPC":                                        {alerts: []string{"host-namespace-pod"}},
	"GCP GKE Pod With Host Network":                               {alerts: []string{"host-namespace-pod"}},
	"GCP GKE Pod With Host PID":                                   {alerts: []string{"host-namespace-pod"}},
	"GCP GKE Pod With HostPath":                                   {alerts: []string{"sensitive-hostpath-mount"}},
	"GCP GKE Privileged Pod Created":                              {alerts: []string{"privileged-container"}},
	"GKE ClusterRole with nodes proxy access":                     {alerts: []string{"role-with-write-privileges", "role-with-nodes-proxy", "role-created"}},
	"GKE ClusterRole with multiple resources including pods/exec": {alerts: []string{"role-with-pod-exec", "role-with-write-privileges", "role-created"}},
	"GKE ClusterRole with wildcard resources only":                {alerts: []string{"role-with-wildcard", "role-created"}},
	"GKE ClusterRole with deletecollection":                       {alerts: []string{"role-with-write-privileges", "role-created"}},
	"GKE failed secret get":                                       {alerts: []string{"secret-access-forbidden"}},
	"GKE cluster-wide secret list":                                {alerts: []string{"secret-read-by-non-node", "secrets-listed-cluster-wide"}},
	"GCP GKE NodePort Service Created":                            {alerts: []string{"nodeport-service-created", "service-created"}},
	"GKE steal token with sh -c":                                  {alerts: []string{"pod-exec-or-attach"}},
	"GKE workload identity token theft":                           {alerts: []string{"pod-exec-or-attach"}},
	"GKE System ServiceAccount from Non-GCP Public IP":            {note: noRule + "telling the cloud's own addresses from others needs address ranges the pack does not carry"},
	"GKE Anonymous Readyz Check via RequestURI":                   {},
	"GKE system:anonymous Health Check (Excluded - Anonymous)":    {},
	"GKE system Role patched":                                     {note: packDecides + "system-role-modified watches ClusterRoles and their bindings; this is a namespaced Role"},
	"GKE Anonymous Health Check with User Agent": {alerts: []string{"anonymous-request-allowed"},
		note: "the record names core/v1/healthz as a resource, which it is not (GKE does not log /healthz at all), " +
			"so the converted event is no health check and the anonymous get is flagged"},
}

// withIdentity gives Panther's hand-written records what a real record
// always carries and they leave out: a GKE entry's insertId, an AKS
// event's auditID and stage. Decode refuses records without them
// (TestGKEErrorsNameTheField, TestAKSRecordErrorsNameTheField).
func withIdentity(t *testing.T, log map[string]any, id string) {
	t.Helper()
	if log["protoPayload"] != nil {
		if log["insertId"] == nil {
			log["insertId"] = id
		}
		return
	}
	props := log["properties"].(map[string]any)
	var ev map[string]any
	if err := json.Unmarshal([]byte(props["log"].(string)), &ev); err != nil {
		t.Fatal(err)
	}
	if ev["auditID"] == nil {
		ev["auditID"] = id
	}
	if ev["stage"] == nil {
		ev["stage"] = audit.StageResponseComplete
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	props["log"] = string(b)
}

// TestCorpusProviderRecordsRaiseTheAlertsTheirLabelsExpect converts the
// corpus's 34 AKS diagnostic records and 34 GKE LogEntries and runs every
// rule of the default pack on each, as a fresh engine would.
func TestCorpusProviderRecordsRaiseTheAlertsTheirLabelsExpect(t *testing.T) {
	set, err := rules.Load(rules.LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pantherCorpus)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	seen := map[string]bool{}
	count := map[provider.Format]int{}
	for line := 1; sc.Scan(); line++ {
		var w struct {
			Test     string         `json:"test_name"`
			Expected bool           `json:"expected_alert"`
			Log      map[string]any `json:"log"`
		}
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatal(err)
		}
		if w.Log["protoPayload"] == nil && w.Log["properties"] == nil {
			continue
		}
		withIdentity(t, w.Log, fmt.Sprintf("panther-%d", line))
		record, err := json.Marshal(w.Log)
		if err != nil {
			t.Fatal(err)
		}
		want, ok := pantherCorpusOutcomes[w.Test]
		if !ok {
			t.Errorf("line %d: %q is not in the table", line, w.Test)
			continue
		}
		seen[w.Test] = true
		b, err := provider.Decode(record)
		if err != nil {
			t.Errorf("%q: %v", w.Test, err)
			continue
		}
		count[b.Format]++
		fired := []string{}
		for _, it := range b.Items {
			if it.Err != nil {
				if w.Expected {
					t.Errorf("%q: %v", w.Test, it.ItemError())
				}
				continue
			}
			ev, err := audit.Decode(it.Raw.Data)
			if err != nil {
				t.Errorf("%q: converted event: %v", w.Test, err)
				continue
			}
			for _, r := range set.Rules() {
				if !r.Enabled {
					continue
				}
				ok, _, errs := set.TryRule(r, []*audit.Event{ev})
				if len(errs) > 0 {
					t.Errorf("%q: %s failed: %v", w.Test, r.ID, errs)
				}
				if ok {
					fired = append(fired, r.ID)
				}
			}
		}
		if !slices.Equal(fired, want.alerts) && (len(fired) > 0 || len(want.alerts) > 0) {
			t.Errorf("%q raised %v, want %v", w.Test, fired, want.alerts)
		}
		if w.Expected == (len(want.alerts) == 0) && want.note == "" {
			t.Errorf("%q: Panther expects an alert: %v, the pack raises %v; the table must say why", w.Test, w.Expected, want.alerts)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for name := range pantherCorpusOutcomes {
		if !seen[name] {
			t.Errorf("%q is in the table but not in the corpus", name)
		}
	}
	if count[provider.FormatAKS] != 34 || count[provider.FormatGKE] != 34 {
		t.Errorf("decoded %d AKS and %d GKE records, want 34 of each", count[provider.FormatAKS], count[provider.FormatGKE])
	}
}
