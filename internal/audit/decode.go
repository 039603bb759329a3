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
	if err := d.Document(func() error { return decodeEvent(&d, ev) }); err != nil {
		return fmt.Errorf("malformed audit event: %w", err)
	}
	return validate(ev)
}

// eventParts holds the optional structs of an event, allocated together.
type eventParts struct {
	ref    ObjectReference
	status Status
	imp    UserInfo
}

// Members of the structs decoded, by the name encoding/json matches.
const (
	fUnknown = iota
	fKind
	fAPIVersion
	fLevel
	fAuditID
	fStage
	fRequestURI
	fVerb
	fUser
	fImpersonatedUser
	fSourceIPs
	fUserAgent
	fObjectRef
	fResponseStatus
	fRequestObject
	fResponseObject
	fRequestReceivedTimestamp
	fStageTimestamp
	fTimestamp
	fAnnotations
	fUsername
	fUID
	fGroups
	fExtra
	fResource
	fNamespace
	fName
	fAPIGroup
	fResourceVersion
	fSubresource
	fStatus
	fMessage
	fReason
	fCode
	fItems
)

func eventField(name string) int {
	switch name {
	case "kind":
		return fKind
	case "apiVersion":
		return fAPIVersion
	case "level":
		return fLevel
	case "auditID":
		return fAuditID
	case "stage":
		return fStage
	case "requestURI":
		return fRequestURI
	case "verb":
		return fVerb
	case "user":
		return fUser
	case "impersonatedUser":
		return fImpersonatedUser
	case "sourceIPs":
		return fSourceIPs
	case "userAgent":
		return fUserAgent
	case "objectRef":
		return fObjectRef
	case "responseStatus":
		return fResponseStatus
	case "requestObject":
		return fRequestObject
	case "responseObject":
		return fResponseObject
	case "requestReceivedTimestamp":
		return fRequestReceivedTimestamp
	case "stageTimestamp":
		return fStageTimestamp
	case "timestamp":
		return fTimestamp
	case "annotations":
		return fAnnotations
	}
	return fUnknown
}

func eventFieldOf(key []byte) int {
	if f := eventField(string(key)); f != fUnknown {
		return f
	}
	return eventField(jsonscan.Canonical(key, []string{"kind", "apiVersion", "level", "auditID", "stage", "requestURI",
		"verb", "user", "impersonatedUser", "sourceIPs", "userAgent", "objectRef", "responseStatus",
		"requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp", "timestamp",
		"annotations"}))
}

func decodeEvent(d *jsonscan.Decoder, ev *Event) error {
	var parts *eventParts
	part := func() *eventParts {
		if parts == nil {
			parts = &eventParts{}
		}
		return parts
	}
	return d.Members(1, func(key []byte) error {
		var err error
		switch eventFieldOf(key) {
		case fKind:
			return d.String(&ev.Kind, 1, "Event.kind")
		case fAPIVersion:
			return d.String(&ev.APIVersion, 1, "Event.apiVersion")
		case fLevel:
			return d.String(&ev.Level, 1, "Event.level")
		case fAuditID:
			return d.String(&ev.AuditID, 1, "Event.auditID")
		case fStage:
			return d.String(&ev.Stage, 1, "Event.stage")
		case fRequestURI:
			return d.String(&ev.RequestURI, 1, "Event.requestURI")
		case fVerb:
			return d.String(&ev.Verb, 1, "Event.verb")
		case fUserAgent:
			return d.String(&ev.UserAgent, 1, "Event.userAgent")
		case fUser:
			return decodeUser(d, &ev.User, 1, "Event.user")
		case fImpersonatedUser:
			ok, err := d.Object(1, "Event.impersonatedUser", "UserInfo")
			if !ok || err != nil {
				ev.ImpersonatedUser = nil
				return err
			}
			if ev.ImpersonatedUser == nil {
				p := part()
				p.imp = UserInfo{}
				ev.ImpersonatedUser = &p.imp
			}
			return decodeUser(d, ev.ImpersonatedUser, 1, "Event.impersonatedUser")
		case fSourceIPs:
			ev.SourceIPs, err = d.StringList(1, "Event.sourceIPs")
			return err
		case fObjectRef:
			ok, err := d.Object(1, "Event.objectRef", "ObjectReference")
			if !ok || err != nil {
				ev.ObjectRef = nil
				return err
			}
			if ev.ObjectRef == nil {
				p := part()
				p.ref = ObjectReference{}
				ev.ObjectRef = &p.ref
			}
			return decodeObjectRef(d, ev.ObjectRef)
		case fResponseStatus:
			ok, err := d.Object(1, "Event.responseStatus", "Status")
			if !ok || err != nil {
				ev.ResponseStatus = nil
				return err
			}
			if ev.ResponseStatus == nil {
				p := part()
				p.status = Status{}
				ev.ResponseStatus = &p.status
			}
			return decodeStatus(d, ev.ResponseStatus)
		case fRequestObject:
			ev.RequestObject, err = d.Raw(1)
			return err
		case fResponseObject:
			ev.ResponseObject, err = d.Raw(1)
			return err
		case fRequestReceivedTimestamp:
			return d.Time(&ev.RequestReceivedTimestamp, 1)
		case fStageTimestamp:
			return d.Time(&ev.StageTimestamp, 1)
		case fTimestamp:
			return d.Time(&ev.Timestamp, 1)
		case fAnnotations:
			return d.StringMap(&ev.Annotations, 1, "Event.annotations")
		}
		return d.Skip(1)
	})
}

