package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/rules"
)

// SourceResult is what one rule loses on one managed source.
type SourceResult struct {
	Source string `json:"source"`
	Rule   string `json:"rule"`
	// Status is ok (it loses nothing), partial (it decides on less, or
	// misses some of the requests it matches) or blind (it can never fire
	// there).
	Status Status `json:"status"`
	// Losses say what it loses, one sentence each.
	Losses []string `json:"losses,omitempty"`
}

// CheckSource reports, for every rule of the set in file order, what it
// loses on src: from the values the rule decides on (rules.Needs.Fields)
// and the requests it can match, against what src leaves out. The rule's
// own tests are then run on their events as src delivers them: a rule none
// of whose tests expecting a match still match is blind; a value src gives
// in part is no loss when every test decides on it as before.
func CheckSource(src provider.Source, set *rules.Set) []SourceResult {
	tests := map[string][]*rules.TestCase{}
	for _, tc := range set.Tests() {
		tests[tc.Rule] = append(tests[tc.Rule], tc)
	}
	out := make([]SourceResult, 0, len(set.Rules()))
	for _, r := range set.Rules() {
		out = append(out, checkOnSource(src, set, r, tests[r.ID]))
	}
	return out
}

// seen is how a source delivers a rule's inputs: the values it changes or
// leaves out, and the losses that follow.
type seen struct {
	src     provider.Source
	strip   []string             // values never delivered
	as      []func(*audit.Event) // values delivered in part
	lossAbs []string             // losses that stand whatever the tests say
	lossAs  []string             // losses the tests may clear
}

func checkOnSource(src provider.Source, set *rules.Set, r *rules.Rule, tests []*rules.TestCase) SourceResult {
	res := SourceResult{Source: src.Name, Rule: r.ID, Status: OK}
	n := r.Needs()
	if src.Stages != nil && !slices.ContainsFunc(r.Stages, func(s string) bool { return slices.Contains(src.Stages, s) }) {
		res.Status = Blind
		res.Losses = []string{fmt.Sprintf("it reads stages %s, and %s delivers %s only",
			strings.Join(r.Stages, ", "), src.Name, strings.Join(src.Stages, ", "))}
		return res
	}
	v := seen{src: src}
	for _, f := range n.Fields {
		c, ok := fieldCarriage(src, f)
		switch {
		case !ok:
		case c.Carriage == provider.Absent:
			if !slices.Contains(v.strip, c.Path) {
				v.strip = append(v.strip, c.Path)
			}
			v.lossAbs = append(v.lossAbs, fmt.Sprintf("it reads %s, which %s leaves out: %s", f, src.Name, c.Why))
		case c.As == nil:
			v.lossAbs = append(v.lossAbs, fmt.Sprintf("it reads %s, which %s gives only in part: %s", f, src.Name, c.Why))
		default:
			v.as = append(v.as, c.As)
			v.lossAs = append(v.lossAs, fmt.Sprintf("it reads %s, which %s gives only in part: %s", f, src.Name, c.Why))
		}
	}
	for _, g := range src.Gaps {
		whole, some := covers(g, n)
		if !some {
			continue
		}
		if len(g.Lost) == 0 {
			text := fmt.Sprintf("%s delivers no %s requests: %s", src.Name, gapScope(g), g.Why)
			if g.Unless != "" {
				text += ", unless " + g.Unless
			}
			if whole {
				res.Status, res.Losses = Blind, []string{text}
				return res
			}
			v.lossAbs = append(v.lossAbs, text)
			continue
		}
		for _, body := range g.Lost {
			if (body == "requestObject" && n.RequestObject) || (body == "responseObject" && n.ResponseObject) {
				v.lossAbs = append(v.lossAbs, fmt.Sprintf("it reads %s, which %s does not log for %s: %s", body, src.Name, gapScope(g), g.Why))
				if whole {
					v.strip = append(v.strip, body)
				}
			}
		}
	}
	res.Losses = v.lossAbs
	// The values given in part are a loss when they alone change what the
	// tests decide, or when there are no tests to tell.
	asOnly := v
	asOnly.strip = nil
	if kept, total, gained := asOnly.tryTests(set, r, tests); total == 0 || kept < total || len(gained) > 0 {
		res.Losses = append(res.Losses, v.lossAs...)
	}
	kept, total, gained := v.tryTests(set, r, tests)
	if kept < total || len(gained) > 0 {
		res.Losses = append(res.Losses, fmt.Sprintf("%d of its %d tests that expect a match still match as %s delivers their events", kept, total, src.Name))
		for _, name := range gained {
			res.Losses = append(res.Losses, fmt.Sprintf("its test %q, which expects no match, matches as %s delivers its events", name, src.Name))
		}
	}
	switch {
	case total > 0 && kept == 0:
		res.Status = Blind
	case len(res.Losses) > 0:
		res.Status = Partial
	}
	return res
}

