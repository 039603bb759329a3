package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// Keys each mapping of a rule file accepts. Anything else is a mistake worth
// reporting: a misspelt `enabled` silently ignored would keep a rule on.
var (
	topKeys       = []string{"lists", "macros", "rules", "tests"}
	ruleKeys      = []string{"id", "title", "description", "severity", "tags", "condition", "output", "stages", "enabled", "threshold"}
	thresholdKeys = []string{"count", "window", "by", "distinct"}
	testKeys      = []string{"name", "rule", "match", "event", "events", "events_file", "output"}
)

var (
	kebabCase = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	identName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

var validStages = []string{audit.StageRequestReceived, audit.StageResponseStarted, audit.StageResponseComplete, audit.StagePanic}

// source is one rule file's text and how to reach files it names.
type source struct {
	name     string
	data     []byte
	readFile func(rel string) ([]byte, error)
}

// expr is a CEL expression with where it sits in its file.
type expr struct {
	text string
	node *yaml.Node
	src  *parsedFile
}

type listDef struct {
	name   string
	values []string
	node   *yaml.Node
	file   *parsedFile
}

type macroDef struct {
	name string
	expr expr
}

type ruleDef struct {
	rule      *Rule
	node      *yaml.Node
	condition expr
	output    *expr
	by        []expr
	distinct  *expr
}

type testDef struct {
	tc   *TestCase
	node *yaml.Node
	file *parsedFile
}

type parsedFile struct {
	src    *source
	lines  []string
	lists  []listDef
	macros []macroDef
	rules  []ruleDef
	tests  []testDef
}

// parser collects every problem of a file instead of stopping at the first,
// so that one lint run shows them all.
type parser struct {
	f     *parsedFile
	probs *Problems
}

func (p *parser) problem(n *yaml.Node, ruleID, format string, args ...any) {
	pr := Problem{File: p.f.src.name, RuleID: ruleID, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Col = n.Line, n.Column
	}
	p.probs.add(pr)
}

func parseFile(src *source, probs *Problems) *parsedFile {
	f := &parsedFile{src: src, lines: strings.Split(string(src.data), "\n")}
	p := &parser{f: f, probs: probs}
	var doc yaml.Node
	if err := yaml.Unmarshal(src.data, &doc); err != nil {
		p.probs.add(yamlProblem(src.name, err))
		return f
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return f // an empty file defines nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.problem(root, "", "a rule file must be a mapping with keys %s", strings.Join(topKeys, ", "))
		return f
	}
	p.mapping(root, "", topKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "lists":
			p.parseLists(v)
		case "macros":
			p.parseMacros(v)
		case "rules":
			if !p.isKind(v, yaml.SequenceNode, "", "rules must be a list") {
				return
			}
			for _, rn := range v.Content {
				p.parseRule(rn)
			}
		case "tests":
			if !p.isKind(v, yaml.SequenceNode, "", "tests must be a list") {
				return
			}
			for _, tn := range v.Content {
				p.parseTest(tn)
			}
		}
	})
	return f
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlProblem(file string, err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Col: 1, Message: "invalid YAML: " + m[2]}
	}
	return Problem{File: file, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// mapping walks a YAML mapping, reporting unknown and repeated keys.
func (p *parser) mapping(n *yaml.Node, ruleID string, known []string, each func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if !slices.Contains(known, key) {
			msg := fmt.Sprintf("unknown field %q", key)
			if s := suggest(key, known); s != "" {
				msg += fmt.Sprintf(", did you mean %q?", s)
			} else {
				msg += fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
			}
			p.problem(k, ruleID, "%s", msg)
			continue
		}
		if seen[key] {
			p.problem(k, ruleID, "field %q given twice", key)
			continue
		}
		seen[key] = true
		each(key, k, v)
	}
}

func (p *parser) isKind(n *yaml.Node, kind yaml.Kind, ruleID, msg string) bool {
	if n.Kind == kind {
		return true
	}
	p.problem(n, ruleID, "%s", msg)
	return false
}