func userField(name string) int {
	switch name {
	case "username":
		return fUsername
	case "uid":
		return fUID
	case "groups":
		return fGroups
	case "extra":
		return fExtra
	}
	return fUnknown
}

func decodeUser(d *jsonscan.Decoder, u *UserInfo, depth int, field string) error {
	ok, err := d.Object(depth, field, "UserInfo")
	if !ok || err != nil {
		return err
	}
	depth++
	return d.Members(depth, func(key []byte) error {
		f := userField(string(key))
		if f == fUnknown {
			f = userField(jsonscan.Canonical(key, []string{"username", "uid", "groups", "extra"}))
		}
		var err error
		switch f {
		case fUsername:
			return d.String(&u.Username, depth, "UserInfo.username")
		case fUID:
			return d.String(&u.UID, depth, "UserInfo.uid")
		case fGroups:
			u.Groups, err = d.StringList(depth, "UserInfo.groups")
			return err
		case fExtra:
			return d.StringListMap(&u.Extra, depth, "UserInfo.extra")
		}
		return d.Skip(depth)
	})
}

func objectRefField(name string) int {
	switch name {
	case "resource":
		return fResource
	case "namespace":
		return fNamespace
	case "name":
		return fName
	case "uid":
		return fUID
	case "apiGroup":
		return fAPIGroup
	case "apiVersion":
		return fAPIVersion
	case "resourceVersion":
		return fResourceVersion
	case "subresource":
		return fSubresource
	}
	return fUnknown
}

func decodeObjectRef(d *jsonscan.Decoder, r *ObjectReference) error {
	return d.Members(2, func(key []byte) error {
		f := objectRefField(string(key))
		if f == fUnknown {
			f = objectRefField(jsonscan.Canonical(key, []string{"resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
				"resourceVersion", "subresource"}))
		}
		switch f {
		case fResource:
			return d.String(&r.Resource, 2, "ObjectReference.resource")
		case fNamespace:
			return d.String(&r.Namespace, 2, "ObjectReference.namespace")
		case fName:
			return d.String(&r.Name, 2, "ObjectReference.name")
		case fUID:
			return d.String(&r.UID, 2, "ObjectReference.uid")
		case fAPIGroup:
			return d.String(&r.APIGroup, 2, "ObjectReference.apiGroup")
		case fAPIVersion:
			return d.String(&r.APIVersion, 2, "ObjectReference.apiVersion")
		case fResourceVersion:
			return d.String(&r.ResourceVersion, 2, "ObjectReference.resourceVersion")
		case fSubresource:
			return d.String(&r.Subresource, 2, "ObjectReference.subresource")
		}
		return d.Skip(2)
	})
}

func statusField(name string) int {
	switch name {
	case "status":
		return fStatus
	case "message":
		return fMessage
	case "reason":
		return fReason
	case "code":
		return fCode
	}
	return fUnknown
}

func decodeStatus(d *jsonscan.Decoder, s *Status) error {
	return d.Members(2, func(key []byte) error {
		f := statusField(string(key))
		if f == fUnknown {
			f = statusField(jsonscan.Canonical(key, []string{"status", "message", "reason", "code"}))
		}
		switch f {
		case fStatus:
			return d.String(&s.Status, 2, "Status.status")
		case fMessage:
			return d.String(&s.Message, 2, "Status.message")
		case fReason:
			return d.String(&s.Reason, 2, "Status.reason")
		case fCode:
			return d.Int64(&s.Code, 2, "Status.code")
		}
		return d.Skip(2)
	})
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

// headerField and listField are the members of what ParseRaw and
// ParseBody decode.
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
