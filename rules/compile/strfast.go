package compile

import (
	"math"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/decls"
	"github.com/google/cel-go/common/functions"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// Rules that scan request bodies (credentials in a ConfigMap) apply string
// functions to values of up to megabytes. cel-go's lowerAscii goes through a
// []rune, and its cost tracking counts the runes of every string argument
// of every call, which together cost more than the rest of the rule. The
// replacements below compute the very same values and costs, faster.

// fastStrings overrides implementations of cel-go's string library for one
// program. cel.Functions is deprecated for declaring functions; here it only
// rebinds ones already declared, which is what it still does.
func fastStrings() cel.ProgramOption {
	lower := func(arg ref.Val) ref.Val {
		s, ok := arg.(types.String)
		if !ok {
			return decls.MaybeNoSuchOverload("lowerAscii", arg)
		}
		return types.String(lowerASCII(string(s)))
	}
	//nolint:staticcheck // see above: an override, not a declaration.
	return cel.Functions(
		&functions.Overload{Operator: "string_lower_ascii", Unary: lower},
		&functions.Overload{Operator: "lowerAscii", Unary: lower},
	)
}

// lowerASCII is cel-go's ext lowerAscii: ASCII letters lowered, any other
// rune kept, invalid UTF-8 replaced by U+FFFD (the []rune conversion's
// doing). A string with nothing to change is returned as is.
func lowerASCII(s string) string {
	upper, ascii := false, true
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := word(s, i)
		if w&hiBits != 0 {
			break // the byte loop finds it
		}
		// Bytes below 0x80 plus 0x3F reach 0x80 from 'A' on, plus 0x25
		// from past 'Z' on; no carry crosses into the next byte.
		if (w+0x3F*loBits)&^(w+0x25*loBits)&hiBits != 0 {
			upper = true
		}
	}
	for ; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			upper = true
		} else if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii && !utf8.ValidString(s) {
		runes := []rune(s)
		for i, r := range runes {
			if r <= unicode.MaxASCII {
				runes[i] = unicode.ToLower(r)
			}
		}
		return string(runes)
	}
	if ascii && !upper {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

const (
	loBits = 0x0101010101010101
	hiBits = 0x8080808080808080
)

// word is the 8 bytes of s at i, little-endian; the compiler makes it one
// load.
func word(s string, i int) uint64 {
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// runeCount is len([]rune(s)), which is how types.String measures its size,
// eight ASCII bytes at a time.
func runeCount(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			if word(s, i)&hiBits == 0 {
				n += 8
				i += 8
				continue
			}
		}
		if s[i] < utf8.RuneSelf {
			n++
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		n++
		i += size
	}
	return n
}

// measure is the interpreter's actual size of a value in cost tracking, or
// with optionals false the string library's, which does not look into
// optionals. count measures strings.
func measure(v ref.Val, optionals bool, count func(string) uint64) uint64 {
	if s, ok := v.(types.String); ok {
		return count(string(s))
	}
	if sz, ok := v.(traits.Sizer); ok {
		return uint64(sz.Size().(types.Int))
	}
	if opt, ok := v.(*types.Optional); optionals && ok && opt.HasValue() {
		return measure(opt.GetValue(), optionals, count)
	}
	return 1
}

// runeMemo is the rune count of the string at p of n bytes.
type runeMemo struct {
	p     *byte
	n     int
	count uint64
}

// memoMin is the length from which counts are worth remembering.
const memoMin = 4 << 10

func traversal(size uint64, factor float64) uint64 {
	return uint64(math.Ceil(float64(size) * factor))
}

func addSat(x, y uint64) uint64 {
	if y > 0 && x > math.MaxUint64-y {
		return math.MaxUint64
	}
	return x + y
}

// fastCostTrackers replace the runtime cost of the string calls that see
// large values with the same formulas over a faster size: cel-go's
// interpreter defaults for contains and matches (the Kubernetes estimator
// has no cost of its own for them) and the string library's for lowerAscii.
func fastCostTrackers() cel.ProgramOption {
	// A rule scanning a body measures the same large string several times
	// (contains, lowerAscii and its unchanged result, contains again):
	// the last large count is kept. Holding the string's pointer keeps its
	// memory from being reused, so a match is always the same string.
	var last atomic.Pointer[runeMemo]
	count := func(s string) uint64 {
		if len(s) < memoMin {
			return uint64(runeCount(s))
		}
		p := unsafe.StringData(s)
		if m := last.Load(); m != nil && m.p == p && m.n == len(s) {
			return m.count
		}
		m := &runeMemo{p: p, n: len(s), count: uint64(runeCount(s))}
		last.Store(m)
		return m.count
	}
	actualSize := func(v ref.Val) uint64 { return measure(v, true, count) }
	extActualSize := func(v ref.Val) uint64 { return measure(v, false, count) }
	contains := func(args []ref.Val, _ ref.Val) *uint64 {
		if len(args) != 2 {
			return nil
		}
		c := traversal(actualSize(args[0]), common.StringTraversalCostFactor) *
			traversal(actualSize(args[1]), common.StringTraversalCostFactor)
		return &c
	}
	matches := func(args []ref.Val, _ ref.Val) *uint64 {
		if len(args) != 2 {
			return nil
		}
		str := uint64(math.Ceil((1.0 + float64(actualSize(args[0]))) * common.StringTraversalCostFactor))
		c := str * traversal(actualSize(args[1]), common.RegexStringLengthCostFactor)
		return &c
	}
	lower := func(args []ref.Val, result ref.Val) *uint64 {
		c := addSat(addSat(1, traversal(extActualSize(args[0]), common.StringTraversalCostFactor)), extActualSize(result))
		return &c
	}
	return cel.CostTrackerOptions(
		interpreter.OverloadCostTracker(overloads.ContainsString, contains),
		interpreter.OverloadCostTracker(overloads.Matches, matches),
		interpreter.OverloadCostTracker(overloads.MatchesString, matches),
		interpreter.OverloadCostTracker("string_lower_ascii", lower),
	)
}
