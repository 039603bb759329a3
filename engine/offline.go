package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/provider"
	"github.com/vigil-k8s/vigil/rules"
)

// maxReplayLine bounds one line of an audit log read by Replay. kube-apiserver
// writes RequestResponse events with whole objects; anything larger than this
// is not an audit event worth holding in memory.
const maxReplayLine = 64 << 20

// ReplayOptions configures Replay. Only OnAlert is required.
type ReplayOptions struct {
	// Stdin is read for the file name "-"; nil means os.Stdin.
	Stdin io.Reader
	// OnAlert receives each alert once, in log order.
	OnAlert func(*alert.Alert) error
	// OnMalformed receives lines, and parts of records, that are not
	// audit events; they are skipped. errors.Is(err, provider.ErrNotAudit)
	// tells a record that holds none (another service's, another log
	// category's) from a bad one.
	OnMalformed func(file string, line int, err error)
	// OnRuleError receives rules that failed to evaluate on an event.
	OnRuleError func(ruleID string, err error)
}

// ReplayStats summarises a replay.
type ReplayStats struct {
	Events int
	// Formats counts the events by the format of the record that held
	// them.
	Formats   map[provider.Format]int
	Malformed int
	// NotAudit counts the records, or parts of them, that hold no
	// Kubernetes audit event (provider.ErrNotAudit).
	NotAudit int
	Alerts   int
	// PerRule counts alerts by rule id.
	PerRule map[string]int
	// Matches counts the requests each rule's condition held on, by rule
	// id; Excepted those of them an exception suppressed, by rule id and
	// exception; Suppressed those a suppression window held back. A
	// request seen at several stages counts once.
	Matches    map[string]int
	Excepted   map[string]map[string]int
	Suppressed map[string]int
	// RuleErrors counts evaluation errors by rule id.
	RuleErrors map[string]int
}