func (p *parser) str(n *yaml.Node, ruleID, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.problem(n, ruleID, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (p *parser) strList(n *yaml.Node, ruleID, what string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		p.problem(n, ruleID, "%s must be a list of strings", what)
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
			p.problem(c, ruleID, "%s must be a list of strings", what)
			ok = false
			continue
		}
		out = append(out, c.Value)
	}
	return out, ok
}

func (p *parser) parseLists(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "lists must be a mapping of name to list of strings") {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !identName.MatchString(k.Value) {
			p.problem(k, "", "list name %q must be an identifier (letters, digits, _)", k.Value)
			continue
		}
		vals, ok := p.strList(v, "", "list "+k.Value)
		if !ok {
			continue
		}
		p.f.lists = append(p.f.lists, listDef{name: k.Value, values: vals, node: k, file: p.f})
	}
}

func (p *parser) parseMacros(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "macros must be a mapping of name to CEL expression") {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !identName.MatchString(k.Value) {
			p.problem(k, "", "macro name %q must be an identifier (letters, digits, _)", k.Value)
			continue
		}
		text, ok := p.str(v, "", "macro "+k.Value)
		if !ok {
			continue
		}
		p.f.macros = append(p.f.macros, macroDef{name: k.Value, expr: expr{text: text, node: v, src: p.f}})
	}
}

func (p *parser) parseRule(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "each rule must be a mapping") {
		return
	}
	r := &Rule{File: p.f.src.name, Line: n.Line, Enabled: true}
	def := ruleDef{rule: r, node: n}
	// The id names every later problem, so find it first.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
			r.ID = n.Content[i+1].Value
		}
	}
	id := r.ID
	var haveCond, haveSev bool
	p.mapping(n, id, ruleKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			if s, ok := p.str(v, "", "id"); ok && !kebabCase.MatchString(s) {
				p.problem(v, id, "id %q must be kebab-case (lowercase letters, digits and single dashes)", s)
			}
		case "title":
			r.Title, _ = p.str(v, id, "title")
		case "description":
			r.Description, _ = p.str(v, id, "description")
		case "severity":
			s, ok := p.str(v, id, "severity")
			if !ok {
				return
			}
			haveSev = true
			if !alert.ValidSeverity(s) {
				p.problem(v, id, "severity %q is not one of info, low, medium, high, critical", s)
			}
			r.Severity = s
		case "tags":
			r.Tags, _ = p.strList(v, id, "tags")
		case "condition":
			s, ok := p.str(v, id, "condition")
			if !ok {
				return
			}
			haveCond = true
			def.condition = expr{text: s, node: v, src: p.f}
		case "output":
			s, ok := p.str(v, id, "output")
			if !ok {
				return
			}
			def.output = &expr{text: s, node: v, src: p.f}
		case "stages":
			stages, ok := p.strList(v, id, "stages")
			if !ok {
				return
			}
			for i, s := range stages {
				if !slices.Contains(validStages, s) {
					p.problem(v.Content[i], id, "stage %q is not one of %s", s, strings.Join(validStages, ", "))
				}
			}
			r.Stages = stages
		case "enabled":
			var b bool
			if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
				p.problem(v, id, "enabled must be true or false")
				return
			}
			r.Enabled = b
		case "threshold":
			p.parseThreshold(v, &def)
		}
	})
	if r.ID == "" {
		p.problem(n, "", "rule has no id")
	}
	if !haveCond {
		p.problem(n, id, "rule has no condition")
	}
	if !haveSev {
		p.problem(n, id, "rule has no severity (info, low, medium, high or critical)")
	}
	if r.Title == "" {
		r.Title = r.ID
	}
	if r.Stages == nil {
		r.Stages = []string{audit.StageResponseStarted, audit.StageResponseComplete}
	}
	if r.Tags == nil {
		r.Tags = []string{}
	}
	p.f.rules = append(p.f.rules, def)
}

