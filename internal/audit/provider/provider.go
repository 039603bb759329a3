// Package provider turns the records managed Kubernetes services deliver
// into audit.k8s.io/v1 Events, so that rules written for kube-apiserver's
// own events read them unchanged:
//
//   - GKE: Cloud Logging LogEntry records with a Cloud Audit Logs
//     protoPayload (methodName io.k8s...), which are converted field by field;
//   - AKS: Azure diagnostic records (categories kube-audit and
//     kube-audit-admin), whose properties.log holds the apiserver's Event,
//     one record or a {"records": [...]} document;
//   - EKS: CloudWatch Logs events, as the CLI's filter-log-events and
//     get-log-events print them, as a subscription filter delivers them, one
//     event object, or a line of an export to S3 ("<timestamp> <message>");
//     the message is the apiserver's Event;
//   - the apiserver's own Events and EventLists.
//
// It knows nothing of transports: a source hands it the bytes of one record
// (a line, a message) and publishes what comes back.
package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/jsonscan"
)

// Format is the shape a record came in.
type Format string

// The formats Decode recognises.
const (
	FormatEvent      Format = "event"
	FormatEventList  Format = "eventlist"
	FormatGKE        Format = "gke"
	FormatAKS        Format = "aks"
	FormatCloudWatch Format = "cloudwatch"
)

// Name is how the format is called in messages and summaries.
func (f Format) Name() string {
	switch f {
	case FormatEvent:
		return "audit Event"
	case FormatEventList:
		return "audit EventList"
	case FormatGKE:
		return "GKE LogEntry"
	case FormatAKS:
		return "AKS diagnostic record"
	case FormatCloudWatch:
		return "CloudWatch Logs event"
	}
	return string(f)
}

var (
	// ErrNotAudit marks a well-formed record of a known shape that holds
	// no Kubernetes audit event: a Cloud Audit entry of another Google
	// service, an AKS record of another category, CloudWatch's control
	// message. Replay counts it apart from malformed input; each source
	// decides (the gke source dead-letters it: its log sink's filter
	// should have kept it out).
	ErrNotAudit = errors.New("not a Kubernetes audit record")
	// ErrTruncated marks an event that its provider cut short, so that it
	// is no longer JSON: CloudWatch Logs cuts events over its size limit,
	// AKS long properties.log strings.
	ErrTruncated = errors.New("cut short by the provider")
)

// Item is one part of a record: an event, or why that part holds none.
type Item struct {
	// Raw is the event, valid when Err is nil. Its Data may share the
	// record's memory.
	Raw audit.Raw
	// Err says why this part of the record is not a usable event.
	Err error
	// Path is where the part is in the record, as "records[3]" or
	// "events[0].message"; empty for a record that is one event.
	Path string
	// Offset is the byte offset at which the part starts in the record,
	// once the space around the record is trimmed.
	Offset int
}

// Batch is what Decode found in one record, in record order.
type Batch struct {
	Format Format
	Items  []Item
}

// Raws returns the batch's events.
func (b Batch) Raws() []audit.Raw {
	out := make([]audit.Raw, 0, len(b.Items))
	for _, it := range b.Items {
		if it.Err == nil {
			out = append(out, it.Raw)
		}
	}
	return out
}

// ItemError is the error of an item, naming where it was in the record.
func (it Item) ItemError() error {
	if it.Err == nil || it.Path == "" {
		return it.Err
	}
	return fmt.Errorf("%s: %w", it.Path, it.Err)
}

// Decode reads one record of any format this package knows. An error means
// the record as a whole could not be read (malformed JSON, a shape of no
// known format); Batch.Format is set whenever the shape was recognised,
// also then. Otherwise each item is an event or says why its part of the
// record is not one, so one bad item of a document does not cost the rest.
func Decode(record []byte) (Batch, error) {
	record = bytes.TrimSpace(record)
	if len(record) == 0 {
		return Batch{}, errors.New("empty record")
	}
	switch record[0] {
	case '{':
		return decodeObject(record)
	case '[':
		return decodeArray(record)
	}
	if b, ok := decodeExportLine(record); ok {
		return b, nil
	}
	return Batch{}, fmt.Errorf("not JSON: starts with %q", firstBytes(record, 16))
}

func firstBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Members of a record's top level that tell its format.
const (
	mKind = iota + 1
	mProtoPayload
	mRecords
	mProperties
	mCategory
	mEvents
	mLogEvents
	mMessageType
	mMessage
	mAuditID
)

var topNames = []string{"kind", "protoPayload", "records", "properties", "category", "events",
	"logEvents", "messageType", "message", "auditID"}

// top is what decodeObject reads of a record's top level: the members that
// tell its format, as sub-slices of the record.
type top struct {
	raw         [mAuditID + 1][]byte
	kind        string
	messageType string
}

func (t *top) has(m int) bool { return t.raw[m] != nil }

