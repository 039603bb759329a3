package audit

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vigil-k8s/vigil/internal/audit/jsonscan"
)

// Known apiVersions of audit events. An empty apiVersion is accepted too:
// webhook captures of older apiservers often lack it.
const (
	APIVersionV1      = "audit.k8s.io/v1"
	APIVersionV1beta1 = "audit.k8s.io/v1beta1"
)

// ErrWrongKind marks a well-formed JSON object that is not an audit Event.
var ErrWrongKind = errors.New("not an audit Event")

// MaxDepth is the deepest nesting any decoding accepts; ParseRawDepth can
// be given less.
const MaxDepth = jsonscan.MaxDepth

// ErrTooDeep matches (errors.Is) an error of a document nested deeper than
// the limit it was decoded with.
var ErrTooDeep = jsonscan.ErrTooDeep

// Raw is one audit event as received, with the identity ingest needs to
// publish it. Data is the event's JSON exactly as it arrived.
type Raw struct {
	Data    []byte
	AuditID string
	Stage   string
}

// MsgID is the JetStream de-duplication id of the event: a request is
// logged once per stage, and each stage is a distinct event.
func (r Raw) MsgID() string { return r.AuditID + "/" + r.Stage }

// Decode parses one audit event. It rejects malformed JSON, objects of a
// different kind (ErrWrongKind), unknown apiVersions and events without an
// auditID or stage, which could not be identified downstream. As with
// DecodeInto, the event's bodies are sub-slices of data.
func Decode(data []byte) (*Event, error) {
	ev := &Event{}
	if err := DecodeInto(data, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// DecodeInto is Decode into an Event the caller owns, so that a hot loop can
// reuse one. ev is reset first.
//
// ev.RequestObject and ev.ResponseObject are sub-slices of data, not copies:
// bodies can be large and are mostly never read. data must stay unchanged
// for as long as they are in use. Every other value is a copy.
func DecodeInto(data []byte, ev *Event) error {
	return decodeInto(data, ev, false)
}

// DecodeShared is DecodeInto for a caller that never changes data once
// decoded (a message's own payload, a freshly read line): ev's strings
// share data's memory wherever they needed no unescaping, instead of being
// copied, which was a third of the cost of decoding an event. data must
// never be written again: strings taken from ev may be kept (in alerts, or
// by address in rule evaluation's caches), and the garbage collector keeps
// data alive as long as they are.
func DecodeShared(data []byte, ev *Event) error {
	return decodeInto(data, ev, true)
}

func decodeInto(data []byte, ev *Event, shared bool) error {
	*ev = Event{}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return errors.New("empty event")
	}
	d := jsonscan.NewDecoder(data, jsonscan.Options{Shared: shared})
	if err := d.Document(func() error { return decodeEvent(&d, ev, 1) }); err != nil {
		return fmt.Errorf("malformed audit event: %w", err)
	}
	return validate(ev)
}

func validate(ev *Event) error {
	return validateHeader(ev.Kind, ev.APIVersion, ev.AuditID, ev.Stage)
}

func validateHeader(kind, apiVersion, auditID, stage string) error {
	if kind != "" && kind != "Event" {
		return fmt.Errorf("%w: kind %q", ErrWrongKind, kind)
	}
	switch apiVersion {
	case "", APIVersionV1, APIVersionV1beta1:
	default:
		return fmt.Errorf("%w: apiVersion %q", ErrWrongKind, apiVersion)
	}
	if auditID == "" {
		return errors.New("audit event has no auditID")
	}
	if stage == "" {
		return errors.New("audit event has no stage")
	}
	return nil
}

// Members of what ParseRaw and ParseBody decode: an event's identity and a
// list's envelope.
const (
	fUnknown = iota
	fKind
	fAPIVersion
	fAuditID
	fStage
	fItems
)

func headerField(name string) int {
	switch name {
	case "kind":
		return fKind
	case "apiVersion":
		return fAPIVersion
	case "auditID":
		return fAuditID
	case "stage":
		return fStage
	}
	return fUnknown
}

func listField(name string) int {
	switch name {
	case "kind":
		return fKind
	case "apiVersion":
		return fAPIVersion
	case "items":
		return fItems
	}
	return fUnknown
}

// ParseRaw checks that data is one well-formed audit event and identifies
// it, keeping the original bytes. Only the identifying fields are decoded:
// ingest does not need the rest, and the engine decodes it fully.
func ParseRaw(data []byte) (Raw, error) {
	return ParseRawDepth(data, MaxDepth)
}

// ParseRawDepth is ParseRaw refusing an event nested deeper than depth
// levels (at most MaxDepth); errors.Is(err, ErrTooDeep) tells that case.
func ParseRawDepth(data []byte, depth int) (Raw, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return Raw{}, errors.New("empty event")
	}
	var kind, apiVersion, auditID, stage string
	d := jsonscan.NewDecoder(data, jsonscan.Options{MaxDepth: depth})
	err := d.Document(func() error {
		return d.Members(1, func(key []byte) error {
			f := headerField(string(key))
			if f == fUnknown {
				f = headerField(jsonscan.Canonical(key, []string{"kind", "apiVersion", "auditID", "stage"}))
			}
			switch f {
			case fKind:
				return d.String(&kind, 1, "header.kind")
			case fAPIVersion:
				return d.String(&apiVersion, 1, "header.apiVersion")
			case fAuditID:
				return d.String(&auditID, 1, "header.auditID")
			case fStage:
				return d.String(&stage, 1, "header.stage")
			}
			return d.Skip(1)
		})
	})
	if err != nil {
		return Raw{}, fmt.Errorf("malformed audit event: %w", err)
	}
	if err := validateHeader(kind, apiVersion, auditID, stage); err != nil {
		return Raw{}, err
	}
	return Raw{Data: data, AuditID: auditID, Stage: stage}, nil
}

