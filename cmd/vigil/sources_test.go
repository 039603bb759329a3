package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestSourcesCheckSaysWhatRulesLoseOnGKE(t *testing.T) {
	out, _, err := run(t, newSourcesCmd(), "", "check", "--source", "gke")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"gke: GKE: Cloud Audit Logs LogEntries, through a log sink\n",
		"  blind    impersonation-used\n           - it reads impersonatedUser.username, which gke leaves out",
		"  blind    configmap-with-credentials\n           - it reads requestObject, which gke does not log for secrets, configmaps, tokenreviews",
		"unless Data Access audit logs (ADMIN_READ, DATA_READ) are enabled",
		"  53 rules: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "eks:") {
		t.Errorf("--source gke printed other sources:\n%s", out)
	}
}

func TestSourcesCheckJSON(t *testing.T) {
	out, _, err := run(t, newSourcesCmd(), "", "check", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var results []struct {
		Source, Rule, Status string
		Losses               []string
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatal(err)
	}
	bySource := map[string]int{}
	for _, r := range results {
		bySource[r.Source]++
		if r.Source == "aks-admin" && r.Rule == "secret-enumeration" && (r.Status != "blind" || len(r.Losses) == 0) {
			t.Errorf("secret-enumeration on aks-admin: %+v, want blind, saying why", r)
		}
	}
	if len(bySource) != 4 || bySource["gke"] != bySource["eks"] {
		t.Errorf("results by source %v, want every rule on each of gke, eks, aks, aks-admin", bySource)
	}
}

func TestSourcesCheckRejectsAnUnknownSource(t *testing.T) {
	_, _, err := run(t, newSourcesCmd(), "", "check", "--source", "openshift")
	if err == nil || !strings.Contains(err.Error(), `--source "openshift": want one of [gke eks aks aks-admin]`) {
		t.Errorf("error %v", err)
	}
}

// docs/ingest.md shows what `vigil sources check` prints for the default
// pack; every line it shows must be a line the command prints.
func TestSourcesCheckOutputInTheDocsIsTrue(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ingest.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```console\n$ vigil sources check")
	if !ok {
		t.Fatal("docs/ingest.md shows no vigil sources check")
	}
	block, _, _ := strings.Cut("$ vigil sources check"+rest, "```")
	runs := strings.Split(block, "$ vigil ")[1:]
	if len(runs) < 2 {
		t.Fatalf("want the output of two runs, got %d", len(runs))
	}
	for _, r := range runs {
		cmdline, shown, _ := strings.Cut(r, "\n")
		args := strings.Fields(cmdline)[1:] // after "sources"
		out, _, err := run(t, newSourcesCmd(), "", args...)
		if err != nil {
			t.Fatal(err)
		}
		printed := strings.Split(out, "\n")
		for _, line := range strings.Split(strings.TrimRight(shown, "\n"), "\n") {
			if line != "  ..." && !slices.Contains(printed, line) {
				t.Errorf("docs/ingest.md shows for %q a line the command does not print:\n%s\noutput:\n%s", cmdline, line, out)
			}
		}
	}
}
