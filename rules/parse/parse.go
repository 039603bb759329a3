package parse

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// MaxThresholdCount bounds a threshold's count, and with it the state kept
// per group: a window never holds more than count-1 entries.
const MaxThresholdCount = 10_000

// Source is one rule file's name and content, and how to reach the files
// its tests name.
type Source struct {
	Name string
	Data []byte
	// ReadFile resolves a path a test names (events_file).
	ReadFile func(rel string) ([]byte, error)
}

// File is what a rule file defines, in file order.
type File struct {
	Name      string
	Lists     []List
	Macros    []Macro
	Rules     []Rule
	Overrides []Override
	Tests     []Test
	lines     []string
}

// List is a named list of strings (lists:).
type List struct {
	Name   string
	Values []string
	// Node is the list's name, where a duplicate is reported.
	Node *yaml.Node
	File *File
}

// Macro is a named boolean CEL expression (macros:).
type Macro struct {
	Name string
	Expr Expr
}

// Meta is what a rule file says of a rule besides its expressions; the
// compiled rule carries it on.
type Meta struct {
	ID          string
	Title       string
	Description string
	// RunbookURL is where a responder reads what to do about an alert:
	// an absolute http or https URL, checked at load.
	RunbookURL string
	Severity   string
	Tags       []string
	Stages     []string
	Enabled    bool
	Threshold  *Threshold
	Suppress   *Suppress
	NewTerms   *NewTerms
	Sequence   *Sequence
}

// Rule is one entry of rules:, its defaults filled in. An expression that
// is missing or is not a string is nil.
type Rule struct {
	Meta
	// Node is the rule's mapping, where problems of the whole rule are
	// reported.
	Node      *yaml.Node
	Condition *Expr
	Output    *Expr
	By        []Expr
	Distinct  *Expr
	// Exceptions are evaluated after the condition, in order.
	Exceptions []Exception
	// SuppressBy are the expressions of Suppress.By.
	SuppressBy []Expr
	// TermsEntity and TermsValue are the expressions of NewTerms: those
	// naming the entity, and those whose values must be new for it.
	TermsEntity []Expr
	TermsValue  []Expr
	// SequenceBy are the expressions of Sequence.By, Steps its steps.
	SequenceBy []Expr
	Steps      []Step
}

// Exception names a case of a rule's condition that raises no alert.
type Exception struct {
	Name string
	When *Expr // nil when missing or not a string
	// Node is the exception's mapping.
	Node *yaml.Node
}

// Suppress holds back the later matches of a group for a while after one
// alerted.
type Suppress struct {
	By  []string // CEL expressions forming the group key
	For time.Duration
}

// Threshold turns a rule into a count over a sliding window of event time.
type Threshold struct {
	Count    int
	Window   time.Duration
	By       []string // CEL expressions forming the group key
	Distinct string   // CEL expression; empty counts requests
}

// TestCase is one `tests:` entry of a rule file.
type TestCase struct {
	Name   string
	Rule   string
	Match  bool
	Output *string
	Events []*audit.Event
	File   string
	Line   int
	Col    int
}

// Test is a test case with the mapping it was read from.
type Test struct {
	Case *TestCase
	Node *yaml.Node
}

// The documents of the rule file format, as yaml.v3 decodes a mapping into
// them; their keys are the keys each mapping accepts, in the order "known:"
// lists them. Every value stays a node, for its position and so that it is
// checked here, with problems in the words of the rule file rather than
// yaml.v3's. An absent key leaves a zero node.
type (
	fileDoc struct {
		Lists     yaml.Node `yaml:"lists"`
		Macros    yaml.Node `yaml:"macros"`
		Rules     yaml.Node `yaml:"rules"`
		Overrides yaml.Node `yaml:"overrides"`
		Tests     yaml.Node `yaml:"tests"`
	}
	ruleDoc struct {
		ID          yaml.Node `yaml:"id"`
		Title       yaml.Node `yaml:"title"`
		Description yaml.Node `yaml:"description"`
		RunbookURL  yaml.Node `yaml:"runbook_url"`
		Severity    yaml.Node `yaml:"severity"`
		Tags        yaml.Node `yaml:"tags"`
		Condition   yaml.Node `yaml:"condition"`
		Output      yaml.Node `yaml:"output"`
		Stages      yaml.Node `yaml:"stages"`
		Enabled     yaml.Node `yaml:"enabled"`
		Threshold   yaml.Node `yaml:"threshold"`
		Exceptions  yaml.Node `yaml:"exceptions"`
		Suppress    yaml.Node `yaml:"suppress"`
		NewTerms    yaml.Node `yaml:"new_terms"`
		Sequence    yaml.Node `yaml:"sequence"`
	}
	exceptionDoc struct {
		Name yaml.Node `yaml:"name"`
		When yaml.Node `yaml:"when"`
	}
	suppressDoc struct {
		By  yaml.Node `yaml:"by"`
		For yaml.Node `yaml:"for"`
	}
	thresholdDoc struct {
		Count    yaml.Node `yaml:"count"`
		Window   yaml.Node `yaml:"window"`
		By       yaml.Node `yaml:"by"`
		Distinct yaml.Node `yaml:"distinct"`
	}
	testDoc struct {
		Name       yaml.Node `yaml:"name"`
		Rule       yaml.Node `yaml:"rule"`
		Match      yaml.Node `yaml:"match"`
		Event      yaml.Node `yaml:"event"`
		Events     yaml.Node `yaml:"events"`
		EventsFile yaml.Node `yaml:"events_file"`
		Output     yaml.Node `yaml:"output"`
	}
)

