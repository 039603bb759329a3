package audit

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// getterTypes are the types of getters each kind promises, on a struct
// (Field.Get) and on the Event (Path.Get).
var getterTypes = map[Kind][2]any{
	KindString:     {(func(any) string)(nil), (func(*Event) string)(nil)},
	KindInt:        {(func(any) int64)(nil), (func(*Event) int64)(nil)},
	KindStrings:    {(func(any) []string)(nil), (func(*Event) []string)(nil)},
	KindStringMap:  {(func(any) map[string]string)(nil), (func(*Event) map[string]string)(nil)},
	KindStringsMap: {(func(any) map[string][]string)(nil), (func(*Event) map[string][]string)(nil)},
	KindTime:       {(func(any) time.Time)(nil), (func(*Event) time.Time)(nil)},
	KindRaw:        {(func(any) []byte)(nil), (func(*Event) []byte)(nil)},
	KindObject:     {(func(any) any)(nil), (func(*Event) any)(nil)},
}

func TestGettersHaveTheTypesOfTheirKinds(t *testing.T) {
	seen := map[*Type]bool{}
	var walk func(*Type)
	walk = func(ty *Type) {
		if seen[ty] {
			return
		}
		seen[ty] = true
		for _, f := range ty.Fields {
			want, ok := getterTypes[f.Kind]
			if !ok || reflect.TypeOf(f.Get) != reflect.TypeOf(want[0]) || f.IsSet == nil {
				t.Errorf("%s.%s: kind %d, getter %T", ty.Name, f.Name, f.Kind, f.Get)
			}
			if (f.Kind == KindObject) != (f.Type != nil) {
				t.Errorf("%s.%s: kind %d with type %v", ty.Name, f.Name, f.Kind, f.Type)
			}
			if f.Type != nil {
				walk(f.Type)
			}
		}
	}
	walk(Schema())
	if len(seen) != 4 {
		t.Errorf("schema has %d struct types, want Event, UserInfo, ObjectReference and Status", len(seen))
	}
	for _, p := range Paths() {
		if want, ok := getterTypes[p.Kind]; !ok || reflect.TypeOf(p.Get) != reflect.TypeOf(want[1]) || p.IsSet == nil {
			t.Errorf("%s: kind %d, getter %T", p.Path, p.Kind, p.Get)
		}
	}
	if Getter[string]("objectRef.resource") == nil || Getter[int64]("objectRef.resource") != nil || Getter[string]("timestamp") != nil {
		t.Error("Getter does not tell paths by their type")
	}
}

// full is an event with every value rules can read set.
const full = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a","stage":"ResponseComplete",
	"requestURI":"/api/v1/pods","verb":"get","user":{"username":"u","uid":"1","groups":["g"],"extra":{"k":["v"]}},
	"impersonatedUser":{"username":"i","uid":"2","groups":["h"],"extra":{"k":["w"]}},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl",
	"objectRef":{"resource":"pods","namespace":"n","name":"p","uid":"3","apiGroup":"g","apiVersion":"v1","resourceVersion":"4","subresource":"log"},
	"responseStatus":{"status":"Success","message":"m","reason":"r","code":200},"requestObject":{},"responseObject":[],
	"requestReceivedTimestamp":"2026-01-01T00:00:00Z","stageTimestamp":"2026-01-01T00:00:01Z","annotations":{"a":"b"}}`

// TestPathsReadEventsAsRulesDo: on an empty event every value is absent
// and zero, on a full one every value is set and is what was decoded.
func TestPathsReadEventsAsRulesDo(t *testing.T) {
	ev, err := Decode([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	empty := &Event{}
	for _, p := range Paths() {
		get := reflect.ValueOf(p.Get)
		if p.IsSet(empty) {
			t.Errorf("%s is set on an empty event", p.Path)
		}
		v := get.Call([]reflect.Value{reflect.ValueOf(empty)})[0]
		if v.Kind() == reflect.Interface {
			v = v.Elem() // the struct pointer of a KindObject
		}
		if !v.IsZero() && (p.Kind != KindObject || p.Optional) {
			t.Errorf("%s of an empty event reads %v, want the zero value", p.Path, v)
		}
		if !p.IsSet(ev) {
			t.Errorf("%s is not set on %s", p.Path, full)
		}
		got := get.Call([]reflect.Value{reflect.ValueOf(ev)})[0].Interface()
		if want := byPath(reflect.ValueOf(ev).Elem(), p.Path); !reflect.DeepEqual(got, want) {
			t.Errorf("%s reads %#v, want %#v", p.Path, got, want)
		}
	}
}

// byPath follows a JSON path through the struct v by the json tags.
func byPath(v reflect.Value, path string) any {
	for _, name := range strings.Split(path, ".") {
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		for i := range v.NumField() {
			if tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); tag == name {
				v = v.Field(i)
				break
			}
		}
	}
	switch {
	case v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[time.Time]():
		return v.Addr().Interface()
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		return v.Bytes()
	}
	return v.Interface()
}
