// Package rules is vigil's rule language: YAML rule files with CEL
// conditions over Kubernetes audit events, their loading, type-checking and
// linting, rule tests, and the embedded default detection pack.
package rules

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
	"k8s.io/apiserver/pkg/cel/library"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/rules/parse"
)

//go:embed default/*.yaml default/testdata
var defaultPack embed.FS

// LoadOptions says which rule files to load together.
type LoadOptions struct {
	// Paths are rule files or folders; folders are searched recursively for
	// *.yaml and *.yml files.
	Paths []string
	// Default adds the embedded default rule pack.
	Default bool
	// Limits bound what one evaluation may cost; zero: the defaults.
	Limits Limits
	// Metrics counts each request or response object over
	// Limits.ObjectBytes that a rule wanted, which then read as absent
	// (vigil_limit_exceeded_total{limit="max_object_bytes"}); nil counts
	// nowhere.
	Metrics *metrics.Metrics
}

// Rule is one compiled detection rule.
type Rule struct {
	ID          string
	Title       string
	Description string
	Severity    string
	Tags        []string
	Stages      []string
	Enabled     bool
	Threshold   *Threshold
	// File and Line locate the rule's definition.
	File string
	Line int

	cond   cel.Program
	output cel.Program // nil: the default output
	// resources is what the condition demands of event.objectRef.resource
	// (nil: anything), and guard what Go can decide of it (nil: nothing),
	// for the prefilter.
	resources []string
	guard     func(*audit.Event) bool
	needs     Needs
	by        []cel.Program
	distinct  cel.Program
}

// Set is a loaded, compiled rule set. It is immutable and safe for
// concurrent use.
type Set struct {
	rules  []*Rule
	index  *index
	tests  []*TestCase
	macros []cel.Program
	objs   map[string]*objType
	hash   string
	// probes are the values the rules' guards compare each event field
	// with, by field path: what tests move events through.
	probes map[string][]string
	pool   sync.Pool // of *activation
	// objectBytes bounds the request and response objects rules decode;
	// tooLarge counts each one over it.
	objectBytes int
	tooLarge    prometheus.Counter
}

// Rules returns every rule, enabled and disabled, in file order.
func (s *Set) Rules() []*Rule { return slices.Clone(s.rules) }

// Rule returns the rule with the given id.
func (s *Set) Rule(id string) (*Rule, bool) {
	for _, r := range s.rules {
		if r.ID == id {
			return r, true
		}
	}
	return nil, false
}

// Tests returns the rule tests of every loaded file.
func (s *Set) Tests() []*TestCase { return slices.Clone(s.tests) }

// Hash is a stable version of the rule set: the same rule files, in any
// order and from any place, give the same hash.
func (s *Set) Hash() string { return s.hash }

// Load reads, parses and compiles rule files. Any problem in any file
// rejects the whole load with a *Problems listing all of them.
func Load(opts LoadOptions) (*Set, error) {
	var probs Problems
	var files []File
	if opts.Default {
		d, err := defaultFiles()
		if err != nil {
			return nil, err
		}
		files = append(files, d...)
	}
	for _, p := range opts.Paths {
		found, err := diskFiles(p)
		if err != nil {
			probs.Add(Problem{File: p, Message: err.Error()})
			continue
		}
		files = append(files, found...)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return compileFiles(files, opts.Limits, opts.Metrics)
}

// File is one rule file's name and content.
type File struct {
	Name string
	Data []byte
	// ReadFile resolves paths a test names (events_file); nil forbids them.
	ReadFile func(rel string) ([]byte, error)
}

func defaultFiles() ([]File, error) {
	names, err := fs.Glob(defaultPack, "default/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("default rule pack: %w", err)
	}
	var out []File
	for _, n := range names {
		data, err := defaultPack.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("default rule pack: %w", err)
		}
		out = append(out, File{
			Name: "rules/" + n,
			Data: data,
			ReadFile: func(rel string) ([]byte, error) {
				return defaultPack.ReadFile(path.Join("default", rel))
			},
		})
	}
	return out, nil
}

// Files lists the rule files in folder p, recursively: *.yaml and *.yml,
// sorted. Hidden folders are skipped: the kubelet mounts a ConfigMap as
// links into a "..<timestamp>" folder, which would otherwise load every
// file twice.
func Files(p string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && fp != p && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if ext := filepath.Ext(fp); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, fp)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read rules folder: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml or *.yml rule files in folder")
	}
	sort.Strings(files)
	return files, nil
}