// Replay evaluates set over audit log files without NATS, with thresholds
// kept in memory. An alert seen again (a later stage of the same request) is
// reported once. Each line is a record of any format provider.Decode reads,
// told apart line by line: an Event, an EventList, a GKE LogEntry, an AKS
// diagnostic record or {"records": [...]} document, a CloudWatch Logs event,
// output or export line. A file whose first line is only "{" or "[" is
// JSON documents spanning lines (the output of aws, gcloud or jq .), read
// whole up to maxReplayLine.
func Replay(ctx context.Context, set *rules.Set, files []string, opts ReplayOptions) (ReplayStats, error) {
	st := ReplayStats{Formats: map[provider.Format]int{}, PerRule: map[string]int{}, RuleErrors: map[string]int{},
		Matches: map[string]int{}, Excepted: map[string]map[string]int{}, Suppressed: map[string]int{}}
	if opts.OnAlert == nil {
		return st, errors.New("replay needs an alert handler")
	}
	stdin := opts.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	// Each request is counted once per rule and outcome, however many of
	// its stages match.
	matched, counted := map[[2]string]bool{}, map[Outcome]bool{}
	ev := NewEvaluator(set, NewMemoryThresholds(), WithErrorHandler(func(id string, err error) {
		st.RuleErrors[id]++
		if opts.OnRuleError != nil {
			opts.OnRuleError(id, err)
		}
	}), WithOutcomes(func(o Outcome) {
		if req := [2]string{o.Rule, o.AuditID}; !matched[req] {
			matched[req] = true
			st.Matches[o.Rule]++
		}
		if counted[o] {
			return
		}
		counted[o] = true
		switch {
		case o.Exception != "":
			if st.Excepted[o.Rule] == nil {
				st.Excepted[o.Rule] = map[string]int{}
			}
			st.Excepted[o.Rule][o.Exception]++
		case o.Suppressed:
			st.Suppressed[o.Rule]++
		}
	}))
	r := &replayer{ev: ev, opts: opts, st: &st, seen: map[string]bool{}}
	for _, name := range files {
		if name == "-" {
			if err := r.file(ctx, name, stdin); err != nil {
				return st, err
			}
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return st, fmt.Errorf("replay: %w", err)
		}
		err = r.file(ctx, name, f)
		f.Close()
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

type replayer struct {
	ev   *Evaluator
	opts ReplayOptions
	st   *ReplayStats
	seen map[string]bool
}

func (r *replayer) malformed(file string, line int, err error) {
	if errors.Is(err, provider.ErrNotAudit) {
		r.st.NotAudit++
	} else {
		r.st.Malformed++
	}
	if r.opts.OnMalformed != nil {
		r.opts.OnMalformed(file, line, err)
	}
}

func (r *replayer) file(ctx context.Context, name string, in io.Reader) error {
	br := bufio.NewReaderSize(in, 1<<20)
	var event audit.Event
	first := true
	for line := 1; ; line++ {
		data, tooLong, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("replay %s:%d: %w", name, line, err)
		}
		if tooLong {
			r.malformed(name, line, fmt.Errorf("line longer than %d bytes", maxReplayLine))
		} else if data = bytes.TrimSpace(data); len(data) > 0 {
			if first && (string(data) == "{" || string(data) == "[") {
				return r.documents(ctx, name, line, data, br, &event)
			}
			first = false
			if err := r.line(ctx, name, line, data, &event); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

// documents reads the rest of a file of JSON documents that span lines,
// from its first line (number line, holding start), each document a
// record.
func (r *replayer) documents(ctx context.Context, name string, line int, start []byte, br *bufio.Reader, event *audit.Event) error {
	data := append(append([]byte{}, start...), '\n')
	rest, err := io.ReadAll(io.LimitReader(br, maxReplayLine+1-int64(len(data))))
	if err != nil {
		return fmt.Errorf("replay %s: %w", name, err)
	}
	data = append(data, rest...)
	if len(data) > maxReplayLine {
		r.malformed(name, line, fmt.Errorf("a JSON document spanning lines is read whole, and this file is over %d bytes: "+
			"make it JSON lines (jq -c) to replay it", maxReplayLine))
		return nil
	}
	lineAt := func(off int) int { return line + bytes.Count(data[:off], []byte("\n")) }
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var doc json.RawMessage
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		end := int(dec.InputOffset())
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				end = int(se.Offset)
			}
			r.malformed(name, lineAt(min(end, len(data))), fmt.Errorf("malformed JSON document, the rest of the file is skipped: %w", err))
			return nil
		}
		off := end - len(doc)
		if err := r.record(ctx, name, data[off:end], nil, func(o int) int { return lineAt(off + o) }, event); err != nil {
			return err
		}
	}
}

// readLine returns the next line. One that fits the reader's buffer is
// returned in place, valid until the next read: copying every line cost
// more than decoding it. Longer ones are assembled in memory of their own.
func readLine(br *bufio.Reader) (data []byte, tooLong bool, err error) {
	chunk, err := br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return chunk, false, err
	}
	data = append(data, chunk...)
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(data)+len(chunk) > maxReplayLine {
				tooLong, data = true, nil
			} else {
				data = append(data, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return data, tooLong, err
	}
}

func (r *replayer) line(ctx context.Context, name string, n int, data []byte, event *audit.Event) error {
	// data is the reader's buffer: the event must copy its strings, as
	// alerts made from it outlive the next read. The apiserver's own
	// events, the common case, are decoded as they are first.
	err := audit.DecodeInto(data, event)
	if err == nil {
		r.st.Formats[provider.FormatEvent]++
		return r.event(ctx, event)
	}
	return r.record(ctx, name, data, err, func(int) int { return n }, event)
}

// record evaluates the events of one record, of whatever format, lineOf
// giving the line of an offset in it. eventErr is the event decoder's
// error on the whole record, if it was tried: for a record of no known
// format it says best what is wrong.
func (r *replayer) record(ctx context.Context, name string, data []byte, eventErr error, lineOf func(int) int, event *audit.Event) error {
	b, err := provider.Decode(data)
	if eventErr != nil && (b.Format == "" || b.Format == provider.FormatEvent) {
		r.malformed(name, lineOf(0), eventErr)
		return nil
	}
	if err != nil {
		r.malformed(name, lineOf(0), err)
		return nil
	}
	for _, it := range b.Items {
		if it.Err != nil {
			r.malformed(name, lineOf(it.Offset), it.ItemError())
			continue
		}
		if err := audit.DecodeInto(it.Raw.Data, event); err != nil {
			if it.Path != "" {
				err = fmt.Errorf("%s: %w", it.Path, err)
			}
			r.malformed(name, lineOf(it.Offset), err)
			continue
		}
		r.st.Formats[b.Format]++
		if err := r.event(ctx, event); err != nil {
			return err
		}
	}
	return nil
}

func (r *replayer) event(ctx context.Context, event *audit.Event) error {
	r.st.Events++
	alerts, err := r.ev.Evaluate(ctx, event)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	for _, a := range alerts {
		if r.seen[a.ID] {
			continue
		}
		r.seen[a.ID] = true
		r.st.Alerts++
		r.st.PerRule[a.Rule]++
		if err := r.opts.OnAlert(a); err != nil {
			return err
		}
	}
	return nil
}
