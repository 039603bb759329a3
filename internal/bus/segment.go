package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// A segment is one AUDIT message holding several events: one message per
// event costs JetStream more than vigil's own work (docs/benchmarks.md),
// and a few dozen events per message lift that floor about fivefold.
//
// Format 1, the only one so far, is JSON lines: each event compact, ended
// by "\n". It stays readable in `nats stream view`, and a reader finds the
// events with a byte search, since a compact JSON value has no newline
// (one inside a string is always escaped). The message carries the header
// HeaderSegment with the format's number, so that a later format can be
// read beside it; a message without the header is a single event, as
// older versions and the file source write.
const (
	// HeaderSegment names the format of a segment.
	HeaderSegment = "Vigil-Segment"
	// SegmentFormat is the format this version writes and reads.
	SegmentFormat = "1"
)

// Defaults of SegmentOptions, measured in docs/benchmarks.md: past 64
// events a message the messaging floor hardly rises, while each message
// held unacknowledged costs more memory.
const (
	DefaultSegmentEvents = 64
	DefaultSegmentBytes  = 256 << 10
)

// headerReserve is what a segment leaves of the server's max_payload for
// its headers (cluster, format, MsgID), which count toward the limit.
const headerReserve = 1 << 10

// SegmentOptions bound a segment: it is cut at whichever comes first.
// Zero fields take the defaults; the server's max_payload bounds Bytes
// whatever it is set to.
type SegmentOptions struct {
	// Events is the most events one segment holds (DefaultSegmentEvents).
	Events int
	// Bytes is the most bytes of events one segment holds
	// (DefaultSegmentBytes). An event larger than that is a segment of its
	// own, as long as it fits the server's max_payload.
	Bytes int
}

func (o SegmentOptions) withDefaults() SegmentOptions {
	if o.Events <= 0 {
		o.Events = DefaultSegmentEvents
	}
	if o.Bytes <= 0 {
		o.Bytes = DefaultSegmentBytes
	}
	return o
}

// Segment is a batch of events as one message.
type Segment struct {
	// Data is the events in format SegmentFormat.
	Data []byte
	// MsgID derives from the events' identities alone, so that cutting the
	// same events again gives the same MsgID and JetStream drops the copy.
	MsgID string
	// Events is how many events Data holds.
	Events int
}

// Cuts says where Cut cuts batch: ends[i] is one past the last event of
// segment i. The events too large for a message even alone count toward
// no segment and are listed by position, ascending; they may lie inside a
// segment's span or after the last one. The cut depends only on the
// events' sizes and the bounds, so the same batch is always cut the same
// way.
func Cuts(batch []audit.Raw, o SegmentOptions, maxPayload int) (ends, tooLarge []int) {
	o = o.withDefaults()
	limit := maxPayload - headerReserve
	budget := min(o.Bytes, limit)
	size, count := 0, 0
	for i, r := range batch {
		n := len(compact(r.Data)) + 1
		if n > limit {
			tooLarge = append(tooLarge, i)
			continue
		}
		if count > 0 && (count == o.Events || size+n > budget) {
			ends = append(ends, i)
			size, count = 0, 0
		}
		size += n
		count++
	}
	if count > 0 {
		ends = append(ends, len(batch))
	}
	return ends, tooLarge
}

// Cut joins batch into segments bounded by o, in order, never larger than
// maxPayload, each named by its events' identities. The events too large
// for a message even alone are left out and listed by position, ascending.
func Cut(batch []audit.Raw, o SegmentOptions, maxPayload int) (segments []Segment, tooLarge []int) {
	ends, tooLarge := Cuts(batch, o, maxPayload)
	limit := maxPayload - headerReserve
	from := 0
	for _, to := range ends {
		data, n, left := encode(batch[from:to], limit)
		segments = append(segments, Segment{Data: data, MsgID: contentID(batch[from:to], left, n), Events: n})
		from = to
	}
	return segments, tooLarge
}

// encode writes events as format SegmentFormat, leaving out those larger
// than limit alone (listed by position in events).
func encode(events []audit.Raw, limit int) (data []byte, n int, tooLarge []int) {
	// Sized first: a segment is a few hundred KiB, and growing a buffer to
	// that by doubling allocates it about twice over.
	size := 0
	for _, r := range events {
		size += len(r.Data) + 1
	}
	data = make([]byte, 0, size)
	for i, r := range events {
		line := compact(r.Data)
		if len(line)+1 > limit {
			tooLarge = append(tooLarge, i)
			continue
		}
		data = append(data, line...)
		data = append(data, '\n')
		n++
	}
	return data, n, tooLarge
}

// contentID names a segment by its events' identities: the same events
// always make the same MsgID, whatever bytes a retry sent.
// The events at positions left are not in the segment.
func contentID(events []audit.Raw, left []int, n int) string {
	ids := sha256.New()
	for i, r := range events {
		if len(left) > 0 && left[0] == i {
			left = left[1:]
			continue
		}
		ids.Write([]byte(r.AuditID))
		ids.Write([]byte{0})
		ids.Write([]byte(r.Stage))
		ids.Write([]byte{0})
	}
	sum := ids.Sum(nil)
	return "segment/" + strconv.Itoa(n) + "/" + hex.EncodeToString(sum[:16])
}

// compact returns data on one line. Events from kube-apiserver are already
// compact, so the scan that finds no newline is all it costs them.
func compact(data []byte) []byte {
	data = bytes.TrimSpace(data)
	if bytes.IndexByte(data, '\n') < 0 {
		return data
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		// Not JSON: the engine dead-letters it either way, and a newline
		// must not split it into two bad events.
		return bytes.ReplaceAll(data, []byte("\n"), []byte(" "))
	}
	return buf.Bytes()
}

// ErrSegmentFormat is returned for a segment of a format this version does
// not read: one written by a newer version during an upgrade.
var ErrSegmentFormat = errors.New("segment format not known to this version")

// SegmentEvents returns the events of an AUDIT message, as sub-slices of
// data: the message itself for a single event (no HeaderSegment), the
// lines of a segment.
func SegmentEvents(h nats.Header, data []byte) ([][]byte, error) {
	format := h.Get(HeaderSegment)
	switch format {
	case "":
		return [][]byte{data}, nil
	case SegmentFormat:
	default:
		return nil, fmt.Errorf("%w: %s %q (this version reads %s)", ErrSegmentFormat, HeaderSegment, format, SegmentFormat)
	}
	events := make([][]byte, 0, bytes.Count(data, []byte{'\n'})+1)
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		if len(bytes.TrimSpace(line)) > 0 {
			events = append(events, line)
		}
		data = rest
	}
	return events, nil
}
