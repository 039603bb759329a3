package compile

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apiserver/pkg/cel/library"
)

// refLowerASCII is cel-go's ext implementation.
func refLowerASCII(str string) string {
	runes := []rune(str)
	for i, r := range runes {
		if r <= unicode.MaxASCII {
			r = unicode.ToLower(r)
			runes[i] = r
		}
	}
	return string(runes)
}

func strfastInputs() []string {
	in := []string{
		"", "a", "A", "abc", "ABC", "TacoCat", "TacoCÆt Xii", "already lower case, long enough to take words",
		"é", "É", "\xff", "a\xffB", "\xed\xa0\x80", "\xe2\x82", "ÀÉÎ MIXED ascii ÆØ", "\u212a\u017f", "12345678\xff",
		strings.Repeat("Password = hunter2 ", 1000), strings.Repeat("x", 1<<16) + "é" + strings.Repeat("Y", 9),
		// Large strings of one length and different rune counts, one after
		// the other: remembered counts must not mix them up.
		strings.Repeat("é", 3000), strings.Repeat("E", 6000), strings.Repeat("é", 3000), strings.Repeat("\xff", 6000),
	}
	// The letters' neighbours, in words of eight bytes and more.
	for _, c := range "@AZ[`az{" {
		in = append(in, strings.Repeat(string(c), 16), "abcdefg"+string(c)+"hijklmnop")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", " ", "é", "\xff", "\x80", "€", "\U0001F600", "\xf0\x9f", "0", "-"}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		in = append(in, b.String())
	}
	return in
}

func TestLowerASCIIAndRuneCountMatchCEL(t *testing.T) {
	for _, s := range strfastInputs() {
		if got, want := lowerASCII(s), refLowerASCII(s); got != want {
			t.Fatalf("lowerASCII(%q) = %q, want %q", s, got, want)
		}
		if got, want := runeCount(s), len([]rune(s)); got != want {
			t.Fatalf("runeCount(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestFastStringsSameResultsAndCosts evaluates string expressions with and
// without the replacements: values and tracked costs must be identical.
func TestFastStringsSameResultsAndCosts(t *testing.T) {
	env, err := cel.NewEnv(ext.Strings(), cel.OptionalTypes(), library.Regex(),
		cel.Variable("s", cel.StringType), cel.Variable("d", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	exprs := []string{
		`s.lowerAscii()`,
		`s.lowerAscii().contains("password")`,
		`s.contains("AKIA") || s.matches("AKIA[0-9A-Z]{16}")`,
		`matches(s, "^[a-z]+$")`,
		`s.matches("a.*Z")`,
		`s.lowerAscii().matches("password\\s*[=:]")`,
		`string(d).lowerAscii()`,
		`d.lowerAscii()`,
		`d.contains("x")`,
		`s.contains(s.lowerAscii())`,
		`s.upperAscii().lowerAscii() == s.lowerAscii()`,
		`optional.of(s).orValue("").lowerAscii()`,
	}
	base := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize, cel.OptTrackCost), cel.CostTracking(&library.CostEstimator{})}
	for _, src := range exprs {
		ast, iss := env.Compile(src)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		ref, err := env.Program(ast, base...)
		if err != nil {
			t.Fatal(err)
		}
		fast, err := env.Program(ast, append(base, fastStrings(), fastCostTrackers())...)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range strfastInputs()[:120] {
			for _, d := range []any{s, 42, []string{s}} {
				vars := map[string]any{"s": s, "d": d}
				want, wdet, werr := ref.Eval(vars)
				got, gdet, gerr := fast.Eval(vars)
				if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
					t.Fatalf("%s with s=%.40q d=%v: error %v, want %v", src, s, d, gerr, werr)
				}
				if werr == nil && got.Equal(want) != types.True {
					t.Fatalf("%s with s=%.40q: %v, want %v", src, s, got, want)
				}
				if wc, gc := *wdet.ActualCost(), *gdet.ActualCost(); wc != gc {
					t.Fatalf("%s with s=%.40q d=%v: cost %d, want %d", src, s, d, gc, wc)
				}
			}
		}
	}
}
