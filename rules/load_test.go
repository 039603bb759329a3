package rules

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// problems loads files and returns the problems, with the temp dir removed
// from file names.
func problems(t *testing.T, files map[string]string) []string {
	t.Helper()
	dir := writeFiles(t, files)
	_, err := Load(LoadOptions{Paths: []string{dir}})
	if err == nil {
		t.Fatal("load succeeded, want problems")
	}
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not *Problems", err)
	}
	var out []string
	for _, p := range ps.List {
		out = append(out, strings.TrimPrefix(p.String(), dir+string(filepath.Separator)))
	}
	return out
}

func TestLintReportsEachMistakeAtItsPlace(t *testing.T) {
	cases := []struct {
		name string
		file string
		want string
	}{{
		name: "unknown key with suggestion",
		file: `rules:
  - id: r
    severity: low
    condition: "true"
    enabeld: false
`,
		want: `r.yaml:5:5: r: unknown field "enabeld", did you mean "enabled"?`,
	}, {
		name: "misspelt event field inside a folded condition",
		file: `rules:
  - id: r
    severity: low
    condition: >
      event.verb == "get" &&
      event.objectRef.resourse == "pods"
`,
		want: `r.yaml:6:23: r: condition: unknown field "resourse", did you mean "resource"?`,
	}, {
		name: "syntax error in a literal block",
		file: `rules:
  - id: r
    severity: low
    condition: |
      event.verb == "get" &&
        event.verb ==
`,
		want: `r.yaml:6:22: r: condition: Syntax error: mismatched input '<EOF>' expecting`,
	}, {
		name: "non-boolean condition",
		file: `rules:
  - id: r
    severity: low
    condition: event.user.username
`,
		want: `r.yaml:4:16: r: condition must be a boolean expression, but this one gives string`,
	}, {
		name: "unknown macro",
		file: `rules:
  - id: r
    severity: low
    condition: event.verb == "get" && macros.is_admin
`,
		want: `r.yaml:4:46: r: condition: unknown macro "is_admin"`,
	}, {
		name: "misspelt macro",
		file: `macros:
  is_admin: event.user.username == "admin"
rules:
  - id: r
    severity: low
    condition: macros.is_admn
`,
		want: `r.yaml:6:23: r: condition: unknown macro "is_admn", did you mean "is_admin"?`,
	}, {
		name: "unknown list",
		file: `rules:
  - id: r
    severity: low
    condition: 'event.verb in lists.verbs'
`,
		want: `r.yaml:4:37: r: condition: unknown list "verbs"`,
	}, {
		name: "bad severity",
		file: `rules:
  - id: r
    severity: severe
    condition: "true"
`,
		want: `r.yaml:3:15: r: severity "severe" is not one of info, low, medium, high, critical`,
	}, {
		name: "bad duration",
		file: `rules:
  - id: r
    severity: low
    condition: "true"
    threshold: {count: 5, window: 5 mins, by: [event.user.username]}
`,
		want: `r.yaml:5:35: r: threshold window "5 mins" is not a positive duration like 30s, 5m or 1h`,
	}, {
		name: "id not kebab-case",
		file: `rules:
  - id: Secret_Read
    severity: low
    condition: "true"
`,
		want: `r.yaml:2:9: Secret_Read: id "Secret_Read" must be kebab-case (lowercase letters, digits and single dashes)`,
	}, {
		name: "output not a string",
		file: `rules:
  - id: r
    severity: low
    condition: "true"
    output: event.responseStatus.code
`,
		want: `r.yaml:5:13: r: output must be a string expression, but this one gives int`,
	}, {
		name: "macro cycle",
		file: `macros:
  a: macros.b
  b: macros.a
rules: []
`,
		want: `r.yaml:2:6: macro "a" refers to itself: a -> b -> a`,
	}, {
		name: "invalid YAML",
		file: "rules:\n  - id: r\n    condition: \"unclosed\n",
		want: `r.yaml:3:1: invalid YAML: found unexpected end of stream`,
	}, {
		name: "test naming an unknown rule",
		file: `rules:
  - id: secret-read
    severity: low
    condition: "true"
tests:
  - name: t
    rule: secret-reed
    match: true
    event: {verb: get}
`,
		want: `r.yaml:6:5: test "t" names unknown rule "secret-reed", did you mean "secret-read"?`,
	}, {
		name: "missing condition and severity",
		file: `rules:
  - id: r
    title: nothing else
`,
		want: `r.yaml:2:5: r: rule has no condition`,
	}, {
		name: "bad threshold key expression",
		file: `rules:
  - id: r
    severity: low
    condition: "true"
    threshold:
      count: 3
      window: 1m
      by: [event.user.username, event.user.usrname]
`,
		want: `r.yaml:8:44: r: threshold by: unknown field "usrname", did you mean "username"?`,
	}, {
		name: "bad stage",
		file: `rules:
  - id: r
    severity: low
    condition: "true"
    stages: [ResponseComplete, Done]
`,
		want: `r.yaml:5:32: r: stage "Done" is not one of RequestReceived, ResponseStarted, ResponseComplete, Panic`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := problems(t, map[string]string{"r.yaml": c.file})
			if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, c.want) }) {
				t.Errorf("problems:\n  %s\nwant one starting with\n  %s", strings.Join(got, "\n  "), c.want)
			}
		})
	}
}

