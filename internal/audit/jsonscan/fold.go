package jsonscan

import (
	"unicode"
	"unicode/utf8"
)

// foldKey is encoding/json's case folding of a field name: two names match
// when their folds are equal.
func foldKey(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// Canonical returns the name among names that key matches case-insensitively
// the way encoding/json matches struct fields, or "". Exact matches are the
// caller's switch; this is its fallback for keys it did not know.
func Canonical(key []byte, names []string) string {
	ascii := true
	for _, c := range key {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		for _, n := range names {
			if len(n) == len(key) && asciiEqualFold(key, n) {
				return n
			}
		}
		return ""
	}
	folded := foldKey(key)
	for _, n := range names {
		if string(folded) == string(foldKey([]byte(n))) {
			return n
		}
	}
	return ""
}

func asciiEqualFold(a []byte, b string) bool {
	for i := range a {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
