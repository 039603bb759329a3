package silence

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// Limits on a silence's condition, named like the rule language's.
const (
	// MaxWhenLength bounds the source of a condition.
	MaxWhenLength = 4 << 10
	// WhenCostLimit bounds one evaluation of a condition on an alert: an
	// alert is small, and a condition is tried on every alert every
	// notifier delivers, so it is kept well under a rule's.
	WhenCostLimit uint64 = 100_000
)

// alertType is the CEL name of alert.Alert under ext.NativeTypes: the
// package's last element and the type's name.
const alertType = "alert.Alert"

// whenEnv is the environment of silence conditions: `alert`, typed from
// alert.Alert with its JSON names (alert.user, alert.namespace, …), and
// cel-go's string extensions.
func whenEnv() (*cel.Env, error) {
	return cel.NewEnv(
		ext.Strings(),
		ext.NativeTypes(reflect.TypeFor[alert.Alert](), ext.ParseStructTag("json")),
		cel.Variable("alert", cel.ObjectType(alertType)),
	)
}

// alertFields are the names a condition may select on `alert`, for
// suggestions.
func alertFields() []string {
	t := reflect.TypeFor[alert.Alert]()
	out := make([]string, 0, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// Matcher is a compiled silence.
type Matcher struct {
	*Silence
	prg cel.Program // nil without a condition
}

// Compile parses and type-checks a condition; errors are the flag's,
// "--when: 1:7: unknown field "usr", did you mean "user"?".
func Compile(when string) (cel.Program, error) {
	if len(when) > MaxWhenLength {
		return nil, fmt.Errorf("--when is longer than %d bytes", MaxWhenLength)
	}
	env, err := whenEnv()
	if err != nil {
		return nil, fmt.Errorf("cannot build the CEL environment of silences: %w", err)
	}
	ast, iss := env.Compile(when)
	if iss.Err() != nil {
		var errs []error
		for _, ce := range iss.Errors() {
			msg := ce.Message
			if f, ok := strings.CutPrefix(msg, "undefined field '"); ok {
				name, _, _ := strings.Cut(f, "'")
				msg = fmt.Sprintf("unknown field %q of alert", name)
				if s := parse.Suggest(name, alertFields()); s != "" {
					msg += fmt.Sprintf(", did you mean %q?", s)
				}
			}
			loc := ""
			if l := ce.Location; l != nil && l.Line() > 0 {
				col := l.Column() + 1
				// CEL places a bad selection at its dot; the name after
				// it is what has to be fixed.
				if strings.HasPrefix(ce.Message, "undefined field") && l.Line() == 1 && l.Column() < len(when) && when[l.Column()] == '.' {
					col++
				}
				loc = fmt.Sprintf("%d:%d: ", l.Line(), col)
			}
			errs = append(errs, fmt.Errorf("--when: %s%s", loc, msg))
		}
		return nil, errors.Join(errs...)
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("--when must be a boolean expression, but this one gives %s", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(WhenCostLimit))
	if err != nil {
		return nil, fmt.Errorf("--when: cannot compile: %w", err)
	}
	return prg, nil
}

// NewMatcher compiles s.
func NewMatcher(s *Silence) (*Matcher, error) {
	m := &Matcher{Silence: s}
	if s.When != "" {
		prg, err := Compile(s.When)
		if err != nil {
			return nil, err
		}
		m.prg = prg
	}
	return m, nil
}

// Matches reports whether the silence holds for a at now: it is active,
// names a's rule (if it names one) and its condition holds. A condition
// that cannot be evaluated does not hold, and the error says why: an alert
// is silenced only when the silence clearly says so.
func (m *Matcher) Matches(a *alert.Alert, now time.Time) (bool, error) {
	if !m.Active(now) || m.Rule != "" && m.Rule != a.Rule {
		return false, nil
	}
	if m.prg == nil {
		return true, nil
	}
	out, _, err := m.prg.Eval(map[string]any{"alert": a})
	if err != nil {
		return false, fmt.Errorf("silence %s: --when: %w", m.ID, err)
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}