func diskFiles(p string) ([]File, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read rules: %w", err)
	}
	files := []string{p}
	if st.IsDir() {
		if files, err = Files(p); err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	out := make([]File, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("cannot read rules: %w", err)
		}
		dir := filepath.Dir(f)
		out = append(out, File{
			Name: f,
			Data: data,
			ReadFile: func(rel string) ([]byte, error) {
				if !filepath.IsAbs(rel) {
					rel = filepath.Join(dir, rel)
				}
				return os.ReadFile(rel)
			},
		})
	}
	return out, nil
}

// Compile parses and compiles rule files loaded together: their lists and
// macros are shared, rule ids must be unique across them.
func Compile(files []File) (*Set, error) {
	return CompileWith(files, Limits{})
}

// CompileWith is Compile with limits other than the defaults.
func CompileWith(files []File, limits Limits) (*Set, error) {
	return compileFiles(files, limits, nil)
}

func compileFiles(files []File, limits Limits, m *metrics.Metrics) (*Set, error) {
	if m == nil {
		m = metrics.New(nil)
	}
	limits = limits.withDefaults()
	var probs Problems
	parsed := make([]*parse.File, 0, len(files))
	for _, f := range files {
		rf := f.ReadFile
		if rf == nil {
			name := f.Name
			rf = func(string) ([]byte, error) {
				return nil, fmt.Errorf("%s cannot refer to other files", name)
			}
		}
		parsed = append(parsed, parse.Parse(parse.Source{Name: f.Name, Data: f.Data, ReadFile: rf}, &probs))
	}
	c := &compiler{probs: &probs, limits: limits}
	set := c.compile(parsed)
	set.objectBytes, set.tooLarge = limits.ObjectBytes, m.LimitExceeded.WithLabelValues("max_object_bytes")
	if err := probs.Err(); err != nil {
		return nil, err
	}
	set.hash = hashFiles(files)
	return set, nil
}