func readTop(record []byte) (*top, error) {
	t := &top{}
	d := jsonscan.NewDecoder(record, jsonscan.Options{})
	err := d.Document(func() error {
		return d.Members(1, func(key []byte) error {
			name := jsonscan.Canonical(key, topNames)
			m := 0
			for i, n := range topNames {
				if n == name {
					m = i + 1
				}
			}
			if m == 0 {
				return d.Skip(1)
			}
			raw, err := d.Raw(1)
			t.raw[m] = raw
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	// A kind that is not a string is the event decoder's to report.
	_ = json.Unmarshal(t.raw[mKind], &t.kind)
	_ = json.Unmarshal(t.raw[mMessageType], &t.messageType)
	return t, nil
}

func decodeObject(record []byte) (Batch, error) {
	t, err := readTop(record)
	if err != nil {
		return Batch{}, err
	}
	switch {
	case t.has(mProtoPayload):
		return Batch{Format: FormatGKE, Items: []Item{gkeItem(record)}}, nil
	case t.has(mRecords):
		return aksDocument(record, t.raw[mRecords])
	case t.has(mProperties) || t.has(mCategory):
		return Batch{Format: FormatAKS, Items: []Item{aksItem(record)}}, nil
	case t.has(mLogEvents) || t.has(mMessageType):
		return cloudWatchSubscription(record, t)
	case t.has(mEvents):
		return cloudWatchList(record, t.raw[mEvents], "events")
	case t.kind == "EventList":
		return eventList(record)
	case t.has(mMessage) && t.kind == "" && !t.has(mAuditID):
		return Batch{Format: FormatCloudWatch, Items: []Item{cloudWatchEvent(record)}}, nil
	}
	r, err := audit.ParseRaw(record)
	return Batch{Format: FormatEvent, Items: []Item{{Raw: r, Err: err}}}, nil
}

// decodeArray reads a JSON array of records, as `gcloud logging read
// --format=json` prints LogEntries: every item must have the format of the
// first.
func decodeArray(record []byte) (Batch, error) {
	d := jsonscan.NewDecoder(record, jsonscan.Options{})
	items, err := d.RawList(0, true, "[]")
	if err != nil {
		return Batch{}, fmt.Errorf("malformed JSON: %w", err)
	}
	var out Batch
	for i, item := range items {
		path, off := fmt.Sprintf("[%d]", i), offset(record, item)
		if len(item) == 0 || item[0] != '{' {
			out.Items = append(out.Items, Item{Err: errors.New("not an object"), Path: path, Offset: off})
			continue
		}
		b, err := decodeObject(item)
		if err != nil {
			out.Items = append(out.Items, Item{Err: err, Path: path, Offset: off})
			continue
		}
		if out.Format == "" {
			out.Format = b.Format
		}
		for _, it := range b.Items {
			if b.Format != out.Format && it.Err == nil {
				it.Err = fmt.Errorf("is an %s, the list holds %s records", b.Format.Name(), out.Format.Name())
			}
			it.Path = joinPath(path, it.Path)
			it.Offset += off
			out.Items = append(out.Items, it)
		}
	}
	return out, nil
}

// eventList splits an EventList, each item an event of its own.
func eventList(record []byte) (Batch, error) {
	_, _, items, err := audit.SplitList(record)
	if err != nil {
		return Batch{Format: FormatEventList}, fmt.Errorf("malformed audit EventList: %w", err)
	}
	out := Batch{Format: FormatEventList, Items: make([]Item, 0, len(items))}
	for i, item := range items {
		r, err := audit.ParseRaw(item)
		out.Items = append(out.Items, Item{Raw: r, Err: err, Path: fmt.Sprintf("items[%d]", i), Offset: offset(record, item)})
	}
	return out, nil
}

// rawItems splits list, a JSON array, into its elements, sub-slices of it.
func rawItems(list []byte, field string) ([][]byte, error) {
	d := jsonscan.NewDecoder(list, jsonscan.Options{})
	items, err := d.RawList(1, true, field)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return items, nil
}

// member returns the raw value of the top-level member name of the JSON
// object obj (matched as encoding/json matches names), a sub-slice of obj;
// nil when there is none.
func member(obj []byte, name string) ([]byte, error) {
	var raw []byte
	names := []string{name}
	d := jsonscan.NewDecoder(obj, jsonscan.Options{})
	err := d.Document(func() error {
		return d.Members(1, func(key []byte) error {
			if jsonscan.Canonical(key, names) != name {
				return d.Skip(1)
			}
			var err error
			raw, err = d.Raw(1)
			return err
		})
	})
	return raw, err
}

// offset is where sub, a sub-slice of b, starts in b.
func offset(b, sub []byte) int { return cap(b) - cap(sub) }

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case b[0] == '[':
		return a + b
	}
	return a + "." + b
}
