// Package jsonscan reads JSON in one pass, the way encoding/json decodes it
// into Go structs: same accepted inputs, same values (field names matched
// case-insensitively, invalid UTF-8 replaced by U+FFFD, duplicate keys
// merged the same way, nesting limited to the same depth), same error
// wording. It is the tokenizer under the audit event decoder, which says
// for each member of an event which of the readers below fills it.
//
// It is hand-written because decoding was most of the engine's time: a
// generic decoder copies request and response bodies and walks them byte by
// byte, while most events never reach a rule that reads them. Here values
// that are not decoded are only validated, a word at a time, and kept as
// sub-slices of the input.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is encoding/json's nesting limit: a document nested deeper is
// rejected rather than risking the stack, and so must it be here. A
// Decoder can be given less (Options.MaxDepth), never more.
const MaxDepth = 10000

// syntaxError is malformed JSON, or JSON of a shape an Event cannot hold,
// at byte Offset of the event.
type syntaxError struct {
	Offset int
	msg    string
	// tooDeep marks the nesting limit, for ErrTooDeep.
	tooDeep bool
}

func (e *syntaxError) Is(target error) bool { return target == ErrTooDeep && e.tooDeep }

func (e *syntaxError) Error() string { return fmt.Sprintf("%s (at byte %d)", e.msg, e.Offset) }

var errDepth = errors.New("exceeded max depth")

// ErrTooDeep matches (errors.Is) an error of a document nested deeper than
// the limit it was decoded with.
var ErrTooDeep = errors.New("JSON nested too deeply")

// Decoder reads one JSON document. Strings it decodes either share the
// input's memory (Options.Shared) or are carved from arena chunks that are
// never written again once a string refers to them, which makes a
// document's strings one allocation instead of one each.
//
// Depths given to its methods count containers: a value at depth n is held
// by n open objects or arrays, the top-level object being depth 1 to its
// members.
type Decoder struct {
	data  []byte
	pos   int
	arena []byte
	strs  []string
	// limit, when set, is a nesting limit below MaxDepth.
	limit int
	// alias lets decoded strings share the input's memory instead of
	// being copied: for a caller that keeps the input unchanged.
	alias bool
}

// Options say how a Decoder reads.
type Options struct {
	// MaxDepth, when from 1 to MaxDepth, is a nesting limit below
	// encoding/json's; errors.Is(err, ErrTooDeep) tells a document that
	// exceeds it.
	MaxDepth int
	// Shared lets decoded strings share data's memory wherever they need
	// no unescaping, instead of being copied: for a caller that never
	// changes data once decoded.
	Shared bool
}

// NewDecoder returns a Decoder of data, which it reads from the start.
func NewDecoder(data []byte, o Options) Decoder {
	return Decoder{data: data, limit: o.MaxDepth, alias: o.Shared}
}

// depthLimit is the nesting the decoder accepts.
func (d *Decoder) depthLimit() int {
	if d.limit > 0 && d.limit < MaxDepth {
		return d.limit
	}
	return MaxDepth
}

// tooDeep is the error of a container opened past the nesting limit, with
// encoding/json's wording.
func (d *Decoder) tooDeep(c byte) error {
	return &syntaxError{Offset: d.pos, msg: fmt.Sprintf("invalid character %s %v", quoteChar(c), errDepth), tooDeep: true}
}

// containers is the stack of containers open while skipping a value, one
// bit each: set for an object. Skipping is iterative, so that depth costs
// at most a slice, never the goroutine's stack.
type containers struct {
	n    int
	low  uint64 // the first 64
	deep []bool // the rest
}

func (c *containers) push(object bool) {
	if c.n < 64 {
		if object {
			c.low |= 1 << c.n
		} else {
			c.low &^= 1 << c.n
		}
	} else {
		c.deep = append(c.deep[:c.n-64], object)
	}
	c.n++
}

func (c *containers) top() bool {
	if i := c.n - 1; i < 64 {
		return c.low&(1<<i) != 0
	}
	return c.deep[c.n-65]
}

func (d *Decoder) errorf(format string, args ...any) error {
	return &syntaxError{Offset: d.pos, msg: fmt.Sprintf(format, args...)}
}

func (d *Decoder) unexpected(context string) error {
	if d.pos >= len(d.data) {
		return &syntaxError{Offset: d.pos, msg: "unexpected end of JSON input"}
	}
	return d.errorf("invalid character %s %s", quoteChar(d.data[d.pos]), context)
}

