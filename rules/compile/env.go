// Package compile is the compilation of rule expressions: the one CEL
// environment a rule set is checked and planned in (the typed audit event,
// the set's lists and macros, Kubernetes' CEL libraries), the named limits
// on what an expression may cost, and the activation that shows rules one
// event.
package compile

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"k8s.io/apiserver/pkg/cel/library"
)

// Env is the one CEL environment a rule set is compiled in: the typed
// event, the set's lists and macros, Kubernetes' CEL libraries and cel-go's
// string extensions.
type Env struct {
	env   *cel.Env
	costs checker.CostEstimator
	objs  map[string]*objType
	// Names the rules may use, for suggestions.
	fieldNames, macroNames, listNames []string
}

// NewEnv builds the environment of a rule set with these lists and macros.
// It depends on rule text only through those names, so an error is a
// defect rather than a problem of the rules.
func NewEnv(lists map[string][]string, macros []string) (*Env, error) {
	objs, err := eventTypes()
	if err != nil {
		return nil, fmt.Errorf("cannot build the CEL environment: %w", err)
	}
	e := &Env{objs: objs, fieldNames: objFieldNames(objs), macroNames: macros, listNames: slices.Sorted(maps.Keys(lists))}
	objs[typeLists] = listsType(lists)
	objs[typeMacros] = macrosType(macros)
	if e.env, err = newEnv(objs); err != nil {
		return nil, fmt.Errorf("cannot build the CEL environment: %w", err)
	}
	e.costs = &library.CostEstimator{SizeEstimator: listSizes(lists)}
	return e, nil
}

func objFieldNames(objs map[string]*objType) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.names...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func newEnv(objs map[string]*objType) (*cel.Env, error) {
	return cel.NewEnv(
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Bindings(),
		library.Lists(),
		library.Regex(),
		library.URLs(),
		library.IP(),
		library.CIDR(),
		library.Quantity(),
		withObjects(objs),
		cel.Variable("event", objs[typeEvent].typ),
		cel.Variable("macros", objs[typeMacros].typ),
		cel.Variable("lists", objs[typeLists].typ),
	)
}

func withObjects(objs map[string]*objType) cel.EnvOption {
	return func(env *cel.Env) (*cel.Env, error) {
		return cel.CustomTypeProvider(&provider{Provider: env.CELTypeProvider(), objs: objs})(env)
	}
}

// optimize precomputes constant parts of expressions: regex patterns of
// matches, find and findAll, and membership in literal lists. It also swaps
// in faster implementations of string functions (see strfast.go).
func optimizeOptions() []cel.ProgramOption {
	return []cel.ProgramOption{
		cel.EvalOptions(cel.OptOptimize),
		cel.OptimizeRegex(library.FindRegexOptimization, library.FindAllRegexOptimization),
		fastStrings(),
	}
}

func programOptions(limit uint64) []cel.ProgramOption {
	return []cel.ProgramOption{
		cel.CostLimit(limit),
		cel.CostTracking(&library.CostEstimator{}),
		fastCostTrackers(),
	}
}

// listsType exposes each named list as a typed field, so that a reference
// to an undefined list fails type-checking like any misspelt field.
func listsType(lists map[string][]string) *objType {
	o := newObjType(typeLists)
	for name, vals := range lists {
		// Elements are made CEL values once, here: a list of Go strings
		// converts (and allocates) each element every time it is read, and
		// `x in lists.name` reads them all.
		elems := make([]ref.Val, len(vals))
		for i, s := range vals {
			elems[i] = types.String(s)
		}
		v := types.NewRefValList(types.DefaultTypeAdapter, elems)
		o.add(name, stringListType, func(any) ref.Val { return v }, func(any) bool { return true })
	}
	return o
}

// macrosType exposes each macro as a boolean field whose getter evaluates
// the macro at most once per event.
func macrosType(names []string) *objType {
	o := newObjType(typeMacros)
	for i, name := range names {
		o.add(name, types.BoolType,
			func(obj any) ref.Val {
				a, ok := obj.(*Activation)
				if !ok {
					return types.NewErr("macro %s evaluated outside an event", name)
				}
				return a.macro(i)
			},
			func(any) bool { return true })
	}
	return o
}

// listSizes tells the cost estimator the exact size of each named list and
// the longest of its strings, which are known at load time.
type listSizes map[string][]string

func (l listSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	p := n.Path()
	if len(p) < 2 || p[0] != "lists" {
		return nil
	}
	vals, ok := l[p[1]]
	if !ok {
		return nil
	}
	switch {
	case len(p) == 2:
		size := uint64(len(vals))
		return &checker.SizeEstimate{Min: size, Max: size}
	case len(p) == 3 && p[2] == "@items":
		var longest uint64
		for _, v := range vals {
			longest = max(longest, uint64(len([]rune(v))))
		}
		return &checker.SizeEstimate{Min: 0, Max: longest}
	}
	return nil
}

func (l listSizes) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}