func hashFiles(files []File) string {
	sums := make([]string, len(files))
	for i, f := range files {
		s := sha256.Sum256(f.Data)
		sums[i] = hex.EncodeToString(s[:])
	}
	sort.Strings(sums)
	h := sha256.New()
	for _, s := range sums {
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

type compiler struct {
	probs  *Problems
	limits Limits
	env    *cel.Env
	costs  checker.CostEstimator
	// Names the rules may use, for suggestions.
	fieldNames, macroNames, listNames []string
}

func (c *compiler) problemAt(e parse.Expr, ruleID string, line, col int, format string, args ...any) {
	c.probs.Add(Problem{File: e.File.Name, Line: line, Col: col, RuleID: ruleID, Message: fmt.Sprintf(format, args...)})
}

func (c *compiler) problemNode(f *parse.File, n *yaml.Node, ruleID, format string, args ...any) {
	c.probs.Add(Problem{File: f.Name, Line: n.Line, Col: n.Column, RuleID: ruleID, Message: fmt.Sprintf(format, args...)})
}

func (c *compiler) compile(files []*parse.File) *Set {
	set := &Set{}

	lists := map[string][]string{}
	listAt := map[string]parse.List{}
	var macroDefs []parse.Macro
	macroAt := map[string]parse.Macro{}
	for _, f := range files {
		for _, l := range f.Lists {
			if prev, dup := listAt[l.Name]; dup {
				c.problemNode(f, l.Node, "", "list %q is already defined at %s:%d", l.Name, prev.File.Name, prev.Node.Line)
				continue
			}
			listAt[l.Name] = l
			lists[l.Name] = l.Values
		}
		for _, m := range f.Macros {
			if prev, dup := macroAt[m.Name]; dup {
				c.problemNode(f, m.Expr.Node, "", "macro %q is already defined at %s:%d", m.Name, prev.Expr.File.Name, prev.Expr.Node.Line)
				continue
			}
			macroAt[m.Name] = m
			macroDefs = append(macroDefs, m)
		}
	}
	macroNames := make([]string, len(macroDefs))
	for i, m := range macroDefs {
		macroNames[i] = m.Name
	}
	objs, err := eventTypes()
	if err != nil {
		c.probs.Add(Problem{File: "(rules)", Message: fmt.Sprintf("cannot build the CEL environment: %v", err)})
		return set
	}
	c.fieldNames = objFieldNames(objs)
	c.macroNames = macroNames
	c.listNames = mapsKeys(lists)
	objs[typeLists] = listsType(lists)
	objs[typeMacros] = macrosType(macroNames)
	set.objs = objs
	env, err := newEnv(objs)
	if err != nil {
		// The environment does not depend on rule text beyond names, so
		// this is a defect, not a rule problem; report it all the same.
		c.probs.Add(Problem{File: "(rules)", Message: fmt.Sprintf("cannot build the CEL environment: %v", err)})
		return set
	}
	c.env = env
	c.costs = &library.CostEstimator{SizeEstimator: listSizes(lists)}

	set.macros = make([]cel.Program, len(macroDefs))
	refs := make([][]string, len(macroDefs))
	macroASTs := map[string]celast.Expr{}
	for i, m := range macroDefs {
		ast := c.check(m.Expr, "", types.BoolType, "macro "+m.Name)
		if ast == nil {
			continue
		}
		macroASTs[m.Name] = ast.NativeRep().Expr()
		refs[i] = macroRefs(ast)
		set.macros[i] = c.program(m.Expr, "", ast, c.limits.Cost)
	}
	c.checkCycles(macroDefs, refs)
	guardOf := newGuardBuilder(lists, macroASTs)
	needsOf := newNeedsAnalyzer(lists, macroASTs)

	ids := map[string]*Rule{}
	for _, f := range files {
		for _, d := range f.Rules {
			r := &Rule{ID: d.ID, Title: d.Title, Description: d.Description, Severity: d.Severity, Tags: d.Tags,
				Stages: d.Stages, Enabled: d.Enabled, Threshold: d.Threshold, File: f.Name, Line: d.Node.Line}
			if r.ID != "" {
				if prev, dup := ids[r.ID]; dup {
					c.problemNode(f, d.Node, r.ID, "duplicate rule id, first defined at %s:%d", prev.File, prev.Line)
				} else {
					ids[r.ID] = r
				}
			}
			if d.Condition != nil {
				if ast := c.check(*d.Condition, r.ID, types.BoolType, "condition"); ast != nil {
					r.cond = c.program(*d.Condition, r.ID, ast, c.limits.Cost)
					r.guard = guardOf.condition(ast.NativeRep().Expr())
					r.needs = needsOf.condition(ast.NativeRep().Expr())
					r.resources = r.needs.Resources
				}
			}
			if d.Output != nil {
				if ast := c.check(*d.Output, r.ID, types.StringType, "output"); ast != nil {
					r.output = c.program(*d.Output, r.ID, ast, c.limits.Cost)
				}
			}
			for _, x := range d.By {
				if ast := c.check(x, r.ID, nil, "threshold by"); ast != nil {
					r.by = append(r.by, c.program(x, r.ID, ast, c.limits.Cost))
					needsOf.bodies(&r.needs, ast.NativeRep().Expr())
				}
			}
			if d.Distinct != nil {
				if ast := c.check(*d.Distinct, r.ID, nil, "threshold distinct"); ast != nil {
					r.distinct = c.program(*d.Distinct, r.ID, ast, c.limits.Cost)
					needsOf.bodies(&r.needs, ast.NativeRep().Expr())
				}
			}
			set.rules = append(set.rules, r)
		}
	}
	set.index = buildIndex(set.rules)
	set.probes = guardOf.probes
	for _, f := range files {
		for _, t := range f.Tests {
			if t.Case.Rule != "" {
				if _, ok := ids[t.Case.Rule]; !ok {
					msg := fmt.Sprintf("test %q names unknown rule %q", t.Case.Name, t.Case.Rule)
					if s := parse.Suggest(t.Case.Rule, mapsKeys(ids)); s != "" {
						msg += fmt.Sprintf(", did you mean %q?", s)
					}
					c.problemNode(f, t.Node, "", "%s", msg)
				}
			}
			set.tests = append(set.tests, t.Case)
		}
	}
	return set
}

func mapsKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// check parses and type-checks one expression, reporting problems at their
// place in the file. want nil accepts any type.
func (c *compiler) check(e parse.Expr, ruleID string, want *types.Type, what string) *cel.Ast {
	line, col := e.Pos()
	if strings.TrimSpace(e.Text) == "" {
		c.problemAt(e, ruleID, line, col, "%s is empty", what)
		return nil
	}
	if len(e.Text) > MaxExpressionLength {
		c.problemAt(e, ruleID, line, col, "%s is longer than %d bytes", what, MaxExpressionLength)
		return nil
	}
	ast, iss := c.env.Compile(e.Text)
	if iss.Err() != nil {
		for _, ce := range iss.Errors() {
			loc := ce.Location
			// CEL places a bad selection at its dot; the name after it is
			// what the author has to fix.
			if loc != nil && loc.Line() > 0 && strings.HasPrefix(ce.Message, "undefined field") {
				if off := e.Offset(loc.Line(), loc.Column()); off < len(e.Text) && e.Text[off] == '.' {
					loc = common.NewLocation(loc.Line(), loc.Column()+1)
				}
			}
			l, c2 := 0, 0
			if loc != nil {
				l, c2 = loc.Line(), loc.Column()
			}
			l, c2 = e.At(l, c2)
			c.problemAt(e, ruleID, l, c2, "%s: %s", what, c.explain(e, ce))
		}
		return nil
	}
	if want != nil && !ast.OutputType().IsExactType(want) && !ast.OutputType().IsExactType(types.DynType) {
		c.problemAt(e, ruleID, line, col, "%s must be a %s expression, but this one gives %s",
			what, typeWord(want), typeWord(ast.OutputType()))
		return nil
	}
	return ast
}

func typeWord(t *types.Type) string {
	switch {
	case t.IsExactType(types.BoolType):
		return "boolean"
	case t.IsExactType(types.StringType):
		return "string"
	}
	return t.String()
}

// explain rewrites CEL's messages about vigil's own types into the words of
// the rule language.
func (c *compiler) explain(e parse.Expr, ce *common.Error) string {
	msg := ce.Message
	f, ok := strings.CutPrefix(msg, "undefined field '")
	if !ok {
		return msg
	}
	name, _, _ := strings.Cut(f, "'")
	before := ""
	if off := e.Offset(ce.Location.Line(), ce.Location.Column()); off <= len(e.Text) {
		before = strings.TrimRight(e.Text[:off], " \t\n")
	}
	kind, known := "field", c.fieldNames
	switch {
	case strings.HasSuffix(before, "macros"):
		kind, known = "macro", c.macroNames
	case strings.HasSuffix(before, "lists"):
		kind, known = "list", c.listNames
	}
	out := fmt.Sprintf("unknown %s %q", kind, name)
	if s := parse.Suggest(name, known); s != "" {
		out += fmt.Sprintf(", did you mean %q?", s)
	}
	return out
}

func objFieldNames(objs map[string]*objType) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.names...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// program plans an expression. Tracking cost at run time is skipped when
// the checker proves the worst case is within the limit, as it is for most
// conditions: tracking costs more than many of the expressions it guards.
func (c *compiler) program(e parse.Expr, ruleID string, ast *cel.Ast, limit uint64) cel.Program {
	opts := optimizeOptions()
	if est, err := c.env.EstimateCost(ast, c.costs); err != nil || est.Max > limit {
		opts = append(opts, programOptions(limit)...)
	}
	prg, err := c.env.Program(ast, opts...)
	if err != nil {
		line, col := e.Pos()
		c.problemAt(e, ruleID, line, col, "cannot compile: %v", err)
		return nil
	}
	return prg
}

// macroRefs lists the macros an expression refers to.
func macroRefs(ast *cel.Ast) []string {
	var out []string
	celast.PreOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.SelectKind {
			return
		}
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "macros" {
			out = append(out, sel.FieldName())
		}
	}))
	return out
}

// checkCycles rejects macros that refer to themselves, directly or not:
// evaluating one would never end.
func (c *compiler) checkCycles(defs []parse.Macro, refs [][]string) {
	index := map[string]int{}
	for i, d := range defs {
		index[d.Name] = i
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(defs))
	var visit func(i int, path []string) bool
	visit = func(i int, path []string) bool {
		switch state[i] {
		case visiting:
			d := defs[i]
			line, col := d.Expr.Pos()
			c.problemAt(d.Expr, "", line, col, "macro %q refers to itself: %s",
				d.Name, strings.Join(append(path, d.Name), " -> "))
			return false
		case done:
			return true
		}
		state[i] = visiting
		ok := true
		for _, r := range refs[i] {
			if j, found := index[r]; found && !visit(j, append(path, defs[i].Name)) {
				ok = false
				break
			}
		}
		state[i] = done
		return ok
	}
	for i := range defs {
		if state[i] == unvisited {
			visit(i, nil)
		}
	}
}