func TestLoadRejectsDuplicateIDsAcrossFiles(t *testing.T) {
	rule := "rules:\n  - id: same\n    severity: low\n    condition: \"true\"\n"
	got := problems(t, map[string]string{"a.yaml": rule, "sub/b.yml": rule})
	want := []string{"sub/b.yml:2:5: same: duplicate rule id, first defined at "}
	if len(got) != 1 || !strings.HasPrefix(got[0], want[0]) || !strings.Contains(got[0], "a.yaml:2; to change a rule defined elsewhere, use overrides") {
		t.Errorf("problems %v, want one duplicate pointing at a.yaml:2", got)
	}
}

func TestLoadReportsProblemsOfEveryFile(t *testing.T) {
	got := problems(t, map[string]string{
		"a.yaml": "rules:\n  - id: a\n    severity: bad\n    condition: \"true\"\n",
		"b.yaml": "rules:\n  - id: b\n    severity: low\n    condition: \"1\"\n",
	})
	if len(got) != 2 || !strings.HasPrefix(got[0], "a.yaml:3:15") || !strings.HasPrefix(got[1], "b.yaml:4:16") {
		t.Errorf("problems %v, want one in each file", got)
	}
}

func TestLoadSharesListsAndMacrosAcrossFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"base.yaml":  "lists:\n  admins: [alice]\nmacros:\n  is_admin: event.user.username in lists.admins\n",
		"rules.yaml": "rules:\n  - id: admin-seen\n    severity: info\n    condition: macros.is_admin\n",
	})
	set, err := Load(LoadOptions{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules()) != 1 {
		t.Fatalf("rules: %d", len(set.Rules()))
	}
}

func TestLoadNamesMissingPaths(t *testing.T) {
	_, err := Load(LoadOptions{Paths: []string{"does/not/exist.yaml"}})
	if err == nil || !strings.Contains(err.Error(), "does/not/exist.yaml") {
		t.Errorf("error %v does not name the missing path", err)
	}
	empty := t.TempDir()
	_, err = Load(LoadOptions{Paths: []string{empty}})
	if err == nil || !strings.Contains(err.Error(), "no *.yaml or *.yml rule files") {
		t.Errorf("empty folder: %v", err)
	}
}

func TestHashIsStableAndFollowsContent(t *testing.T) {
	a := "rules:\n  - id: a\n    severity: low\n    condition: \"true\"\n"
	b := "rules:\n  - id: b\n    severity: low\n    condition: \"false\"\n"
	s1, err := Compile([]File{{Name: "x/a.yaml", Data: []byte(a)}, {Name: "x/b.yaml", Data: []byte(b)}})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Compile([]File{{Name: "y/b.yaml", Data: []byte(b)}, {Name: "y/a.yaml", Data: []byte(a)}})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := Compile([]File{{Name: "x/a.yaml", Data: []byte(a)}})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Hash() != s2.Hash() {
		t.Errorf("same files in another order and place hash differently: %s %s", s1.Hash(), s2.Hash())
	}
	if s1.Hash() == s3.Hash() {
		t.Errorf("different rule sets share hash %s", s1.Hash())
	}
}

func TestDefaultPackShipsTheContractIDs(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	contract := []string{
		"secret-read-by-non-node", "deployment-deleted-in-default", "pod-exec-or-attach", "pod-port-forward",
		"ephemeral-container-added", "privileged-container", "sensitive-hostpath-mount", "host-namespace-pod",
		"nodeport-service-created", "configmap-with-credentials", "anonymous-request-allowed", "cluster-admin-binding",
		"role-with-wildcard", "role-with-pod-exec", "system-role-modified", "pod-created-in-kube-namespace",
		"serviceaccount-created-in-kube-namespace", "ingress-without-tls", "secret-access-forbidden",
		"serviceaccount-token-requested", "impersonation-used", "webhook-configuration-changed", "csr-approved",
		"node-proxy-access", "aws-auth-configmap-modified", "forbidden-burst", "secret-enumeration",
	}
	tested := map[string]map[bool]bool{}
	for _, tc := range set.Tests() {
		if tested[tc.Rule] == nil {
			tested[tc.Rule] = map[bool]bool{}
		}
		tested[tc.Rule][tc.Match] = true
	}
	for _, id := range contract {
		r, ok := set.Rule(id)
		if !ok {
			t.Errorf("default pack lacks %s", id)
			continue
		}
		if !r.Enabled {
			t.Errorf("%s is disabled", id)
		}
	}
	for _, r := range set.Rules() {
		if !tested[r.ID][true] || !tested[r.ID][false] {
			t.Errorf("%s lacks a positive or a negative test", r.ID)
		}
	}
	for _, id := range []string{"forbidden-burst", "secret-enumeration"} {
		if r, _ := set.Rule(id); r == nil || r.Threshold == nil {
			t.Errorf("%s is not a threshold rule", id)
		}
	}
}

// TestLoadConfigMapFolder loads rules from a folder laid out as the kubelet
// mounts a ConfigMap: files are links into a hidden, timestamped folder.
func TestLoadConfigMapFolder(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	rule := "rules:\n  - id: namespace-deleted\n    title: Namespace deleted\n    severity: low\n    condition: event.verb == \"delete\" && event.objectRef.resource == \"namespaces\"\n"
	if err := os.WriteFile(filepath.Join(data, "local.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "local.yaml"), filepath.Join(dir, "local.yaml")); err != nil {
		t.Fatal(err)
	}
	set, err := Load(LoadOptions{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if n := len(set.Rules()); n != 1 {
		t.Fatalf("loaded %d rules, want 1", n)
	}
}
