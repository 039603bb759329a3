package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"
)

// corpusGz is a real kube-apiserver audit log (see testdata/NOTICE). Shipping
// it in the binary makes `vigil bench` reproducible anywhere.
//
//go:embed testdata/k8s.log.gz
var corpusGz []byte

// Kind is what an event of the workload is.
type Kind uint8

// Kinds of workload events.
const (
	// KindBenign is a line of the real-cluster log, replayed.
	KindBenign Kind = iota
	// KindAttack is an event the default rule pack detects.
	KindAttack
	// KindLarge is a RequestResponse event with 10–100 KiB bodies.
	KindLarge
)

// The mix is fixed per block of events so that its rates are exact for any
// number of events that is a multiple of the block, and known for any other.
const (
	blockSize       = 100
	attacksPerBlock = 1
	largePerBlock   = 2
	benignPerBlock  = blockSize - attacksPerBlock - largePerBlock

	minBody = 10 << 10
	maxBody = 100 << 10

	// timeLayout is how kube-apiserver writes event timestamps.
	timeLayout = "2006-01-02T15:04:05.000000Z"
)

// hole is a value a template leaves open.
type hole uint8

const (
	holeID       hole = iota // auditID
	holeReceived             // requestReceivedTimestamp
	holeStage                // stageTimestamp
	holeName                 // an object name, from the template's names
	holeFill                 // a body of 10–100 KiB
)

func holeOf(mark string) (hole, bool) {
	switch mark {
	case "{{id}}":
		return holeID, true
	case "{{rt}}":
		return holeReceived, true
	case "{{st}}":
		return holeStage, true
	case "{{name}}":
		return holeName, true
	case "{{fill}}":
		return holeFill, true
	}
	return 0, false
}

// template is an event line cut around the values that change from one
// replay to the next, so that writing an event is copying bytes.
type template struct {
	parts [][]byte // len(holes)+1
	holes []hole
	names []string
	// For corpus lines: which request (auditID) of the corpus the line
	// belongs to, and its times from the start of the corpus.
	request         int
	received, stage time.Duration
	// Rule is the default-pack rule an attack template triggers.
	Rule string
}

// Workload generates a deterministic stream of audit event lines from a
// seed: the real-cluster log replayed with fresh auditIDs and timestamps,
// with attacks and large RequestResponse events mixed in at fixed rates.
// Event i is the same for a seed whatever order events are asked in, and a
// Workload is safe for concurrent use.
type Workload struct {
	seed    uint64
	base    time.Time
	benign  []template
	span    time.Duration // one replay of the corpus, in event time
	attacks []template
	large   []template
	filler  []byte
	layout  [blockSize]slot
}

type slot struct {
	kind Kind
	// benignBefore counts the benign slots before this one in the block.
	benignBefore int
}

