package file

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// growing is a file that a writer appends to between reads.
type growing struct{ buf bytes.Buffer }

func (g *growing) Read(p []byte) (int, error) {
	if g.buf.Len() == 0 {
		return 0, io.EOF
	}
	return g.buf.Read(p)
}

// collect returns the complete lines available now.
func collect(t *testing.T, lr *lineReader) []string {
	t.Helper()
	var out []string
	for {
		l, err := lr.next()
		if errors.Is(err, errNoLine) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.TooLong {
			out = append(out, "TOOLONG:"+string(l.Data))
			continue
		}
		out = append(out, string(l.Data))
	}
}

func TestLineReaderWaitsForTheNewline(t *testing.T) {
	g := &growing{}
	lr := newLineReader(g, 100, 1<<20, 0)
	g.buf.WriteString("one\ntw")
	if got := collect(t, lr); !equal(got, "one") {
		t.Fatalf("lines = %q, want [one]: a partial line must wait", got)
	}
	if lr.Offset() != 104 {
		t.Errorf("Offset = %d, want 104 (after the complete line only)", lr.Offset())
	}
	g.buf.WriteString("o\n\nthree")
	if got := collect(t, lr); !equal(got, "two", "") {
		t.Fatalf("lines = %q, want [two, \"\"]", got)
	}
	g.buf.WriteString("\n")
	if got := collect(t, lr); !equal(got, "three") {
		t.Fatalf("lines = %q, want [three]", got)
	}
	if lr.Offset() != 100+int64(len("one\ntwo\n\nthree\n")) {
		t.Errorf("Offset = %d, want the end of the data", lr.Offset())
	}
}

func TestLineReaderAssemblesLinesLongerThanItsBuffer(t *testing.T) {
	long := strings.Repeat("x", 3*readBufferBytes+17)
	g := &growing{}
	lr := newLineReader(g, 0, 4*readBufferBytes, 0)
	g.buf.WriteString(long[:readBufferBytes+5])
	if got := collect(t, lr); len(got) != 0 {
		t.Fatalf("got %d lines before the newline", len(got))
	}
	g.buf.WriteString(long[readBufferBytes+5:] + "\nshort\n")
	got := collect(t, lr)
	if len(got) != 2 || got[0] != long || got[1] != "short" {
		t.Fatalf("got %d lines (first %d bytes), want the long line whole then short", len(got), len(got[0]))
	}
}

// endless is a line of n bytes followed by a newline and a short line,
// generated without holding it in memory.
type endless struct {
	n, pos int64
	block  []byte
}

func (e *endless) Read(p []byte) (int, error) {
	tail := "\nnext\n"
	switch {
	case e.pos < e.n:
		n := int(min(int64(len(p)), e.n-e.pos))
		if len(e.block) < n {
			e.block = bytes.Repeat([]byte{'a'}, n)
		}
		copy(p[:n], e.block)
		e.pos += int64(n)
		return n, nil
	case e.pos < e.n+int64(len(tail)):
		n := copy(p, tail[e.pos-e.n:])
		e.pos += int64(n)
		return n, nil
	}
	return 0, io.EOF
}

func TestLineReaderStreamsThroughA100MiBLineInBoundedMemory(t *testing.T) {
	const size = 100 << 20
	const limit = 16 << 20
	lr := newLineReader(&endless{n: size}, 0, limit, 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := lr.next()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !l.TooLong || l.Size != size || len(l.Data) != sampleBytes || l.Offset != 0 {
		t.Fatalf("got line of %d bytes (tooLong %v, sample %d, offset %d), want a too-long %d-byte line with a %d-byte sample", l.Size, l.TooLong, len(l.Data), l.Offset, size, sampleBytes)
	}
	// Holding the line up to the limit is allowed; reading all of it is not.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*limit {
		t.Errorf("reading the line allocated %d MiB, want at most %d MiB", alloc>>20, 3*limit>>20)
	}
	next, err := lr.next()
	if err != nil || string(next.Data) != "next" || next.Offset != size+1 {
		t.Fatalf("line after it = %q at %d (%v), want \"next\" at %d", next.Data, next.Offset, err, size+1)
	}
}

func TestLineReaderPendingHandsOverTheUnfinishedLine(t *testing.T) {
	g := &growing{}
	lr := newLineReader(g, 0, 1<<20, 0)
	g.buf.WriteString("done\nhalf")
	collect(t, lr)
	l, ok := lr.Pending()
	if !ok || string(l.Data) != "half" || l.Offset != 5 {
		t.Fatalf("Pending = %q at %d (%v), want \"half\" at 5", l.Data, l.Offset, ok)
	}
	if _, ok := lr.Pending(); ok {
		t.Error("Pending returned the same line twice")
	}
}

func equal(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// FuzzLineReader checks that however a file is split into writes, the
// lines read are exactly its lines, with the right offsets, and that too
// long lines are reported as such.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), uint8(3), uint16(2))
	f.Add([]byte(strings.Repeat("x", 5000)+"\ny\n"), uint8(7), uint16(100))
	f.Add([]byte("\n\n\n"), uint8(1), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, step uint8, max uint16) {
		limit := int(max)
		g := &growing{}
		lr := newLineReader(g, 0, limit, 0)
		var got []line
		chunk := int(step) + 1
		for i := 0; i < len(data); i += chunk {
			g.buf.Write(data[i:min(i+chunk, len(data))])
			for {
				l, err := lr.next()
				if errors.Is(err, errNoLine) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				l.Data = bytes.Clone(l.Data)
				got = append(got, l)
			}
		}
		wantLines := bytes.Split(data, []byte("\n"))
		wantLines = wantLines[:len(wantLines)-1] // the part after the last newline is pending
		if len(got) != len(wantLines) {
			t.Fatalf("read %d lines, want %d", len(got), len(wantLines))
		}
		var off int64
		for i, w := range wantLines {
			l := got[i]
			if l.Offset != off || l.Size != int64(len(w)) {
				t.Fatalf("line %d at %d size %d, want at %d size %d", i, l.Offset, l.Size, off, len(w))
			}
			if tooLong := len(w) > limit; l.TooLong != tooLong {
				t.Fatalf("line %d of %d bytes: TooLong %v with limit %d", i, len(w), l.TooLong, limit)
			}
			want := w
			if l.TooLong {
				want = w[:min(len(w), sampleBytes)]
			}
			if !bytes.Equal(l.Data, want) {
				t.Fatalf("line %d = %q, want %q", i, l.Data, want)
			}
			off += int64(len(w)) + 1
		}
		if lr.Offset() != off {
			t.Fatalf("Offset = %d, want %d", lr.Offset(), off)
		}
	})
}

func TestLineNumbersCountBlankLinesAndResume(t *testing.T) {
	data := "a\n\nbad\nc\n"
	lr := newLineReader(strings.NewReader(data), 0, 1<<20, 1)
	var nums []int64
	for {
		l, err := lr.next()
		if err != nil {
			break
		}
		nums = append(nums, l.Number)
	}
	if fmt.Sprint(nums) != "[1 2 3 4]" {
		t.Fatalf("line numbers = %v, want [1 2 3 4]", nums)
	}
	// Resuming at the offset of "c" must number it 4.
	n, err := countLines(strings.NewReader(data), int64(strings.Index(data, "c")))
	if err != nil || n != 3 {
		t.Fatalf("countLines = %d, %v; want 3", n, err)
	}
}