func (p *parser) parseThreshold(n *yaml.Node, def *ruleDef) {
	id := def.rule.ID
	if !p.isKind(n, yaml.MappingNode, id, "threshold must be a mapping with count, window, by and distinct") {
		return
	}
	t := &Threshold{}
	ok := true
	var haveCount, haveWindow bool
	p.mapping(n, id, thresholdKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "count":
			haveCount = true
			c, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil || c < 1 || c > MaxThresholdCount {
				p.problem(v, id, "threshold count %q must be a whole number from 1 to %d", v.Value, MaxThresholdCount)
				ok = false
				return
			}
			t.Count = c
		case "window":
			haveWindow = true
			d, err := time.ParseDuration(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil || d <= 0 {
				p.problem(v, id, "threshold window %q is not a positive duration like 30s, 5m or 1h", v.Value)
				ok = false
				return
			}
			t.Window = d
		case "by":
			by, good := p.strList(v, id, "threshold by")
			if !good {
				ok = false
				return
			}
			t.By = by
			for i, s := range by {
				def.by = append(def.by, expr{text: s, node: v.Content[i], src: p.f})
			}
		case "distinct":
			s, good := p.str(v, id, "threshold distinct")
			if !good {
				ok = false
				return
			}
			t.Distinct = s
			def.distinct = &expr{text: s, node: v, src: p.f}
		}
	})
	if !haveCount {
		p.problem(n, id, "threshold has no count")
		ok = false
	}
	if !haveWindow {
		p.problem(n, id, "threshold has no window")
		ok = false
	}
	if ok {
		def.rule.Threshold = t
	}
}

func (p *parser) parseTest(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "each test must be a mapping") {
		return
	}
	tc := &TestCase{File: p.f.src.name, Line: n.Line, Col: n.Column}
	var haveMatch bool
	var events []*yaml.Node
	p.mapping(n, "", testKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			tc.Name, _ = p.str(v, "", "test name")
		case "rule":
			tc.Rule, _ = p.str(v, "", "test rule")
		case "match":
			if v.Kind != yaml.ScalarNode || v.Decode(&tc.Match) != nil {
				p.problem(v, "", "test match must be true or false")
				return
			}
			haveMatch = true
		case "event":
			events = append(events, v)
		case "events":
			if p.isKind(v, yaml.SequenceNode, "", "test events must be a list of events") {
				events = append(events, v.Content...)
			}
		case "events_file":
			path, ok := p.str(v, "", "events_file")
			if !ok {
				return
			}
			data, err := p.f.src.readFile(path)
			if err != nil {
				p.problem(v, tc.Rule, "events_file: %v", err)
				return
			}
			evs, errs := decodeEventLines(data)
			for _, e := range errs {
				p.problem(v, tc.Rule, "events_file %s: %v", path, e)
			}
			tc.Events = append(tc.Events, evs...)
		case "output":
			s, ok := p.str(v, "", "test output")
			if ok {
				tc.Output = &s
			}
		}
	})
	for i, en := range events {
		ev, err := eventFromNode(en, fmt.Sprintf("test-%d-%d-%d", n.Line, n.Column, i))
		if err != nil {
			p.problem(en, tc.Rule, "test event: %v", err)
			continue
		}
		tc.Events = append(tc.Events, ev)
	}
	if tc.Name == "" {
		p.problem(n, tc.Rule, "test has no name")
	}
	if tc.Rule == "" {
		p.problem(n, "", "test %q names no rule", tc.Name)
	}
	if !haveMatch {
		p.problem(n, tc.Rule, "test %q has no match (true or false)", tc.Name)
	}
	if len(tc.Events) == 0 {
		p.problem(n, tc.Rule, "test %q has no event, events or events_file", tc.Name)
	}
	p.f.tests = append(p.f.tests, testDef{tc: tc, node: n, file: p.f})
}

// suggest returns the known word closest to s, if it is close enough to be
// a likely typo.
func suggest(s string, known []string) string {
	best, bestD := "", len(s)/2+2
	for _, k := range known {
		if d := levenshtein(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