// NewWorkload builds the workload of seed.
func NewWorkload(seed uint64) (*Workload, error) {
	w := &Workload{seed: seed, base: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := w.loadCorpus(); err != nil {
		return nil, err
	}
	for _, src := range attackTemplates() {
		t, err := parseTemplate(src.json)
		if err != nil {
			return nil, fmt.Errorf("attack template %s: %w", src.rule, err)
		}
		t.names, t.Rule = src.names, src.rule
		w.attacks = append(w.attacks, t)
	}
	for _, src := range largeTemplates() {
		t, err := parseTemplate(src.json)
		if err != nil {
			return nil, fmt.Errorf("large template: %w", err)
		}
		t.names = src.names
		w.large = append(w.large, t)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6179))
	w.filler = makeFiller(rng, 2*maxBody)
	kinds := make([]Kind, blockSize)
	for i := range kinds {
		switch {
		case i < attacksPerBlock:
			kinds[i] = KindAttack
		case i < attacksPerBlock+largePerBlock:
			kinds[i] = KindLarge
		}
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	n := 0
	for i, k := range kinds {
		w.layout[i] = slot{kind: k, benignBefore: n}
		if k == KindBenign {
			n++
		}
	}
	return w, nil
}

// Rates are the shares of attack and large events in the workload.
func (w *Workload) Rates() (attack, large float64) {
	return float64(attacksPerBlock) / blockSize, float64(largePerBlock) / blockSize
}

// CorpusEvents is the number of lines of the real-cluster log.
func (w *Workload) CorpusEvents() int { return len(w.benign) }

// AttackRules are the rules the attack events are written to trigger.
func (w *Workload) AttackRules() []string {
	out := make([]string, len(w.attacks))
	for i, t := range w.attacks {
		out[i] = t.Rule
	}
	return out
}

func (w *Workload) loadCorpus() error {
	zr, err := gzip.NewReader(bytes.NewReader(corpusGz))
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	requests := map[string]int{}
	var start, end time.Time
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev struct {
			AuditID  string    `json:"auditID"`
			Received time.Time `json:"requestReceivedTimestamp"`
			Stage    time.Time `json:"stageTimestamp"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("corpus line %d: %w", n+1, err)
		}
		marked, err := markValues(line, map[string]string{"auditID": "{{id}}", "requestReceivedTimestamp": "{{rt}}", "stageTimestamp": "{{st}}"})
		if err != nil {
			return fmt.Errorf("corpus line %d: %w", n+1, err)
		}
		t, err := parseTemplate(marked)
		if err != nil {
			return fmt.Errorf("corpus line %d: %w", n+1, err)
		}
		id, ok := requests[ev.AuditID]
		if !ok {
			id = len(requests)
			requests[ev.AuditID] = id
		}
		t.request = id
		if start.IsZero() || ev.Received.Before(start) {
			start = ev.Received
		}
		end = maxTime(end, ev.Stage, ev.Received)
		t.received, t.stage = ev.Received.Sub(time.Time{}), ev.Stage.Sub(time.Time{})
		w.benign = append(w.benign, t)
	}
	if len(w.benign) == 0 {
		return errors.New("corpus is empty")
	}
	origin := start.Sub(time.Time{})
	for i := range w.benign {
		w.benign[i].received -= origin
		w.benign[i].stage -= origin
	}
	w.span = end.Sub(start).Truncate(time.Second) + 2*time.Second
	return nil
}

func maxTime(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// markValues replaces the string values of the given top-level keys of a
// compact JSON line by marks, keeping every other byte as the apiserver
// wrote it: a decoder's speed depends on field order and layout.
func markValues(line []byte, marks map[string]string) (string, error) {
	s := string(line)
	for key, mark := range marks {
		k := `"` + key + `":"`
		i := strings.Index(s, k)
		if i < 0 {
			return "", fmt.Errorf("no %s", key)
		}
		v := i + len(k)
		j := strings.IndexByte(s[v:], '"')
		if j < 0 {
			return "", fmt.Errorf("unterminated %s", key)
		}
		s = s[:v] + mark + s[v+j:]
	}
	return s, nil
}

func parseTemplate(s string) (template, error) {
	var t template
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			break
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return t, errors.New("unterminated mark")
		}
		h, ok := holeOf(s[i : i+j+2])
		if !ok {
			return t, fmt.Errorf("unknown mark %s", s[i:i+j+2])
		}
		t.parts = append(t.parts, []byte(s[:i]))
		t.holes = append(t.holes, h)
		s = s[i+j+2:]
	}
	t.parts = append(t.parts, []byte(s))
	if !json.Valid(t.render(nil)) {
		return t, errors.New("not valid JSON once filled")
	}
	return t, nil
}

// render fills a template with placeholder values, to check it is JSON.
func (t template) render(dst []byte) []byte {
	for i, h := range t.holes {
		dst = append(dst, t.parts[i]...)
		switch h {
		case holeReceived, holeStage:
			dst = time.Time{}.AppendFormat(dst, timeLayout)
		default:
			dst = append(dst, 'x')
		}
	}
	return append(dst, t.parts[len(t.parts)-1]...)
}

