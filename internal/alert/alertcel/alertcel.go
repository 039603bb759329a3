// Package alertcel is the one CEL environment over an alert: what a
// silence's condition and a route's `when` see. The alert is typed from
// alert.Alert itself, with its JSON names, so a field added to the alert
// is there for conditions without a change here.
package alertcel

import (
	"fmt"
	"path"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// Limits on a condition over an alert, named like the rule language's.
const (
	// MaxLength bounds the source of a condition.
	MaxLength = 4 << 10
	// CostLimit bounds one evaluation of a condition on an alert: an alert
	// is small, and a condition is tried on every alert every notifier
	// delivers, so it is kept well under a rule's.
	CostLimit uint64 = 100_000
)

// Variable is the name a condition gives the alert.
const Variable = "alert"

// Program is a compiled condition.
type Program struct {
	prg cel.Program
}

// Eval reports whether the condition holds for a. An error (an index out
// of range, the cost limit) says why it could not be decided; callers
// treat that as "does not hold".
func (p *Program) Eval(a *alert.Alert) (bool, error) {
	out, _, err := p.prg.Eval(map[string]any{Variable: a})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

// Issue is one problem of a condition. Line and Col are where it is in
// the source, as CEL counts them (line from 1, column from 0), already
// moved to the name to fix for an unknown field; Line is 0 for problems
// of the whole condition (too long, not a boolean).
type Issue struct {
	Line, Col int
	Message   string
}

// Error is every problem of a condition that does not compile. Callers
// place the issues in their own terms (a flag, a file position).
type Error struct {
	Issues []Issue
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		msgs[i] = is.Message
		if is.Line > 0 {
			msgs[i] = fmt.Sprintf("%d:%d: %s", is.Line, is.Col+1, is.Message)
		}
	}
	return strings.Join(msgs, "\n")
}

// Compile parses and type-checks a boolean condition over `alert`. Its
// problems are an *Error; any other error means the environment itself
// could not be built.
func Compile(src string) (*Program, error) {
	return compile(reflect.TypeFor[alert.Alert](), src)
}

// Fields are the names a condition may select on `alert`.
func Fields() []string { return fields(reflect.TypeFor[alert.Alert]()) }

// compile is Compile over any struct type standing for the alert, so
// tests can show that fields added to it are seen.
func compile(t reflect.Type, src string) (*Program, error) {
	if len(src) > MaxLength {
		return nil, &Error{Issues: []Issue{{Message: fmt.Sprintf("is longer than %d bytes", MaxLength)}}}
	}
	env, err := newEnv(t)
	if err != nil {
		return nil, fmt.Errorf("cannot build the CEL environment over alerts: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		e := &Error{}
		for _, ce := range iss.Errors() {
			e.Issues = append(e.Issues, issue(t, src, ce.Message, ce.Location.Line(), ce.Location.Column()))
		}
		return nil, e
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, &Error{Issues: []Issue{{Message: fmt.Sprintf("must be a boolean expression, but this one gives %s", ast.OutputType())}}}
	}
	prg, err := env.Program(ast, cel.CostLimit(CostLimit))
	if err != nil {
		return nil, &Error{Issues: []Issue{{Message: fmt.Sprintf("cannot compile: %v", err)}}}
	}
	return &Program{prg: prg}, nil
}

// issue turns one CEL problem into an Issue, naming an unknown field with
// a suggestion.
func issue(t reflect.Type, src, msg string, line, col int) Issue {
	unknown := false
	if f, ok := strings.CutPrefix(msg, "undefined field '"); ok {
		unknown = true
		name, _, _ := strings.Cut(f, "'")
		msg = fmt.Sprintf("unknown field %q of alert", name)
		if s := parse.Suggest(name, fields(t)); s != "" {
			msg += fmt.Sprintf(", did you mean %q?", s)
		}
	}
	if line < 1 {
		return Issue{Message: msg}
	}
	// CEL places a bad selection at its dot; the name after it is what
	// has to be fixed.
	if unknown {
		if off := offset(src, line, col); off < len(src) && src[off] == '.' {
			col++
		}
	}
	return Issue{Line: line, Col: col, Message: msg}
}

// offset is the byte offset in src of a CEL position (line from 1,
// column from 0).
func offset(src string, line, col int) int {
	off := 0
	for i := 1; i < line; i++ {
		nl := strings.IndexByte(src[off:], '\n')
		if nl < 0 {
			break
		}
		off += nl + 1
	}
	return off + col
}

// newEnv is the environment over t: `alert`, typed from t with its JSON
// names (alert.user, alert.namespace, …) and the struct types it holds,
// and cel-go's string extensions.
func newEnv(t reflect.Type) (*cel.Env, error) {
	return cel.NewEnv(
		ext.Strings(),
		ext.NativeTypes(t, ext.ParseStructTag("json")),
		cel.Variable(Variable, cel.ObjectType(typeName(t))),
	)
}

// typeName is t's CEL name under ext.NativeTypes: the last element of its
// package path and the type's name (alert.Alert).
func typeName(t reflect.Type) string { return path.Base(t.PkgPath()) + "." + t.Name() }

// fields are t's JSON names, for suggestions.
func fields(t reflect.Type) []string {
	out := make([]string, 0, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}