// given reports whether a document's key was present.
func given(n *yaml.Node) bool { return n.Kind != 0 }

// keys are the yaml keys of a document type.
func keys(doc any) []string {
	t := reflect.TypeOf(doc).Elem()
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Tag.Get("yaml")
	}
	return out
}

var (
	kebabCase = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	identName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

var validStages = []string{audit.StageRequestReceived, audit.StageResponseStarted, audit.StageResponseComplete, audit.StagePanic}

// parser collects every problem of a file instead of stopping at the first,
// so that one lint run shows them all.
type parser struct {
	src   Source
	f     *File
	probs *Problems
}

func (p *parser) problem(n *yaml.Node, ruleID, format string, args ...any) {
	pr := Problem{File: p.src.Name, RuleID: ruleID, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Col = n.Line, n.Column
	}
	p.probs.Add(pr)
}

// Parse reads one rule file, adding its problems to probs. What it could
// read is returned even when there were problems.
func Parse(src Source, probs *Problems) *File {
	f := &File{Name: src.Name, lines: strings.Split(string(src.Data), "\n")}
	p := &parser{src: src, f: f, probs: probs}
	var root yaml.Node
	if err := yaml.Unmarshal(src.Data, &root); err != nil {
		p.probs.Add(yamlProblem(src.Name, src.Data, err))
		return f
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return f // an empty file defines nothing
	}
	top := root.Content[0]
	var doc fileDoc
	if top.Kind != yaml.MappingNode {
		p.problem(top, "", "a rule file must be a mapping with keys %s", strings.Join(keys(&doc), ", "))
		return f
	}
	p.decode(top, "", &doc)
	if given(&doc.Lists) {
		p.parseLists(&doc.Lists)
	}
	if given(&doc.Macros) {
		p.parseMacros(&doc.Macros)
	}
	if given(&doc.Rules) && p.isKind(&doc.Rules, yaml.SequenceNode, "", "rules must be a list") {
		for _, rn := range doc.Rules.Content {
			p.parseRule(rn)
		}
	}
	if given(&doc.Overrides) && p.isKind(&doc.Overrides, yaml.SequenceNode, "", "overrides must be a list") {
		for _, on := range doc.Overrides.Content {
			p.parseOverride(on)
		}
	}
	if given(&doc.Tests) && p.isKind(&doc.Tests, yaml.SequenceNode, "", "tests must be a list") {
		for _, tn := range doc.Tests.Content {
			p.parseTest(tn)
		}
	}
	return f
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlProblem places a syntax error at the line it is on. The line yaml.v3
// names is that of the construct the error is inside (a mis-indented key
// deep in a rule is "line 1", where the file's mapping starts), and it
// gives no column, so the column is 1.
func yamlProblem(file string, data []byte, err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: syntaxErrorLine(data, line, msg), Col: 1, Message: "invalid YAML: " + m[2]}
	}
	return Problem{File: file, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// syntaxErrorLine is the first line, from the line yaml.v3 named on, that
// the file read up to and including it fails with the same error: the line
// where the parser met the error, since yaml.v3 stops at the first one and
// what comes after that line cannot change it. The lines are searched by
// halves; the search only runs for a file that is already rejected.
func syntaxErrorLine(data []byte, named int, msg string) int {
	ends := []int{} // ends[i] is the offset just past line i+1
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	if named < 1 || named > len(ends) {
		return named
	}
	lo := named - 1
	i := lo + sort.Search(len(ends)-lo, func(i int) bool {
		var n yaml.Node
		err := yaml.Unmarshal(data[:ends[lo+i]], &n)
		return err != nil && err.Error() == msg
	})
	if i == len(ends) {
		return named // no prefix fails alike: keep what yaml.v3 said
	}
	return i + 1
}

// decode decodes the mapping n into doc, a pointer to a document. Keys doc
// has no field for and keys given again are reported and left out, so the
// first of a repeated key is the one that counts.
func (p *parser) decode(n *yaml.Node, ruleID string, doc any) {
	known := keys(doc)
	seen := make(map[string]bool, len(known))
	var keep []*yaml.Node // the pairs to decode, when not all of n's
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		ok := true
		switch {
		case !slices.Contains(known, key):
			msg := fmt.Sprintf("unknown field %q", key)
			if s := Suggest(key, known); s != "" {
				msg += fmt.Sprintf(", did you mean %q?", s)
			} else {
				msg += fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
			}
			p.problem(k, ruleID, "%s", msg)
			ok = false
		case seen[key]:
			p.problem(k, ruleID, "field %q given twice", key)
			ok = false
		case k.Kind != yaml.ScalarNode || k.Tag != "!!str":
			// The key is matched by its text, as above, whatever its tag.
			k = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
		}
		seen[key] = true
		if keep == nil && (!ok || k != n.Content[i]) {
			keep = append(make([]*yaml.Node, 0, len(n.Content)), n.Content[:i]...)
		}
		if ok && keep != nil {
			keep = append(keep, k, v)
		}
	}
	m := n
	if keep != nil {
		m = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: keep}
	}
	if err := m.Decode(doc); err != nil {
		// Every field of a document takes any node, so this is a defect.
		p.problem(n, ruleID, "cannot read the mapping: %v", err)
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

func (p *parser) expr(n *yaml.Node, text string) *Expr {
	return &Expr{Text: text, Node: n, File: p.f}
}

// parseLists and parseMacros read mappings of names the file chooses, in
// file order and repeats included: a name defined twice is a problem of
// the whole rule set, found when the files are compiled together.
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
		p.f.Lists = append(p.f.Lists, List{Name: k.Value, Values: vals, Node: k, File: p.f})
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
		p.f.Macros = append(p.f.Macros, Macro{Name: k.Value, Expr: *p.expr(v, text)})
	}
}

