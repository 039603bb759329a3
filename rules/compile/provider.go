package compile

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// CEL type names of the values rules see. They show up in type-check errors.
// The audit schema's structs are vigil.<name> (see celName).
const (
	typeEvent          = "vigil.Event"
	typeResponseStatus = "vigil.ResponseStatus"
	typeMacros         = "vigil.Macros"
	typeLists          = "vigil.Lists"
)

// field is one typed field of an object rules can select from. Getters read
// the Go value directly: converting every event to a CEL map would cost an
// allocation per field per event, and most rules read only a few fields.
type field struct {
	typ *types.Type
	get func(obj any) ref.Val
	set func(obj any) bool
}

// objType is a struct type known to the checker and the interpreter.
type objType struct {
	typ    *types.Type
	fields map[string]*field
	names  []string
	// cached counts the fields whose values an activation keeps.
	cached int
}

func newObjType(name string) *objType {
	return &objType{
		typ:    types.NewObjectType(name, traits.FieldTesterType|traits.IndexerType),
		fields: map[string]*field{},
	}
}

func (o *objType) add(name string, typ *types.Type, get func(any) ref.Val, set func(any) bool) {
	o.fields[name] = &field{typ: typ, get: get, set: set}
	o.names = append(o.names, name)
}

// object is the runtime value of an objType: the Go value plus its type.
type object struct {
	t   *objType
	val any
}

var (
	_ ref.Val            = object{}
	_ traits.Indexer     = object{}
	_ traits.FieldTester = object{}
)

func (o object) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to %v", o.t.typ.TypeName(), typeDesc)
}

func (o object) ConvertToType(typeVal ref.Type) ref.Val {
	if typeVal == types.TypeType {
		return o.t.typ
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.t.typ.TypeName(), typeVal.TypeName())
}

func (o object) Equal(other ref.Val) ref.Val {
	oo, ok := other.(object)
	return types.Bool(ok && oo.t == o.t && oo.val == o.val)
}

func (o object) Type() ref.Type { return o.t.typ }
func (o object) Value() any     { return o.val }

// Get serves selections the checker could not resolve statically (for
// instance inside comprehensions over dyn values).
func (o object) Get(index ref.Val) ref.Val {
	name, ok := index.(types.String)
	if !ok {
		return types.ValOrErr(index, "no such overload")
	}
	f, ok := o.t.fields[string(name)]
	if !ok {
		return types.NewErr("no such field '%s' on %s", name, o.t.typ.TypeName())
	}
	return f.get(o.val)
}

func (o object) IsSet(fieldName ref.Val) ref.Val {
	name, ok := fieldName.(types.String)
	if !ok {
		return types.ValOrErr(fieldName, "no such overload")
	}
	f, ok := o.t.fields[string(name)]
	if !ok {
		return types.NewErr("no such field '%s' on %s", name, o.t.typ.TypeName())
	}
	return types.Bool(f.set(o.val))
}

// provider resolves vigil's object types and defers everything else to the
// environment's own provider.
type provider struct {
	types.Provider
	objs map[string]*objType
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if o, ok := p.objs[name]; ok {
		return types.NewTypeTypeWithParam(o.typ), true
	}
	return p.Provider.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if o, ok := p.objs[name]; ok {
		return append([]string(nil), o.names...), true
	}
	return p.Provider.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	o, ok := p.objs[name]
	if !ok {
		return p.Provider.FindStructFieldType(name, fieldName)
	}
	f, ok := o.fields[fieldName]
	if !ok {
		return nil, false
	}
	return &types.FieldType{
		Type:    f.typ,
		IsSet:   func(obj any) bool { return f.set(obj) },
		GetFrom: func(obj any) (any, error) { return f.get(obj), nil },
	}, true
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.objs[name]; ok {
		return types.NewErr("%s values cannot be constructed in rules", name)
	}
	return p.Provider.NewValue(name, fields)
}

var (
	stringListType = types.NewListType(types.StringType)
	stringMapType  = types.NewMapType(types.StringType, types.StringType)
	extraType      = types.NewMapType(types.StringType, stringListType)
)

// celName is the CEL name of a struct of the audit schema. Status has
// always been vigil.ResponseStatus to rules, after the member holding it.
func celName(t *audit.Type) string {
	if t.Name == "Status" {
		return typeResponseStatus
	}
	return "vigil." + t.Name
}

