package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/vigil-k8s/vigil"

// imports maps each package of the module (its path relative to the
// module) to what its non-test and its test files import.
type imports map[string]*pkgImports

type pkgImports struct {
	code, tests map[string]bool
}

func readImports(t *testing.T) imports {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	out := imports{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		pi := out[pkg]
		if pi == nil {
			pi = &pkgImports{code: map[string]bool{}, tests: map[string]bool{}}
			out[pkg] = pi
		}
		into := pi.code
		if strings.HasSuffix(p, "_test.go") {
			into = pi.tests
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			into[ip] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// under reports whether pkg is dir or below it.
func under(pkg string, dirs ...string) bool {
	for _, d := range dirs {
		if pkg == d || strings.HasPrefix(pkg, d+"/") {
			return true
		}
	}
	return false
}

// importsAny returns the first import of set that matches one of the
// prefixes (module-relative for vigil's own packages).
func importsAny(set map[string]bool, prefixes ...string) string {
	var found []string
	for ip := range set {
		rel := strings.TrimPrefix(ip, module+"/")
		for _, p := range prefixes {
			if rel == p || strings.HasPrefix(rel, p+"/") || ip == p || strings.HasPrefix(ip, p+"/") {
				found = append(found, ip)
			}
		}
	}
	slices.Sort(found)
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

// TestImportRules checks the rules of docs/architecture.md.
func TestImportRules(t *testing.T) {
	all := readImports(t)
	if len(all) < 20 {
		t.Fatalf("found only %d packages; is the walk reading the module?", len(all))
	}
	receivers := []string{"notify/slack", "notify/webhook", "notify/stdout", "notify/alertmanager", "notify/pagerduty"}
	rules := []struct {
		why     string
		applies func(pkg string) bool
		tests   bool // the rule also holds for the package's tests
		mustNot []string
	}{
		{
			why: "only cmd/, internal/app, internal/bench and internal/config know the YAML schema; components take their own options",
			applies: func(p string) bool {
				return !under(p, "cmd", "internal/app", "internal/bench", "internal/config", "deploy")
			},
			tests:   true,
			mustNot: []string{"internal/config"},
		},
		{
			why:     "deploy's tests read the shipped configuration files as the binary does, nothing else of deploy may",
			applies: func(p string) bool { return p == "deploy" },
			mustNot: []string{"internal/config"},
		},
		{
			why:     "sources know nothing of the transport: they hand events to an ingest.Publisher",
			applies: func(p string) bool { return under(p, "ingest") },
			mustNot: []string{"github.com/nats-io"},
		},
		{
			why:     "the transport does not know its callers",
			applies: func(p string) bool { return p == "internal/bus" },
			mustNot: []string{"ingest", "engine", "notify", "rules", "policy", "internal/alert", "internal/silence", "internal/app", "internal/config"},
		},
		{
			why:     "the event model is plain data and decoding: no transport, no rule language",
			applies: func(p string) bool { return under(p, "internal/audit") },
			mustNot: []string{"github.com/nats-io", "github.com/google/cel-go", "rules", "engine", "internal/bus"},
		},
		{
			why:     "the tokenizer reads JSON as encoding/json would, and nothing else",
			applies: func(p string) bool { return p == "internal/audit/jsonscan" },
			mustNot: []string{module, "github.com/"},
		},
		{
			why:     "the rule file format is YAML and positions; expressions are compiled elsewhere",
			applies: func(p string) bool { return p == "rules/parse" },
			mustNot: []string{"github.com/google/cel-go", "rules/compile", "rules/analysis"},
		},
		{
			why:     "the alert shape is shared by engine and notify and depends on neither",
			applies: func(p string) bool { return p == "internal/alert" },
			mustNot: []string{"engine", "notify", "rules", "internal/bus", "internal/silence", "github.com/nats-io"},
		},
		{
			why:     "the CEL environment over an alert knows the alert and CEL: neither who raises alerts, nor who routes or silences them",
			applies: func(p string) bool { return p == "internal/alert/alertcel" },
			tests:   true,
			mustNot: []string{"engine", "notify", "ingest", "policy", "rules/compile", "rules/analysis", "internal/bus", "internal/silence", "internal/config", "github.com/nats-io"},
		},
		{
			why:     "silences are data, a store and a matcher over alerts: they know neither who raises alerts nor who honours them",
			applies: func(p string) bool { return p == "internal/silence" },
			tests:   true,
			mustNot: []string{"engine", "notify", "ingest", "policy", "rules/compile", "rules/analysis", "internal/config"},
		},
		{
			why:     "a source's silence is judged from what it stored, whatever the source, and raised through the publish function it is given",
			applies: func(p string) bool { return p == "internal/quiet" },
			mustNot: []string{"engine", "notify", "ingest", "rules", "internal/config"},
		},
		{
			why:     "the rule language does not touch NATS",
			applies: func(p string) bool { return under(p, "rules", "policy") },
			tests:   true,
			mustNot: []string{"github.com/nats-io", "internal/bus", "engine", "notify", "ingest"},
		},
		{
			why:     "notify composes stages around receivers it is given: it builds none and knows no YAML",
			applies: func(p string) bool { return p == "notify" },
			tests:   true,
			mustNot: []string{"internal/config", "notify/slack", "notify/webhook", "notify/stdout", "notify/alertmanager", "notify/pagerduty"},
		},
		{
			why:     "a receiver delivers to one kind of destination and knows neither the others nor the stages",
			applies: func(p string) bool { return under(p, receivers...) },
			mustNot: append([]string{"internal/bus", "github.com/nats-io", "internal/config"}, receivers...),
		},
		{
			why:     "the engine does not know how alerts are delivered",
			applies: func(p string) bool { return under(p, "engine") },
			mustNot: []string{"notify", "ingest"},
		},
		{
			why:     "nothing but the wiring knows the wiring",
			applies: func(p string) bool { return !under(p, "cmd", "internal/app", "internal/bench", "internal/layout") },
			tests:   true,
			mustNot: []string{"internal/app", "cmd"},
		},
		{
			why:     "test helpers are for tests",
			applies: func(p string) bool { return true },
			mustNot: []string{"internal/natstest", "internal/pkitest", "internal/logtest", "internal/waittest", "internal/disktest", "internal/cloudwatchtest", "internal/ingesttest", "internal/kafkatest", "internal/pubsubtest", "notify/internal/alerttest"},
		},
	}
	for _, r := range rules {
		for pkg, pi := range all {
			if !r.applies(pkg) {
				continue
			}
			if ip := importsAny(pi.code, r.mustNot...); ip != "" && !under(strings.TrimPrefix(ip, module+"/"), pkg) {
				t.Errorf("%s imports %s: %s", pkg, ip, r.why)
			}
			if r.tests {
				if ip := importsAny(pi.tests, r.mustNot...); ip != "" && !under(strings.TrimPrefix(ip, module+"/"), pkg) {
					t.Errorf("%s (tests) imports %s: %s", pkg, ip, r.why)
				}
			}
		}
	}
}

// TestRulesSeeEveryPackage guards the walk itself: a rule over no package
// would pass for ever.
func TestRulesSeeEveryPackage(t *testing.T) {
	all := readImports(t)
	for _, want := range []string{"cmd/vigil", "engine", "ingest/file", "ingest/webhook", "internal/bus", "internal/audit", "notify", "rules"} {
		if _, ok := all[want]; !ok {
			t.Errorf("package %s not found", want)
		}
	}
	if !all["internal/app"].code[path.Join(module, "internal/config")] {
		t.Error("internal/app does not import internal/config: the walk is not reading imports")
	}
}
