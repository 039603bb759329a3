package jsonscan

import (
	"fmt"
	"time"
)

// The readers below decode one value each into the Go type they are named
// for, as encoding/json would into a struct member of that type: null
// leaves a scalar as it was and clears a slice or a map, a value of the
// wrong JSON type is a type error naming field (as "Type.member") and the
// Go type it was wanted as. depth is that of the container holding the
// value.

// Document decodes the top-level value with object, which reads an object
// from its opening brace. Like encoding/json into a struct, null decodes to
// nothing and any other non-object is an error.
func (d *Decoder) Document(object func() error) error {
	switch d.next() {
	case '{':
		if err := object(); err != nil {
			return err
		}
	case 'n':
		if err := d.literal(); err != nil {
			return err
		}
	default:
		return d.mismatch(0, "top level", "object")
	}
	if d.skipSpace(); d.pos < len(d.data) {
		return d.unexpected("after top-level value")
	}
	return nil
}

// Members calls field for each member of the object at the read position
// (its opening brace), the object being at depth. field must consume the
// member's value.
func (d *Decoder) Members(depth int, field func(key []byte) error) error {
	more, err := d.objectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			return err
		}
		if err = field(key); err != nil {
			return err
		}
		more, err = d.more('}', "after object key:value pair")
	}
	return err
}

// Object checks that the next value is an object (true, left for Members to
// read) or null (false, consumed); anything else is a type error.
func (d *Decoder) Object(depth int, field, typ string) (bool, error) {
	switch d.next() {
	case '{':
		return true, nil
	case 'n':
		return false, d.literal()
	}
	return false, d.mismatch(depth, field, typ)
}

// Raw consumes one value, validating it, and returns its bytes.
func (d *Decoder) Raw(depth int) ([]byte, error) {
	d.skipSpace()
	start := d.pos
	if err := d.Skip(depth); err != nil {
		return nil, err
	}
	return d.data[start:d.pos], nil
}

func (d *Decoder) typeError(what, want string) error {
	return d.errorf("cannot unmarshal %s into %s", what, want)
}

// kindAt names the JSON type of the value at d.pos for type errors.
func (d *Decoder) kindAt() string {
	switch c := d.next(); c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	}
	return "number"
}

// String decodes a string value; null leaves *s as it is.
func (d *Decoder) String(s *string, depth int, field string) error {
	switch d.next() {
	case '"':
		raw, flags, err := d.scanString()
		if err != nil {
			return err
		}
		*s = d.str(raw, flags)
		return nil
	case 'n':
		return d.literal()
	}
	return d.mismatch(depth, field, "string")
}

// mismatch reports a value of the wrong type once it is known to be
// well-formed, so that malformed JSON is reported as such first.
func (d *Decoder) mismatch(depth int, field, want string) error {
	kind := d.kindAt()
	start := d.pos
	if err := d.Skip(depth); err != nil {
		return err
	}
	d.pos = start
	return d.typeError(kind, fmt.Sprintf("%s of type %s", field, want))
}

// StringList decodes a JSON array of strings; null gives nil.
func (d *Decoder) StringList(depth int, field string) ([]string, error) {
	switch d.next() {
	case 'n':
		return nil, d.literal()
	case '[':
	default:
		return nil, d.mismatch(depth, field, "[]string")
	}
	if depth+1 > d.depthLimit() {
		return nil, d.tooDeep('[')
	}
	d.pos++
	if d.strs == nil {
		d.strs = make([]string, 0, 8)
	}
	start := len(d.strs)
	if d.next() == ']' {
		d.pos++
		return []string{}, nil
	}
	for {
		s := ""
		if err := d.String(&s, depth+1, field); err != nil {
			return nil, err
		}
		d.strs = append(d.strs, s)
		more, err := d.more(']', "after array element")
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
	}
	// Cap the slice at its length, so that appending to it can never
	// write over the next list carved from the same array.
	return d.strs[start:len(d.strs):len(d.strs)], nil
}