func quoteChar(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c == '"':
		return `'"'`
	case c < ' ' || c >= utf8.RuneSelf:
		return fmt.Sprintf("%q", rune(c))
	}
	return "'" + string(c) + "'"
}

func isSpace(c byte) bool { return c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n') }

func (d *Decoder) skipSpace() {
	for d.pos < len(d.data) && isSpace(d.data[d.pos]) {
		d.pos++
	}
}

// next skips whitespace and returns the next byte, 0 at the end.
func (d *Decoder) next() byte {
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// expect consumes c after optional whitespace.
func (d *Decoder) expect(c byte, context string) error {
	if d.next() != c || d.pos >= len(d.data) {
		return d.unexpected(context)
	}
	d.pos++
	return nil
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special flags the bytes of w that end a fast string scan: a quote, a
// backslash or a control character. The lowest flag is exact; flags above it
// may be false positives, which the caller re-checks byte by byte.
func special(w uint64) uint64 {
	q := w ^ (lsb * '"')
	b := w ^ (lsb * '\\')
	return ((q-lsb)&^q | (b-lsb)&^b | (w-lsb*' ')&^w) & msb
}

// String scan results.
const (
	strEscaped  = 1 << iota // holds a backslash escape
	strNonASCII             // may hold bytes ≥ 0x80
)

// scanString reads the string starting at d.pos (at its opening quote),
// validating it as JSON does: no control characters, only known escapes.
// It returns the contents between the quotes.
func (d *Decoder) scanString() (raw []byte, flags int, err error) {
	data := d.data
	start := d.pos + 1
	i := start
	for {
		// Short runs between specials are scanned a word at a time; past
		// longRun clean bytes the string is likely long (a body's data), and
		// the run to the next quote is found with IndexByte, which is
		// vectorized, and only checked for escapes and control characters.
		run := i + longRun
		for i+8 <= len(data) {
			w := binary.LittleEndian.Uint64(data[i:])
			if w&msb != 0 {
				flags |= strNonASCII
			}
			if m := special(w); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
			if i >= run {
				n, hi := cleanRun(data[i:])
				if hi {
					flags |= strNonASCII
				}
				i += n
				break
			}
		}
		if i >= len(data) {
			d.pos = i
			return nil, 0, d.unexpected("in string literal")
		}
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return data[start:i], flags, nil
		case c == '\\':
			flags |= strEscaped
			if i+1 >= len(data) {
				d.pos = len(data)
				return nil, 0, d.unexpected("in string escape code")
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := 2; k < 6; k++ {
					if i+k >= len(data) {
						d.pos = len(data)
						return nil, 0, d.unexpected("in \\u hexadecimal character escape")
					}
					if !isHex(data[i+k]) {
						d.pos = i + k
						return nil, 0, d.unexpected("in \\u hexadecimal character escape")
					}
				}
				i += 6
			default:
				d.pos = i + 1
				return nil, 0, d.unexpected("in string escape code")
			}
		case c < ' ':
			d.pos = i
			return nil, 0, d.unexpected("in string literal")
		default:
			if c >= utf8.RuneSelf {
				flags |= strNonASCII
			}
			i++
		}
	}
}

// longRun is how many clean bytes of a string make it worth scanning it as
// a long one.
const longRun = 32

// cleanRun returns how many bytes at the start of b hold no quote,
// backslash or control character, and whether they hold bytes ≥ 0x80.
func cleanRun(b []byte) (n int, nonASCII bool) {
	if q := bytes.IndexByte(b, '"'); q >= 0 {
		b = b[:q]
	}
	if e := bytes.IndexByte(b, '\\'); e >= 0 {
		b = b[:e]
	}
	var hi uint64
	for ; n+16 <= len(b); n += 16 {
		w1 := binary.LittleEndian.Uint64(b[n:])
		w2 := binary.LittleEndian.Uint64(b[n+8:])
		hi |= w1 | w2
		if ((w1-lsb*' ')&^w1|(w2-lsb*' ')&^w2)&msb != 0 {
			break
		}
	}
	for ; n < len(b) && b[n] >= ' '; n++ {
		hi |= uint64(b[n]) << 56
	}
	return n, hi&msb != 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// str turns the contents of a string literal into a Go string the way
// encoding/json does.
func (d *Decoder) str(raw []byte, flags int) string {
	if flags&strEscaped == 0 && (flags&strNonASCII == 0 || utf8.Valid(raw)) {
		return d.Keep(raw)
	}
	// unquote's result is new memory that nothing else writes.
	b := unquote(raw)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Keep makes a string of b, which is either a part of the input or memory
// of the decoder's own, such as a key Members passed. With Options.Shared
// the string shares b's memory: the input's owner has promised not to
// change it. Otherwise b is copied into the arena.
func (d *Decoder) Keep(b []byte) string {
	if d.alias {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return d.intern(b)
}

// intern copies b into the arena. A chunk that is full is left to the
// strings that point into it, never reused, so they stay immutable.
func (d *Decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(d.arena)-len(d.arena) < len(b) {
		// The decoded strings of an event are most of its bytes unless it
		// has bodies: sized on the event, the first chunk is usually the
		// only one.
		d.arena = make([]byte, 0, max(len(b), 2*cap(d.arena), min(len(d.data), 2048)))
	}
	n := len(d.arena)
	d.arena = append(d.arena, b...)
	return unsafe.String(&d.arena[n], len(b))
}

// unquote decodes the contents of a valid string literal, replacing
// invalid UTF-8 and unpaired surrogates by U+FFFD as encoding/json does.
func unquote(s []byte) []byte {
	b := make([]byte, 0, len(s)+utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return b
}

// getu4 decodes \uXXXX at the start of s, -1 if there is none.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// key reads an object key, unquoted, and the colon after it.
func (d *Decoder) key() ([]byte, error) {
	if d.next() != '"' {
		return nil, d.unexpected("looking for beginning of object key string")
	}
	raw, flags, err := d.scanString()
	if err != nil {
		return nil, err
	}
	if flags != 0 && (flags&strEscaped != 0 || !utf8.Valid(raw)) {
		raw = unquote(raw)
	}
	if err := d.expect(':', "after object key"); err != nil {
		return nil, err
	}
	return raw, nil
}

// more reads what follows a member or element: true after a comma, false
// at the closing bracket.
func (d *Decoder) more(closing byte, context string) (bool, error) {
	switch d.next() {
	case ',':
		d.pos++
		return true, nil
	case closing:
		d.pos++
		return false, nil
	}
	return false, d.unexpected(context)
}

// objectStart consumes '{' and reports whether the object has members.
func (d *Decoder) objectStart() (bool, error) {
	d.pos++
	if d.next() == '}' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// literal consumes true, false or null.
func (d *Decoder) literal() error {
	var want string
	switch d.data[d.pos] {
	case 't':
		want = "true"
	case 'f':
		want = "false"
	default:
		want = "null"
	}
	for k := 1; k < len(want); k++ {
		d.pos++
		if d.pos >= len(d.data) || d.data[d.pos] != want[k] {
			return d.unexpected(fmt.Sprintf("in literal %s (expecting %q)", want, want[k]))
		}
	}
	d.pos++
	return nil
}

// number consumes a number literal and returns it.
func (d *Decoder) number() ([]byte, error) {
	data, start := d.data, d.pos
	i := start
	if data[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i > j
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		digits()
	default:
		d.pos = i
		return nil, d.unexpected("in numeric literal")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if !digits() {
			d.pos = i
			return nil, d.unexpected("after decimal point in numeric literal")
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			d.pos = i
			return nil, d.unexpected("in exponent of numeric literal")
		}
	}
	d.pos = i
	return data[start:i], nil
}

// Skip validates and consumes one value of any kind; depth is that of the
// container holding it.
func (d *Decoder) Skip(depth int) error {
	var open containers
	for {
		// A value is expected here.
		switch c := d.next(); {
		case c == '{' || c == '[':
			if depth+open.n >= d.depthLimit() {
				return d.tooDeep(c)
			}
			d.pos++
			closing := byte(']')
			if c == '{' {
				closing = '}'
			}
			if d.next() == closing {
				d.pos++
				break
			}
			open.push(c == '{')
			if c == '{' {
				if _, err := d.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if _, _, err := d.scanString(); err != nil {
				return err
			}
		case c == 't' || c == 'f' || c == 'n':
			if err := d.literal(); err != nil {
				return err
			}
		case c == '-' || '0' <= c && c <= '9':
			if _, err := d.number(); err != nil {
				return err
			}
		default:
			return d.unexpected("looking for beginning of value")
		}
		// A value ended: close the containers it ends.
		for {
			if open.n == 0 {
				return nil
			}
			obj := open.top()
			closing, context := byte(']'), "after array element"
			if obj {
				closing, context = '}', "after object key:value pair"
			}
			more, err := d.more(closing, context)
			if err != nil {
				return err
			}
			if more {
				if obj {
					if _, err := d.key(); err != nil {
						return err
					}
				}
				break
			}
			open.n--
		}
	}
}
