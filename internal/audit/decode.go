package audit

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Known apiVersions of audit events. An empty apiVersion is accepted too:
// webhook captures of older apiservers often lack it.
const (
	APIVersionV1      = "audit.k8s.io/v1"
	APIVersionV1beta1 = "audit.k8s.io/v1beta1"
)

// ErrWrongKind marks a well-formed JSON object that is not an audit Event.
var ErrWrongKind = errors.New("not an audit Event")

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
	d := decoder{data: data, alias: shared}
	if err := d.document(func() error { return d.event(ev) }); err != nil {
		return fmt.Errorf("malformed audit event: %w", err)
	}
	return validate(ev)
}

// document decodes the top-level value with object, which reads an object
// from its opening brace. Like encoding/json into a struct, null decodes to
// nothing and any other non-object is an error.
func (d *decoder) document(object func() error) error {
	switch d.next() {
	case '{':
		if err := object(); err != nil {
			return err
		}
	case 'n':
		if err := d.literal(); err != nil {
			return err
		}
	default:
		return d.mismatch(0, "top level", "object")
	}
	if d.skipSpace(); d.pos < len(d.data) {
		return d.unexpected("after top-level value")
	}
	return nil
}

// members calls field for each member of the object at d.pos (its opening
// brace), the object being at depth.
func (d *decoder) members(depth int, field func(key []byte) error) error {
	more, err := d.objectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.key(); err != nil {
			return err
		}
		if err = field(key); err != nil {
			return err
		}
		more, err = d.more('}', "after object key:value pair")
	}
	return err
}

// object checks that the value at d.pos is an object (true) or null (false,
// consumed); anything else is a type error.
func (d *decoder) object(depth int, field, typ string) (bool, error) {
	switch d.next() {
	case '{':
		return true, nil
	case 'n':
		return false, d.literal()
	}
	return false, d.mismatch(depth, field, typ)
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
	return eventField(canonical(key, []string{"kind", "apiVersion", "level", "auditID", "stage", "requestURI",
		"verb", "user", "impersonatedUser", "sourceIPs", "userAgent", "objectRef", "responseStatus",
		"requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp", "timestamp",
		"annotations"}))
}

