package silence

import (
	"errors"
	"fmt"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/alert/alertcel"
)

// Limits on a silence's condition: those of every condition over an
// alert.
const (
	// MaxWhenLength bounds the source of a condition.
	MaxWhenLength = alertcel.MaxLength
	// WhenCostLimit bounds one evaluation of a condition on an alert.
	WhenCostLimit = alertcel.CostLimit
)

// Matcher is a compiled silence.
type Matcher struct {
	*Silence
	prg *alertcel.Program // nil without a condition
}

// Compile parses and type-checks a condition; errors are the flag's,
// "--when: 1:7: unknown field "usr", did you mean "user"?".
func Compile(when string) (*alertcel.Program, error) {
	prg, err := alertcel.Compile(when)
	var ce *alertcel.Error
	if !errors.As(err, &ce) {
		return prg, err
	}
	errs := make([]error, len(ce.Issues))
	for i, is := range ce.Issues {
		if is.Line > 0 {
			errs[i] = fmt.Errorf("--when: %d:%d: %s", is.Line, is.Col+1, is.Message)
		} else {
			errs[i] = fmt.Errorf("--when %s", is.Message)
		}
	}
	return nil, errors.Join(errs...)
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
	ok, err := m.prg.Eval(a)
	if err != nil {
		return false, fmt.Errorf("silence %s: --when: %w", m.ID, err)
	}
	return ok, nil
}