// tryTests runs the rule's tests on their events as the source delivers
// them: how many of those expecting a match still do, of how many, and
// the names of those expecting none that now match.
func (v seen) tryTests(set *rules.Set, r *rules.Rule, tests []*rules.TestCase) (kept, total int, gained []string) {
	for _, tc := range tests {
		fired := set.Try(r, v.events(tc.Events)).Fired
		switch {
		case tc.Match:
			total++
			if fired {
				kept++
			}
		case fired:
			gained = append(gained, tc.Name)
		}
	}
	return kept, total, gained
}

// events are copies of evs as the source delivers them.
func (v seen) events(evs []*audit.Event) []*audit.Event {
	out := make([]*audit.Event, 0, len(evs))
	for _, ev := range evs {
		if v.src.Stages != nil && !slices.Contains(v.src.Stages, ev.Stage) && ev.Stage == audit.StageRequestReceived {
			// A source of one event per request has none for its start.
			continue
		}
		cp := *ev
		for _, path := range v.strip {
			zeroPath(reflect.ValueOf(&cp).Elem(), strings.Split(path, "."))
		}
		for _, as := range v.as {
			as(&cp)
		}
		if v.src.Stages != nil && !slices.Contains(v.src.Stages, cp.Stage) {
			cp.Stage = v.src.Stages[0]
		}
		out = append(out, &cp)
	}
	return out
}

func fieldCarriage(src provider.Source, path string) (provider.Field, bool) {
	for _, f := range src.Fields {
		if f.Path == path || strings.HasPrefix(path, f.Path+".") {
			return f, true
		}
	}
	return provider.Field{}, false
}

// covers tells whether the gap takes all of the requests a rule can match
// (whole), or some of them. A rule that names no resources is not taken to
// miss the requests on a few resources a source drops whole: it is about
// what is common to all of them.
func covers(g provider.Gap, n rules.Needs) (whole, some bool) {
	dims := []struct{ gap, rule []string }{{g.Resources, n.Resources}, {g.Subresources, n.Subresources}, {g.Verbs, n.Verbs}}
	whole, some = true, true
	for i, d := range dims {
		if d.gap == nil {
			continue
		}
		if d.rule == nil {
			whole = false
			some = some && (i == 2 || len(g.Lost) > 0)
			continue
		}
		in := 0
		for _, v := range d.rule {
			if slices.Contains(d.gap, v) {
				in++
			}
		}
		whole = whole && in == len(d.rule)
		some = some && in > 0
	}
	return whole && some, some
}

func gapScope(g provider.Gap) string {
	var parts []string
	if g.Verbs != nil {
		parts = append(parts, strings.Join(g.Verbs, ", "))
	}
	switch {
	case g.Resources != nil && g.Subresources != nil:
		parts = append(parts, g.Resources[0]+"/"+strings.Join(g.Subresources, ", "))
	case g.Resources != nil:
		parts = append(parts, strings.Join(g.Resources, ", "))
	}
	if len(parts) == 0 {
		return "any request"
	}
	return strings.Join(parts, " of ")
}

// zeroPath sets the value at path (JSON member names) of the struct v to
// its zero value, copying any struct it reaches through a pointer so that
// the event v was copied from is left as it was.
func zeroPath(v reflect.Value, path []string) {
	for i := 0; i < v.NumField(); i++ {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if name != path[0] {
			continue
		}
		f := v.Field(i)
		if len(path) == 1 {
			f.Set(reflect.Zero(f.Type()))
			return
		}
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				return
			}
			cp := reflect.New(f.Type().Elem())
			cp.Elem().Set(f.Elem())
			f.Set(cp)
			f = cp.Elem()
		}
		if f.Kind() == reflect.Struct {
			zeroPath(f, path[1:])
		}
		return
	}
}