func (d *decoder) event(ev *Event) error {
	var parts *eventParts
	part := func() *eventParts {
		if parts == nil {
			parts = &eventParts{}
		}
		return parts
	}
	return d.members(1, func(key []byte) error {
		var err error
		switch eventFieldOf(key) {
		case fKind:
			return d.string(&ev.Kind, 1, "Event.kind")
		case fAPIVersion:
			return d.string(&ev.APIVersion, 1, "Event.apiVersion")
		case fLevel:
			return d.string(&ev.Level, 1, "Event.level")
		case fAuditID:
			return d.string(&ev.AuditID, 1, "Event.auditID")
		case fStage:
			return d.string(&ev.Stage, 1, "Event.stage")
		case fRequestURI:
			return d.string(&ev.RequestURI, 1, "Event.requestURI")
		case fVerb:
			return d.string(&ev.Verb, 1, "Event.verb")
		case fUserAgent:
			return d.string(&ev.UserAgent, 1, "Event.userAgent")
		case fUser:
			return d.user(&ev.User, 1, "Event.user")
		case fImpersonatedUser:
			ok, err := d.object(1, "Event.impersonatedUser", "UserInfo")
			if !ok || err != nil {
				ev.ImpersonatedUser = nil
				return err
			}
			if ev.ImpersonatedUser == nil {
				p := part()
				p.imp = UserInfo{}
				ev.ImpersonatedUser = &p.imp
			}
			return d.user(ev.ImpersonatedUser, 1, "Event.impersonatedUser")
		case fSourceIPs:
			ev.SourceIPs, err = d.stringList(1, "Event.sourceIPs")
			return err
		case fObjectRef:
			ok, err := d.object(1, "Event.objectRef", "ObjectReference")
			if !ok || err != nil {
				ev.ObjectRef = nil
				return err
			}
			if ev.ObjectRef == nil {
				p := part()
				p.ref = ObjectReference{}
				ev.ObjectRef = &p.ref
			}
			return d.objectRef(ev.ObjectRef)
		case fResponseStatus:
			ok, err := d.object(1, "Event.responseStatus", "Status")
			if !ok || err != nil {
				ev.ResponseStatus = nil
				return err
			}
			if ev.ResponseStatus == nil {
				p := part()
				p.status = Status{}
				ev.ResponseStatus = &p.status
			}
			return d.status(ev.ResponseStatus)
		case fRequestObject:
			ev.RequestObject, err = d.raw(1)
			return err
		case fResponseObject:
			ev.ResponseObject, err = d.raw(1)
			return err
		case fRequestReceivedTimestamp:
			return d.time(&ev.RequestReceivedTimestamp)
		case fStageTimestamp:
			return d.time(&ev.StageTimestamp)
		case fTimestamp:
			return d.time(&ev.Timestamp)
		case fAnnotations:
			return d.stringMap(&ev.Annotations)
		}
		return d.skip(1)
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

func (d *decoder) user(u *UserInfo, depth int, field string) error {
	ok, err := d.object(depth, field, "UserInfo")
	if !ok || err != nil {
		return err
	}
	depth++
	return d.members(depth, func(key []byte) error {
		f := userField(string(key))
		if f == fUnknown {
			f = userField(canonical(key, []string{"username", "uid", "groups", "extra"}))
		}
		var err error
		switch f {
		case fUsername:
			return d.string(&u.Username, depth, "UserInfo.username")
		case fUID:
			return d.string(&u.UID, depth, "UserInfo.uid")
		case fGroups:
			u.Groups, err = d.stringList(depth, "UserInfo.groups")
			return err
		case fExtra:
			return d.extra(&u.Extra, depth)
		}
		return d.skip(depth)
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

func (d *decoder) objectRef(r *ObjectReference) error {
	return d.members(2, func(key []byte) error {
		f := objectRefField(string(key))
		if f == fUnknown {
			f = objectRefField(canonical(key, []string{"resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
				"resourceVersion", "subresource"}))
		}
		switch f {
		case fResource:
			return d.string(&r.Resource, 2, "ObjectReference.resource")
		case fNamespace:
			return d.string(&r.Namespace, 2, "ObjectReference.namespace")
		case fName:
			return d.string(&r.Name, 2, "ObjectReference.name")
		case fUID:
			return d.string(&r.UID, 2, "ObjectReference.uid")
		case fAPIGroup:
			return d.string(&r.APIGroup, 2, "ObjectReference.apiGroup")
		case fAPIVersion:
			return d.string(&r.APIVersion, 2, "ObjectReference.apiVersion")
		case fResourceVersion:
			return d.string(&r.ResourceVersion, 2, "ObjectReference.resourceVersion")
		case fSubresource:
			return d.string(&r.Subresource, 2, "ObjectReference.subresource")
		}
		return d.skip(2)
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

func (d *decoder) status(s *Status) error {
	return d.members(2, func(key []byte) error {
		f := statusField(string(key))
		if f == fUnknown {
			f = statusField(canonical(key, []string{"status", "message", "reason", "code"}))
		}
		switch f {
		case fStatus:
			return d.string(&s.Status, 2, "Status.status")
		case fMessage:
			return d.string(&s.Message, 2, "Status.message")
		case fReason:
			return d.string(&s.Reason, 2, "Status.reason")
		case fCode:
			return d.int64(&s.Code, 2, "Status.code")
		}
		return d.skip(2)
	})
}

// time decodes a timestamp exactly as encoding/json does: by handing the
// literal to time.Time's UnmarshalJSON, unless it is in the one form
// kube-apiserver writes, which is read directly at a fraction of the cost.
func (d *decoder) time(t *time.Time) error {
	raw, err := d.raw(1)
	if err != nil {
		return err
	}
	if v, ok := utcTime(raw); ok {
		*t = v
		return nil
	}
	return t.UnmarshalJSON(raw)
}

// utcTime reads a JSON string "YYYY-MM-DDTHH:MM:SS[.fraction]Z" as
// time.Parse(time.RFC3339Nano) would, false for anything else.
func utcTime(b []byte) (time.Time, bool) {
	if len(b) < len(`"2006-01-02T15:04:05Z"`) || b[0] != '"' || b[len(b)-1] != '"' || b[len(b)-2] != 'Z' {
		return time.Time{}, false
	}
	s := b[1 : len(b)-2]
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19:]; len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		n, ok := digits(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// digits reads a run of decimal digits, false if any byte is not one.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// stringMap decodes annotations. Like encoding/json, it adds to a map
// decoded before (a duplicate key) and null clears it.
func (d *decoder) stringMap(m *map[string]string) error {
	ok, err := d.object(1, "Event.annotations", "map[string]string")
	if !ok || err != nil {
		*m = nil
		return err
	}
	if *m == nil {
		*m = map[string]string{}
	}
	return d.members(2, func(key []byte) error {
		k := d.keep(key)
		v := ""
		if err := d.string(&v, 2, "Event.annotations"); err != nil {
			return err
		}
		(*m)[k] = v
		return nil
	})
}

func (d *decoder) extra(m *map[string][]string, depth int) error {
	ok, err := d.object(depth, "UserInfo.extra", "map[string][]string")
	if !ok || err != nil {
		*m = nil
		return err
	}
	if *m == nil {
		*m = map[string][]string{}
	}
	return d.members(depth+1, func(key []byte) error {
		k := d.keep(key)
		v, err := d.stringList(depth+1, "UserInfo.extra")
		if err != nil {
			return err
		}
		(*m)[k] = v
		return nil
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
	d := decoder{data: data, limit: depth}
	err := d.document(func() error {
		return d.members(1, func(key []byte) error {
			f := headerField(string(key))
			if f == fUnknown {
				f = headerField(canonical(key, []string{"kind", "apiVersion", "auditID", "stage"}))
			}
			switch f {
			case fKind:
				return d.string(&kind, 1, "header.kind")
			case fAPIVersion:
				return d.string(&apiVersion, 1, "header.apiVersion")
			case fAuditID:
				return d.string(&auditID, 1, "header.auditID")
			case fStage:
				return d.string(&stage, 1, "header.stage")
			}
			return d.skip(1)
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
	d := decoder{data: body}
	kind, _, items, err := d.list(false)
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
	d := decoder{data: body}
	return d.list(true)
}

// list decodes a list envelope; ownDepth counts each item's nesting from
// the item rather than from the body.
func (d *decoder) list(ownDepth bool) (kind, apiVersion string, items [][]byte, err error) {
	err = d.document(func() error {
		return d.members(1, func(key []byte) error {
			f := listField(string(key))
			if f == fUnknown {
				f = listField(canonical(key, []string{"kind", "apiVersion", "items"}))
			}
			var err error
			switch f {
			case fKind:
				return d.string(&kind, 1, "listHeader.kind")
			case fAPIVersion:
				return d.string(&apiVersion, 1, "listHeader.apiVersion")
			case fItems:
				items, err = d.rawList(1, ownDepth, "listHeader.items")
				return err
			}
			return d.skip(1)
		})
	})
	return kind, apiVersion, items, err
}

// rawList decodes an array at depth into its elements' bytes, their nesting
// counted from the array or, with ownDepth, from each element; null gives
// nil.
func (d *decoder) rawList(depth int, ownDepth bool, field string) ([][]byte, error) {
	switch d.next() {
	case 'n':
		return nil, d.literal()
	case '[':
	default:
		return nil, d.mismatch(depth, field, "[]json.RawMessage")
	}
	d.pos++
	out := [][]byte{}
	if d.next() == ']' {
		d.pos++
		return out, nil
	}
	itemDepth := depth + 1
	if ownDepth {
		itemDepth = 0
	}
	for {
		item, err := d.raw(itemDepth)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
		more, err := d.more(']', "after array element")
		if err != nil {
			return nil, err
		}
		if !more {
			return out, nil
		}
	}
}