// ruleID is the id a rule's problems are reported under: the last id the
// mapping gives that is a scalar, found before anything else is read.
func ruleID(n *yaml.Node) string {
	id := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
			id = n.Content[i+1].Value
		}
	}
	return id
}

func (p *parser) parseRule(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "each rule must be a mapping") {
		return
	}
	id := ruleID(n)
	r := Rule{Meta: Meta{ID: id, Enabled: true}, Node: n}
	var doc ruleDoc
	p.decode(n, id, &doc)
	if v := &doc.ID; given(v) {
		if s, ok := p.str(v, "", "id"); ok && !kebabCase.MatchString(s) {
			p.problem(v, id, "id %q must be kebab-case (lowercase letters, digits and single dashes)", s)
		}
	}
	if given(&doc.Title) {
		r.Title, _ = p.str(&doc.Title, id, "title")
	}
	if given(&doc.Description) {
		r.Description, _ = p.str(&doc.Description, id, "description")
	}
	if given(&doc.RunbookURL) {
		r.RunbookURL, _ = p.runbookURL(&doc.RunbookURL, id)
	}
	haveSev := false
	if v := &doc.Severity; given(v) {
		r.Severity, haveSev, _ = p.severity(v, id)
	}
	if given(&doc.Tags) {
		r.Tags, _ = p.strList(&doc.Tags, id, "tags")
	}
	if v := &doc.Condition; given(v) {
		if s, ok := p.str(v, id, "condition"); ok {
			r.Condition = p.expr(v, s)
		}
	}
	if v := &doc.Output; given(v) {
		if s, ok := p.str(v, id, "output"); ok {
			r.Output = p.expr(v, s)
		}
	}
	if v := &doc.Stages; given(v) {
		// A list with unknown stages is kept, its problems reported.
		if stages, _ := p.stages(v, id); stages != nil {
			r.Stages = stages
		}
	}
	if v := &doc.Enabled; given(v) {
		if b, ok := p.enabled(v, id); ok {
			r.Enabled = b
		}
	}
	if given(&doc.Threshold) {
		p.parseThreshold(&doc.Threshold, &r)
	}
	if given(&doc.Exceptions) {
		r.Exceptions = p.parseExceptions(&doc.Exceptions, id)
	}
	if v := &doc.Suppress; given(v) {
		r.Suppress, r.SuppressBy = p.parseSuppress(v, id)
		if given(&doc.Threshold) {
			p.problem(v, id, "suppress cannot be combined with threshold: a threshold already alerts once per window")
		}
	}
	if v := &doc.NewTerms; given(v) {
		p.parseNewTerms(v, &r)
		if given(&doc.Threshold) || given(&doc.Suppress) {
			p.problem(v, id, "new_terms cannot be combined with threshold or suppress: a new value alerts once until it is forgotten")
		}
	}
	if v := &doc.Sequence; given(v) {
		p.parseSequence(v, &r)
		if given(&doc.Threshold) || given(&doc.Suppress) || given(&doc.NewTerms) {
			p.problem(v, id, "sequence cannot be combined with threshold, suppress or new_terms")
		}
	}
	if r.ID == "" {
		p.problem(n, "", "rule has no id")
	}
	if r.Condition == nil && !given(&doc.Sequence) {
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
	p.f.Rules = append(p.f.Rules, r)
}

