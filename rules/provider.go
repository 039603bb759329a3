package rules

import (
	"fmt"
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// CEL type names of the values rules see. They show up in type-check errors.
const (
	typeEvent          = "vigil.Event"
	typeUserInfo       = "vigil.UserInfo"
	typeObjectRef      = "vigil.ObjectReference"
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

// eventTypes builds the typed schema of `event`, mirroring the JSON field
// names of audit.k8s.io/v1 Event. Absent values read as zero values so that
// conditions need no has() guards.
func eventTypes() map[string]*objType {
	user := newObjType(typeUserInfo)
	u := func(obj any) *audit.UserInfo { p, _ := obj.(*audit.UserInfo); return p }
	user.add("username", types.StringType,
		func(o any) ref.Val {
			if p := u(o); p != nil {
				return types.String(p.Username)
			}
			return types.String("")
		},
		func(o any) bool { p := u(o); return p != nil && p.Username != "" })
	user.add("uid", types.StringType,
		func(o any) ref.Val {
			if p := u(o); p != nil {
				return types.String(p.UID)
			}
			return types.String("")
		},
		func(o any) bool { p := u(o); return p != nil && p.UID != "" })
	user.add("groups", stringListType,
		func(o any) ref.Val {
			if p := u(o); p != nil {
				return types.NewStringList(types.DefaultTypeAdapter, p.Groups)
			}
			return types.NewStringList(types.DefaultTypeAdapter, nil)
		},
		func(o any) bool { p := u(o); return p != nil && p.Groups != nil })
	user.add("extra", extraType,
		func(o any) ref.Val {
			if p := u(o); p != nil && p.Extra != nil {
				return types.NewDynamicMap(types.DefaultTypeAdapter, p.Extra)
			}
			return types.NewDynamicMap(types.DefaultTypeAdapter, map[string][]string{})
		},
		func(o any) bool { p := u(o); return p != nil && p.Extra != nil })

	oref := newObjType(typeObjectRef)
	r := func(obj any) *audit.ObjectReference { p, _ := obj.(*audit.ObjectReference); return p }
	refStr := func(name string, get func(*audit.ObjectReference) string) {
		oref.add(name, types.StringType,
			func(o any) ref.Val {
				if p := r(o); p != nil {
					return types.String(get(p))
				}
				return types.String("")
			},
			func(o any) bool { p := r(o); return p != nil && get(p) != "" })
	}
	refStr("resource", func(p *audit.ObjectReference) string { return p.Resource })
	refStr("namespace", func(p *audit.ObjectReference) string { return p.Namespace })
	refStr("name", func(p *audit.ObjectReference) string { return p.Name })
	refStr("uid", func(p *audit.ObjectReference) string { return p.UID })
	refStr("apiGroup", func(p *audit.ObjectReference) string { return p.APIGroup })
	refStr("apiVersion", func(p *audit.ObjectReference) string { return p.APIVersion })
	refStr("resourceVersion", func(p *audit.ObjectReference) string { return p.ResourceVersion })
	refStr("subresource", func(p *audit.ObjectReference) string { return p.Subresource })

	status := newObjType(typeResponseStatus)
	s := func(obj any) *audit.Status { p, _ := obj.(*audit.Status); return p }
	statusStr := func(name string, get func(*audit.Status) string) {
		status.add(name, types.StringType,
			func(o any) ref.Val {
				if p := s(o); p != nil {
					return types.String(get(p))
				}
				return types.String("")
			},
			func(o any) bool { p := s(o); return p != nil && get(p) != "" })
	}
	statusStr("status", func(p *audit.Status) string { return p.Status })
	statusStr("message", func(p *audit.Status) string { return p.Message })
	statusStr("reason", func(p *audit.Status) string { return p.Reason })
	status.add("code", types.IntType,
		func(o any) ref.Val {
			if p := s(o); p != nil {
				return types.Int(p.Code)
			}
			return types.Int(0)
		},
		func(o any) bool { p := s(o); return p != nil && p.Code != 0 })

	ev := newObjType(typeEvent)
	e := func(obj any) *activation { a, _ := obj.(*activation); return a }
	// The value of each event field is made once per event and kept in the
	// activation: rules and macros read the same few fields over and over,
	// and making a CEL value of a Go one allocates.
	evAdd := func(name string, typ *types.Type, get func(any) ref.Val, set func(any) bool) {
		i := ev.cached
		ev.cached++
		ev.add(name, typ, func(o any) ref.Val {
			a := e(o)
			if v := a.fields[i]; v != nil {
				return v
			}
			v := get(o)
			a.fields[i] = v
			return v
		}, set)
	}
	evStr := func(name string, get func(*audit.Event) string) {
		evAdd(name, types.StringType,
			func(o any) ref.Val { return types.String(get(e(o).ev)) },
			func(o any) bool { return get(e(o).ev) != "" })
	}
	evStr("kind", func(v *audit.Event) string { return v.Kind })
	evStr("apiVersion", func(v *audit.Event) string { return v.APIVersion })
	evStr("level", func(v *audit.Event) string { return v.Level })
	evStr("auditID", func(v *audit.Event) string { return v.AuditID })
	evStr("stage", func(v *audit.Event) string { return v.Stage })
	evStr("requestURI", func(v *audit.Event) string { return v.RequestURI })
	evStr("verb", func(v *audit.Event) string { return v.Verb })
	evStr("userAgent", func(v *audit.Event) string { return v.UserAgent })
	evAdd("user", user.typ,
		func(o any) ref.Val { return object{t: user, val: &e(o).ev.User} },
		func(o any) bool { v := e(o).ev; return v.User.Username != "" || v.User.Groups != nil })
	evAdd("impersonatedUser", user.typ,
		func(o any) ref.Val { return object{t: user, val: e(o).ev.ImpersonatedUser} },
		func(o any) bool { return e(o).ev.ImpersonatedUser != nil })
	evAdd("sourceIPs", stringListType,
		func(o any) ref.Val { return types.NewStringList(types.DefaultTypeAdapter, e(o).ev.SourceIPs) },
		func(o any) bool { return e(o).ev.SourceIPs != nil })
	evAdd("objectRef", oref.typ,
		func(o any) ref.Val { return object{t: oref, val: e(o).ev.ObjectRef} },
		func(o any) bool { return e(o).ev.ObjectRef != nil })
	evAdd("responseStatus", status.typ,
		func(o any) ref.Val { return object{t: status, val: e(o).ev.ResponseStatus} },
		func(o any) bool { return e(o).ev.ResponseStatus != nil })
	evAdd("requestObject", types.DynType,
		func(o any) ref.Val { return e(o).requestObject() },
		func(o any) bool { return len(e(o).ev.RequestObject) > 0 && string(e(o).ev.RequestObject) != "null" })
	evAdd("responseObject", types.DynType,
		func(o any) ref.Val { return e(o).responseObject() },
		func(o any) bool { return len(e(o).ev.ResponseObject) > 0 && string(e(o).ev.ResponseObject) != "null" })
	evAdd("requestReceivedTimestamp", types.TimestampType,
		func(o any) ref.Val { return types.Timestamp{Time: e(o).ev.RequestReceivedTimestamp} },
		func(o any) bool { return !e(o).ev.RequestReceivedTimestamp.IsZero() })
	evAdd("stageTimestamp", types.TimestampType,
		func(o any) ref.Val { return types.Timestamp{Time: e(o).ev.StageTimestamp} },
		func(o any) bool { return !e(o).ev.StageTimestamp.IsZero() })
	evAdd("annotations", stringMapType,
		func(o any) ref.Val {
			return types.NewStringStringMap(types.DefaultTypeAdapter, e(o).ev.Annotations)
		},
		func(o any) bool { return e(o).ev.Annotations != nil })

	return map[string]*objType{
		typeEvent: ev, typeUserInfo: user, typeObjectRef: oref, typeResponseStatus: status,
	}
}
