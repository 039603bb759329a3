package main

import (
	"strings"
	"testing"
)

// A file of the managed clusters' records: a GKE entry, an AKS record and
// one of another category, a CloudWatch export line that CloudWatch cut.
func TestReplayTellsFormatsApartAndCountsThem(t *testing.T) {
	out, errOut, err := run(t, newReplayCmd(), "", "testdata/managed-clusters.log")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"2026-03-04T10:00:00Z critical secrets-listed-cluster-wide: Secrets listed across all namespaces: mallory@example.com list secrets (200)\n" +
			"    A list or watch of Secrets in every namespace dumps every credential of the cluster.\n" +
			"    runbook: https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#secrets-secretsyaml\n" +
			"    auditID: g1\n",
		" low      deployment-deleted-in-default: bob deleted deployment default/web\n" +
			"    A deployment in default was deleted.\n" +
			"    runbook: https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#workloads-workloadsyaml\n" +
			"    auditID: k1\n",
		"2 events, 3 alerts, 1 malformed lines skipped\n",
		"events: 1 from AKS diagnostic record, 1 from GKE LogEntry; 1 records held no Kubernetes audit event\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{
		`testdata/managed-clusters.log:3: skipped: not a Kubernetes audit record: category "guard" holds no audit events`,
		"testdata/managed-clusters.log:4: skipped: cut short by the provider: event c1 ends with [Truncated...]",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
