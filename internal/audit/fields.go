package audit

// Kind is the shape of a field's value, and so the Go type its getter
// returns.
type Kind uint8

// Kinds of fields, with the Go type of their getters' values.
const (
	KindString     Kind = iota + 1 // string
	KindInt                        // int64
	KindStrings                    // []string
	KindStringMap                  // map[string]string
	KindStringsMap                 // map[string][]string
	KindTime                       // time.Time
	KindRaw                        // []byte: JSON kept undecoded (the bodies)
	KindObject                     // any: a pointer to one of the schema's structs
)

// Type is one struct of the audit schema: Event, UserInfo, ObjectReference
// or Status.
type Type struct {
	// Name is the struct's Go name; type errors of the decoder use it.
	Name   string
	Fields []Field
}

// Field is one member of a Type.
type Field struct {
	// Name is the member's JSON name, which is also how rules spell it.
	Name string
	Kind Kind
	// Type is the struct of a KindObject member.
	Type *Type
	// Optional says that the member is a pointer, nil unless the event
	// carries it.
	Optional bool
	// Hidden keeps the member out of the rules' reach: Timestamp, which
	// only events from before audit.k8s.io/v1 carry.
	Hidden bool
	// Get is func(obj any) T, T being the Go type of Kind, and obj a
	// pointer to the Type's struct; a nil one reads as the zero value.
	Get any
	// IsSet tells whether the member of obj is present: a non-zero
	// scalar, a non-nil list, map or pointer, a body other than null.
	IsSet func(obj any) bool
}

// Path is one value of an Event, reached by its dotted JSON path.
type Path struct {
	// Path is "verb", "objectRef.resource", "user.groups", ...
	Path string
	Kind Kind
	// Optional says that the value is an optional struct of the Event.
	Optional bool
	// Get is func(*Event) T, T being the Go type of Kind. A value under an
	// absent optional struct reads as its zero value, as in rules.
	Get any
	// IsSet is Field.IsSet of the value, false under an absent struct.
	IsSet func(*Event) bool
}

// Schema returns the struct types of an audit event, from Event down. The
// rules' CEL type provider is built from it. Each call returns a new copy.
func Schema() *Type { return eventType() }

// Paths returns every value of an Event that rules can read, by its path,
// parents before their members. Each call returns a new copy.
func Paths() []Path { return eventPaths() }

// Getter returns the getter of the value at path, nil when path names no
// value of Go type T.
func Getter[T any](path string) func(*Event) T {
	for _, p := range eventPaths() {
		if p.Path == path {
			get, _ := p.Get.(func(*Event) T)
			return get
		}
	}
	return nil
}

// FieldGetter returns f's getter, nil when f's values are not of Go type T.
func FieldGetter[T any](f Field) func(obj any) T {
	get, _ := f.Get.(func(any) T)
	return get
}