// Int64 decodes an integer number as encoding/json does into an int64:
// no fraction, no exponent, no overflow. null leaves *n as it is.
func (d *Decoder) Int64(n *int64, depth int, field string) error {
	switch c := d.next(); {
	case c == 'n':
		return d.literal()
	case c != '-' && (c < '0' || c > '9'):
		return d.mismatch(depth, field, "int64")
	}
	lit, err := d.number()
	if err != nil {
		return err
	}
	neg := lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	var u uint64
	for _, c := range digits {
		if c < '0' || c > '9' || u > (1<<63)/10 {
			return d.typeError("number "+string(lit), field+" of type int64")
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case !neg && u <= 1<<63-1:
		*n = int64(u)
	case neg && u <= 1<<63:
		*n = -int64(u)
	default:
		return d.typeError("number "+string(lit), field+" of type int64")
	}
	return nil
}

// Time decodes a timestamp exactly as encoding/json does: by handing the
// literal to time.Time's UnmarshalJSON, unless it is in the one form
// kube-apiserver writes, which is read directly at a fraction of the cost.
func (d *Decoder) Time(t *time.Time, depth int) error {
	raw, err := d.Raw(depth)
	if err != nil {
		return err
	}
	if v, ok := utcTime(raw); ok {
		*t = v
		return nil
	}
	return t.UnmarshalJSON(raw)
}

// utcTime reads a JSON string "YYYY-MM-DDTHH:MM:SS[.fraction]Z" as
// time.Parse(time.RFC3339Nano) would, false for anything else.
func utcTime(b []byte) (time.Time, bool) {
	if len(b) < len(`"2006-01-02T15:04:05Z"`) || b[0] != '"' || b[len(b)-1] != '"' || b[len(b)-2] != 'Z' {
		return time.Time{}, false
	}
	s := b[1 : len(b)-2]
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19:]; len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		n, ok := digits(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// digits reads a run of decimal digits, false if any byte is not one.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// StringMap decodes an object of strings. Like encoding/json, it adds to a
// map decoded before (a duplicate key) and null clears it.
func (d *Decoder) StringMap(m *map[string]string, depth int, field string) error {
	ok, err := d.Object(depth, field, "map[string]string")
	if !ok || err != nil {
		*m = nil
		return err
	}
	if *m == nil {
		*m = map[string]string{}
	}
	return d.Members(depth+1, func(key []byte) error {
		k := d.Keep(key)
		v := ""
		if err := d.String(&v, depth+1, field); err != nil {
			return err
		}
		(*m)[k] = v
		return nil
	})
}

// StringListMap decodes an object of string arrays, merging and clearing
// as StringMap does.
func (d *Decoder) StringListMap(m *map[string][]string, depth int, field string) error {
	ok, err := d.Object(depth, field, "map[string][]string")
	if !ok || err != nil {
		*m = nil
		return err
	}
	if *m == nil {
		*m = map[string][]string{}
	}
	return d.Members(depth+1, func(key []byte) error {
		k := d.Keep(key)
		v, err := d.StringList(depth+1, field)
		if err != nil {
			return err
		}
		(*m)[k] = v
		return nil
	})
}

// RawList decodes an array into its elements' bytes, validated but not
// decoded, their nesting counted from the array or, with ownDepth, from
// each element; null gives nil.
func (d *Decoder) RawList(depth int, ownDepth bool, field string) ([][]byte, error) {
	switch d.next() {
	case 'n':
		return nil, d.literal()
	case '[':
	default:
		return nil, d.mismatch(depth, field, "[]json.RawMessage")
	}
	d.pos++
	out := [][]byte{}
	if d.next() == ']' {
		d.pos++
		return out, nil
	}
	itemDepth := depth + 1
	if ownDepth {
		itemDepth = 0
	}
	for {
		item, err := d.Raw(itemDepth)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
		more, err := d.more(']', "after array element")
		if err != nil {
			return nil, err
		}
		if !more {
			return out, nil
		}
	}
}