// makeFiller is JSON-safe text that looks like configuration: words and
// spaces, so that no credential pattern of the default pack can occur in it
// by chance.
func makeFiller(rng *rand.Rand, n int) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789-_."
	b := make([]byte, 0, n+16)
	for len(b) < n {
		for range 2 + rng.IntN(8) {
			b = append(b, letters[rng.IntN(len(letters))])
		}
		b = append(b, ' ')
	}
	return b[:n]
}

// mix is splitmix64: event i's choices are a function of (seed, i) alone.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Event appends event i (one JSON line, without newline) to dst.
func (w *Workload) Event(dst []byte, i int) ([]byte, Kind) {
	s := w.layout[i%blockSize]
	j := (i/blockSize)*benignPerBlock + s.benignBefore // benign events before i
	if s.kind == KindBenign {
		iter, k := j/len(w.benign), j%len(w.benign)
		t := &w.benign[k]
		at := w.base.Add(time.Duration(iter) * w.span)
		h := mix(w.seed ^ mix(uint64(iter)<<32|uint64(t.request)))
		return w.fill(dst, t, h, at.Add(t.received), at.Add(t.stage)), KindBenign
	}
	// A generated event happens right after the benign event before it.
	at := w.base
	if j > 0 {
		iter, k := (j-1)/len(w.benign), (j-1)%len(w.benign)
		at = at.Add(time.Duration(iter)*w.span + w.benign[k].received + time.Millisecond)
	}
	h := mix(w.seed ^ mix(uint64(i)|1<<63))
	ts := w.large
	if s.kind == KindAttack {
		ts = w.attacks
	}
	t := &ts[h%uint64(len(ts))]
	return w.fill(dst, t, h, at, at.Add(3*time.Millisecond)), s.kind
}

func (w *Workload) fill(dst []byte, t *template, h uint64, received, stage time.Time) []byte {
	for n, hl := range t.holes {
		dst = append(dst, t.parts[n]...)
		switch hl {
		case holeID:
			dst = appendUUID(dst, h, mix(h))
		case holeReceived:
			dst = received.AppendFormat(dst, timeLayout)
		case holeStage:
			dst = stage.AppendFormat(dst, timeLayout)
		case holeName:
			dst = append(dst, t.names[(h>>8)%uint64(len(t.names))]...)
		case holeFill:
			size := minBody + int((h>>20)%uint64(maxBody-minBody+1))
			off := int((h >> 40) % uint64(len(w.filler)-size+1))
			dst = append(dst, w.filler[off:off+size]...)
		}
	}
	return append(dst, t.parts[len(t.parts)-1]...)
}

// appendUUID writes a version-4-shaped UUID from 128 bits.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	const hex = "0123456789abcdef"
	var b [16]byte
	for k := range 8 {
		b[k] = byte(hi >> (56 - 8*k))
		b[8+k] = byte(lo >> (56 - 8*k))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	for k, c := range b {
		if k == 4 || k == 6 || k == 8 || k == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[c>>4], hex[c&0x0f])
	}
	return dst
}

// WriteFile writes events [from, from+n) to path as JSON lines.
func (w *Workload) WriteFile(path string, from, n int) (bytesWritten int64, err error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	for i := from; i < from+n; i++ {
		buf, _ = w.Event(buf[:0], i)
		buf = append(buf, '\n')
		m, err := bw.Write(buf)
		bytesWritten += int64(m)
		if err != nil {
			return bytesWritten, err
		}
	}
	return bytesWritten, bw.Flush()
}

// EventList appends an EventList body holding events [from, from+n), as
// kube-apiserver's webhook backend posts it.
func (w *Workload) EventList(dst []byte, from, n int) []byte {
	dst = append(dst, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`...)
	for i := from; i < from+n; i++ {
		if i > from {
			dst = append(dst, ',')
		}
		dst, _ = w.Event(dst, i)
	}
	return append(dst, "]}"...)
}
