package file

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/vigil-k8s/vigil/ingest"
)

// sampleBytes is how much of an over-long line is kept for its dead letter,
// as much as of an event too large to store: enough to recognise the
// event, small enough to always fit a message.
const sampleBytes = ingest.SampleBytes

// maxDeadLetterBytes caps the data of a dead letter (a malformed line can be
// up to max_line_bytes long) below NATS' default maximum message size.
const maxDeadLetterBytes = 512 << 10

// readBufferBytes is the read-ahead of the line reader. Lines longer than
// this are assembled in a separate buffer, bounded by the line limit.
const readBufferBytes = 64 << 10

// keepLineBytes is the largest buffer of a long line kept for the next
// one. Events with request and response bodies are often a few hundred
// KiB; allocating their buffer anew for each cost more than all other
// reading.
const keepLineBytes = 1 << 20

// errNoLine means no complete line is available yet: the reader is at the
// end of the data, possibly in the middle of a line that is still being
// written.
var errNoLine = errors.New("no complete line yet")

// line is one newline-terminated line of the file.
type line struct {
	// Data is the line without its newline. It is only valid until the
	// next call to next. For an over-long line it holds only the first
	// sampleBytes bytes.
	Data []byte
	// Offset is where the line starts in the file.
	Offset int64
	// Size is the length of the whole line without its newline.
	Size int64
	// TooLong reports that Size exceeds the reader's limit.
	TooLong bool
	// Number is the line's 1-based number in the file, 0 when unknown.
	Number int64
}

// lineReader splits a growing file into lines. It never holds more than
// max bytes of one line, so a line of any size costs bounded memory: the
// part over the limit is read and dropped. At the end of the data a partial
// line is kept and completed by later reads, so that a line the writer has
// not finished is never cut in two.
type lineReader struct {
	br  *bufio.Reader
	max int
	// off is the offset of the first byte of the line being assembled,
	// i.e. the end of the last complete line returned.
	off int64
	// acc holds the beginning of the pending line once it spans more than
	// one read; when over is set it holds only the sample.
	acc  []byte
	size int64 // bytes of the pending line read so far
	over bool
	// num is the number of the next line, 0 when unknown.
	num int64
}

// newLineReader reads r from offset, where line number num starts (0 if
// not known).
func newLineReader(r io.Reader, offset int64, max int, num int64) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, readBufferBytes), max: max, off: offset, num: num}
}

// numbered gives l the next line number.
func (lr *lineReader) numbered(l line) line {
	if lr.num > 0 {
		l.Number = lr.num
		lr.num++
	}
	return l
}

// countLines counts the lines that end before offset in r, so that lines
// read after a resume can be reported by number.
func countLines(r io.ReaderAt, offset int64) (int64, error) {
	buf := make([]byte, readBufferBytes)
	var n, pos int64
	for pos < offset {
		k, err := r.ReadAt(buf[:min(int64(len(buf)), offset-pos)], pos)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		pos += int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, err
		}
	}
	return n, nil
}

// Offset is the end of the last complete line returned: the position to
// resume from.
func (lr *lineReader) Offset() int64 { return lr.off }

// ReadPos is how far the underlying reader has been consumed.
func (lr *lineReader) ReadPos() int64 { return lr.off + lr.size + int64(lr.br.Buffered()) }

// Pending returns the partial line at the end of the data, if any, and
// forgets it; the caller decides what an unfinished line means (it only
// does when the file will not grow any more).
func (lr *lineReader) Pending() (line, bool) {
	if lr.size == 0 {
		return line{}, false
	}
	l := lr.numbered(line{Data: lr.acc, Offset: lr.off, Size: lr.size, TooLong: lr.over})
	lr.off += lr.size
	lr.reset()
	return l, true
}

func (lr *lineReader) reset() {
	if cap(lr.acc) > keepLineBytes {
		// Give a very large line's buffer back rather than keep it for
		// the life of the file.
		lr.acc = nil
	}
	lr.acc = lr.acc[:0]
	lr.size = 0
	lr.over = false
}

// next returns the next complete line. It returns errNoLine at the end of
// the data, and other errors from the underlying reader.
func (lr *lineReader) next() (line, error) {
	for {
		chunk, err := lr.br.ReadSlice('\n')
		complete := err == nil
		if complete {
			chunk = chunk[:len(chunk)-1]
		}
		if complete && lr.size == 0 {
			// The common case: the whole line is in the read buffer.
			l := line{Data: chunk, Offset: lr.off, Size: int64(len(chunk))}
			if len(chunk) > lr.max {
				l.TooLong = true
				l.Data = chunk[:min(sampleBytes, len(chunk))]
			}
			lr.off += int64(len(chunk)) + 1
			return lr.numbered(l), nil
		}
		lr.add(chunk)
		switch {
		case complete:
			l := lr.numbered(line{Data: lr.acc, Offset: lr.off, Size: lr.size, TooLong: lr.over})
			lr.off += lr.size + 1
			lr.reset()
			return l, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return line{}, errNoLine
		default:
			return line{}, err
		}
	}
}

// add appends part of the pending line, keeping at most max bytes of it,
// or only a sample once it is known to be too long.
func (lr *lineReader) add(chunk []byte) {
	lr.size += int64(len(chunk))
	if lr.over {
		if n := sampleBytes - len(lr.acc); n > 0 {
			lr.acc = append(lr.acc, chunk[:min(n, len(chunk))]...)
		}
		return
	}
	if lr.size > int64(lr.max) {
		lr.over = true
		keep := lr.acc[:min(len(lr.acc), sampleBytes)]
		sample := make([]byte, len(keep), sampleBytes)
		copy(sample, keep)
		lr.acc = sample
		if n := sampleBytes - len(lr.acc); n > 0 {
			lr.acc = append(lr.acc, chunk[:min(n, len(chunk))]...)
		}
		return
	}
	if need := len(lr.acc) + len(chunk); need > cap(lr.acc) {
		// Double rather than let append grow large slices by a quarter:
		// that would allocate several times the line limit on the way up.
		grown := make([]byte, len(lr.acc), min(max(2*cap(lr.acc), need), lr.max))
		copy(grown, lr.acc)
		lr.acc = grown
	}
	lr.acc = append(lr.acc, chunk...)
}
