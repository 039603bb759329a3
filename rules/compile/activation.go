package compile

import (
	json "github.com/goccy/go-json" // faster drop-in for encoding/json: bodies are the costly part
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// Scope is what the evaluations of one rule set share: its types, its
// macros' programs and the limit on the bodies rules decode.
type Scope struct {
	objs   map[string]*objType
	macros []cel.Program
	// objectBytes bounds the request and response objects rules decode;
	// tooLarge counts each one over it.
	objectBytes int
	tooLarge    prometheus.Counter
}

// Scope returns the scope of evaluations in e. macros are the programs of
// the macros NewEnv was given, by index, nil for one that did not compile;
// the scope reads the slice, so a program changed in it is the one used.
func (e *Env) Scope(macros []cel.Program, objectBytes int, tooLarge prometheus.Counter) *Scope {
	return &Scope{objs: e.objs, macros: macros, objectBytes: objectBytes, tooLarge: tooLarge}
}

const (
	macroUnknown uint8 = iota
	macroFalse
	macroTrue
	macroRunning
)

// Activation is what rules see of one event. It memoizes everything that
// costs more than a field read: macro results and decoded objects.
type Activation struct {
	scope  *Scope
	ev     *audit.Event
	macros []uint8
	// macroErrs keeps a failed macro's error for every rule that uses it.
	macroErrs []ref.Val
	// fields holds the values of event fields read so far, decoded bodies
	// included.
	fields           []ref.Val
	evVal, macrosVal ref.Val
	listsVal         ref.Val
}

var _ interpreter.Activation = (*Activation)(nil)

// NewActivation returns an activation showing ev.
func (s *Scope) NewActivation(ev *audit.Event) *Activation {
	a := &Activation{scope: s, ev: ev, fields: make([]ref.Val, s.objs[typeEvent].cached)}
	if n := len(s.macros); n > 0 {
		a.macros = make([]uint8, n)
	}
	return a
}

// Bind makes a released activation show ev. Values rules return never
// refer to the activation, so it can be reused once an evaluation is over:
// at hundreds of thousands of events a second, one allocation per event
// adds up.
func (a *Activation) Bind(ev *audit.Event) { a.ev = ev }

// Release forgets the event and everything read of it.
func (a *Activation) Release() {
	clear(a.macros)
	clear(a.fields)
	a.macroErrs = nil
	a.ev = nil
}

func (a *Activation) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		if a.evVal == nil {
			a.evVal = object{t: a.scope.objs[typeEvent], val: a}
		}
		return a.evVal, true
	case "macros":
		if a.macrosVal == nil {
			a.macrosVal = object{t: a.scope.objs[typeMacros], val: a}
		}
		return a.macrosVal, true
	case "lists":
		if a.listsVal == nil {
			a.listsVal = object{t: a.scope.objs[typeLists], val: a}
		}
		return a.listsVal, true
	}
	return nil, false
}

func (a *Activation) Parent() interpreter.Activation { return nil }

func (a *Activation) macro(i int) ref.Val {
	switch a.macros[i] {
	case macroTrue:
		return types.True
	case macroFalse:
		return types.False
	case macroRunning:
		return types.NewErr("macro refers to itself")
	}
	if a.macroErrs != nil && a.macroErrs[i] != nil {
		return a.macroErrs[i]
	}
	p := a.scope.macros[i]
	if p == nil {
		return types.NewErr("macro was not compiled")
	}
	a.macros[i] = macroRunning
	v, _, err := p.Eval(a)
	if err != nil {
		a.macros[i] = macroUnknown
		if a.macroErrs == nil {
			a.macroErrs = make([]ref.Val, len(a.macros))
		}
		a.macroErrs[i] = types.WrapErr(err)
		return a.macroErrs[i]
	}
	if v == types.True {
		a.macros[i] = macroTrue
	} else {
		a.macros[i] = macroFalse
	}
	return v
}

// decodeObject turns a request or response body of at most the scope's
// object limit into a CEL value; a larger one reads as absent. Secret
// material is redacted here, before any rule or output can see it, so an
// alert can never carry it.
func (s *Scope) decodeObject(ev *audit.Event, raw []byte) ref.Val {
	empty := types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{})
	if len(raw) > s.objectBytes {
		s.tooLarge.Inc()
		return empty
	}
	if len(raw) == 0 {
		return empty
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return empty
	}
	resource := ""
	if ev.ObjectRef != nil {
		resource = ev.ObjectRef.Resource
	}
	v = alert.RedactObject(resource, v)
	return types.DefaultTypeAdapter.NativeToValue(v)
}