// ParseBody splits what kube-apiserver's webhook backend POSTs: an EventList
// (or a single Event) into its events. The first event that fails to decode
// fails the whole body, naming its index. The events' Data are sub-slices of
// body.
func ParseBody(body []byte) ([]Raw, error) {
	d := jsonscan.NewDecoder(body, jsonscan.Options{})
	kind, _, items, err := list(&d, false)
	if err != nil {
		return nil, fmt.Errorf("malformed audit body: %w", err)
	}
	switch kind {
	case "Event":
		r, err := ParseRaw(body)
		if err != nil {
			return nil, err
		}
		return []Raw{r}, nil
	case "EventList":
	default:
		return nil, fmt.Errorf("%w: body kind %q, want EventList or Event", ErrWrongKind, kind)
	}
	out := make([]Raw, 0, len(items))
	for i, item := range items {
		r, err := ParseRaw(item)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// SplitList reads the envelope of a body as json.Unmarshal would into
// {kind, apiVersion string; items []json.RawMessage}, except that each
// item's nesting is counted from the item itself: kube-apiserver checks an
// event's depth on its own, so an item as deep as encoding/json allows must
// not refuse its whole batch. Items are sub-slices of body, validated as
// JSON but not decoded.
func SplitList(body []byte) (kind, apiVersion string, items [][]byte, err error) {
	d := jsonscan.NewDecoder(body, jsonscan.Options{})
	return list(&d, true)
}

// list decodes a list envelope; ownDepth counts each item's nesting from
// the item rather than from the body.
func list(d *jsonscan.Decoder, ownDepth bool) (kind, apiVersion string, items [][]byte, err error) {
	err = d.Document(func() error {
		return d.Members(1, func(key []byte) error {
			f := listField(string(key))
			if f == fUnknown {
				f = listField(jsonscan.Canonical(key, []string{"kind", "apiVersion", "items"}))
			}
			var err error
			switch f {
			case fKind:
				return d.String(&kind, 1, "listHeader.kind")
			case fAPIVersion:
				return d.String(&apiVersion, 1, "listHeader.apiVersion")
			case fItems:
				items, err = d.RawList(1, ownDepth, "listHeader.items")
				return err
			}
			return d.Skip(1)
		})
	})
	return kind, apiVersion, items, err
}