func (p *parser) parseThreshold(n *yaml.Node, r *Rule) {
	id := r.ID
	if !p.isKind(n, yaml.MappingNode, id, "threshold must be a mapping with count, window, by and distinct") {
		return
	}
	var doc thresholdDoc
	p.decode(n, id, &doc)
	t := &Threshold{}
	ok := true
	if v := &doc.Count; !given(v) {
		p.problem(n, id, "threshold has no count")
		ok = false
	} else if c, err := strconv.Atoi(v.Value); v.Kind != yaml.ScalarNode || err != nil || c < 1 || c > MaxThresholdCount {
		p.problem(v, id, "threshold count %q must be a whole number from 1 to %d", v.Value, MaxThresholdCount)
		ok = false
	} else {
		t.Count = c
	}
	if v := &doc.Window; !given(v) {
		p.problem(n, id, "threshold has no window")
		ok = false
	} else if d, err := time.ParseDuration(v.Value); v.Kind != yaml.ScalarNode || err != nil || d <= 0 {
		p.problem(v, id, "threshold window %q is not a positive duration like 30s, 5m or 1h", v.Value)
		ok = false
	} else {
		t.Window = d
	}
	if v := &doc.By; given(v) {
		if by, good := p.strList(v, id, "threshold by"); !good {
			ok = false
		} else {
			t.By = by
			for i, s := range by {
				r.By = append(r.By, *p.expr(v.Content[i], s))
			}
		}
	}
	if v := &doc.Distinct; given(v) {
		if s, good := p.str(v, id, "threshold distinct"); !good {
			ok = false
		} else {
			t.Distinct = s
			r.Distinct = p.expr(v, s)
		}
	}
	if ok {
		r.Threshold = t
	}
}

func (p *parser) parseTest(n *yaml.Node) {
	if !p.isKind(n, yaml.MappingNode, "", "each test must be a mapping") {
		return
	}
	tc := &TestCase{File: p.src.Name, Line: n.Line, Col: n.Column}
	var doc testDoc
	p.decode(n, "", &doc)
	if given(&doc.Name) {
		tc.Name, _ = p.str(&doc.Name, "", "test name")
	}
	if given(&doc.Rule) {
		tc.Rule, _ = p.str(&doc.Rule, "", "test rule")
	}
	haveMatch := false
	if v := &doc.Match; given(v) {
		if v.Kind != yaml.ScalarNode || v.Decode(&tc.Match) != nil {
			p.problem(v, "", "test match must be true or false")
		} else {
			haveMatch = true
		}
	}
	if v := &doc.EventsFile; given(v) {
		// Its problems name the test's rule if the rule was given first,
		// as when the keys were read in order.
		rule := ""
		if given(&doc.Rule) && before(&doc.Rule, v) {
			rule = tc.Rule
		}
		p.eventsFile(v, rule, tc)
	}
	if v := &doc.Output; given(v) {
		if s, ok := p.str(v, "", "test output"); ok {
			tc.Output = &s
		}
	}
	// Inline events follow those of events_file, in the order their keys
	// were written.
	var events []*yaml.Node
	if given(&doc.Event) {
		events = append(events, &doc.Event)
	}
	if v := &doc.Events; given(v) && p.isKind(v, yaml.SequenceNode, "", "test events must be a list of events") {
		if given(&doc.Event) && before(v, &doc.Event) {
			events = append(slices.Clone(v.Content), events...)
		} else {
			events = append(events, v.Content...)
		}
	}
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
	p.f.Tests = append(p.f.Tests, Test{Case: tc, Node: n})
}

func (p *parser) eventsFile(v *yaml.Node, rule string, tc *TestCase) {
	path, ok := p.str(v, "", "events_file")
	if !ok {
		return
	}
	data, err := p.src.ReadFile(path)
	if err != nil {
		p.problem(v, rule, "events_file: %v", err)
		return
	}
	evs, errs := EventLines(data)
	for _, e := range errs {
		p.problem(v, rule, "events_file %s: %v", path, e)
	}
	tc.Events = append(tc.Events, evs...)
}

// before reports whether node a was written before node b.
func before(a, b *yaml.Node) bool {
	return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
}

// Suggest returns the known word closest to s, if it is close enough to be
// a likely typo.
func Suggest(s string, known []string) string {
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