// eventTypes builds the typed schema of `event` from the audit event's
// field table, under its JSON field names. Absent values read as zero
// values so that conditions need no has() guards.
func eventTypes() (map[string]*objType, error) {
	objs := map[string]*objType{}
	built := map[*audit.Type]*objType{}
	var build func(t *audit.Type) (*objType, error)
	build = func(t *audit.Type) (*objType, error) {
		if o, ok := built[t]; ok {
			return o, nil
		}
		o := newObjType(celName(t))
		built[t] = o
		objs[o.typ.TypeName()] = o
		top := t.Name == "Event"
		for _, f := range t.Fields {
			if f.Hidden {
				continue
			}
			var sub *objType
			if f.Type != nil {
				var err error
				if sub, err = build(f.Type); err != nil {
					return nil, err
				}
			}
			typ, val, err := fieldValue(f, sub)
			if err == nil && f.Kind == audit.KindRaw && !top {
				err = errors.New("bodies are only read as members of the event")
			}
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t.Name, f.Name, err)
			}
			if top {
				addEventField(o, f, typ, val)
				continue
			}
			o.add(f.Name, typ, val, f.IsSet)
		}
		return o, nil
	}
	if _, err := build(audit.Schema()); err != nil {
		return nil, err
	}
	return objs, nil
}

// fieldValue returns the CEL type of a field and how to make its CEL value
// from the struct holding it. Bodies are made by the activation.
func fieldValue(f audit.Field, sub *objType) (*types.Type, func(any) ref.Val, error) {
	switch f.Kind {
	case audit.KindString:
		get := audit.FieldGetter[string](f)
		return types.StringType, func(o any) ref.Val { return types.String(get(o)) }, nil
	case audit.KindInt:
		get := audit.FieldGetter[int64](f)
		return types.IntType, func(o any) ref.Val { return types.Int(get(o)) }, nil
	case audit.KindStrings:
		get := audit.FieldGetter[[]string](f)
		return stringListType, func(o any) ref.Val { return types.NewStringList(types.DefaultTypeAdapter, get(o)) }, nil
	case audit.KindStringMap:
		get := audit.FieldGetter[map[string]string](f)
		return stringMapType, func(o any) ref.Val { return types.NewStringStringMap(types.DefaultTypeAdapter, get(o)) }, nil
	case audit.KindStringsMap:
		get := audit.FieldGetter[map[string][]string](f)
		return extraType, func(o any) ref.Val {
			m := get(o)
			if m == nil {
				m = map[string][]string{}
			}
			return types.NewDynamicMap(types.DefaultTypeAdapter, m)
		}, nil
	case audit.KindTime:
		get := audit.FieldGetter[time.Time](f)
		return types.TimestampType, func(o any) ref.Val { return types.Timestamp{Time: get(o)} }, nil
	case audit.KindObject:
		get := audit.FieldGetter[any](f)
		return sub.typ, func(o any) ref.Val { return object{t: sub, val: get(o)} }, nil
	case audit.KindRaw:
		return types.DynType, nil, nil
	}
	return nil, nil, fmt.Errorf("no CEL type for kind %d", f.Kind)
}

// addEventField adds a member of the event, whose getters are given the
// activation. The value of each is made once per event and kept in the
// activation: rules and macros read the same few fields over and over, and
// making a CEL value of a Go one allocates. A body is decoded, within the
// set's limit, by the activation.
func addEventField(ev *objType, f audit.Field, typ *types.Type, val func(any) ref.Val) {
	e := func(obj any) *Activation { a, _ := obj.(*Activation); return a }
	value := func(a *Activation) ref.Val { return val(a.ev) }
	if f.Kind == audit.KindRaw {
		raw := audit.FieldGetter[[]byte](f)
		value = func(a *Activation) ref.Val { return a.scope.decodeObject(a.ev, raw(a.ev)) }
	}
	i := ev.cached
	ev.cached++
	isSet := f.IsSet
	ev.add(f.Name, typ, func(o any) ref.Val {
		a := e(o)
		if v := a.fields[i]; v != nil {
			return v
		}
		v := value(a)
		a.fields[i] = v
		return v
	}, func(o any) bool { return isSet(e(o).ev) })
}
