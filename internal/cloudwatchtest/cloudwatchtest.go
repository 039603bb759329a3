// Package cloudwatchtest serves log groups over CloudWatch Logs' JSON
// protocol (awsJson1_1: POST /, X-Amz-Target Logs_20140328.<Operation>,
// errors as {"__type": ..., "message": ...}), so that tests drive the real
// aws-sdk-go-v2 client: FilterLogEvents with time ranges, stream prefixes
// and nextToken paging, DescribeLogStreams, and throttling on demand. It
// must only be imported by tests.
package cloudwatchtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	contentType  = "application/x-amz-json-1.1"
	targetPrefix = "Logs_20140328."
	// DefaultPageSize is how many events a page holds unless SetPageSize
	// says otherwise: small, so that tests page.
	DefaultPageSize = 3
)

// Event is one log event as stored.
type Event struct {
	Group, Stream string
	Timestamp     int64 // ms
	Message       string
	ID            string
	seq           int64
}

// Logs is the log groups, shared by every endpoint serving them.
type Logs struct {
	mu       sync.Mutex
	groups   map[string]bool
	events   []Event
	seq      int64
	pageSize int
	throttle int
	empty    int
}

// New holds no log group yet.
func New() *Logs {
	return &Logs{groups: map[string]bool{}, pageSize: DefaultPageSize}
}

// CreateGroup makes a log group exist (empty).
func (l *Logs) CreateGroup(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.groups[name] = true
}

// Put adds an event to a stream of group (created if needed) and returns
// its event id. Events become visible at once, in any timestamp order, as
// CloudWatch makes events of several streams visible late.
func (l *Logs) Put(group, stream string, ts time.Time, message string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.groups[group] = true
	l.seq++
	// Real ids are 56 digits; these sort by arrival, not by timestamp.
	id := fmt.Sprintf("%056d", l.seq)
	l.events = append(l.events, Event{Group: group, Stream: stream, Timestamp: ts.UnixMilli(), Message: message, ID: id, seq: l.seq})
	return id
}

// SetPageSize bounds the events of one FilterLogEvents page.
func (l *Logs) SetPageSize(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pageSize = n
}

// Throttle answers the next n requests with a ThrottlingException.
func (l *Logs) Throttle(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.throttle += n
}

// EmptyPages makes the next n FilterLogEvents answers empty pages with a
// nextToken that resumes where they stood, as CloudWatch answers while it
// is still searching.
func (l *Logs) EmptyPages(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.empty += n
}

// Endpoint is one HTTP server over the logs; each counts its calls, so
// that a test tells which client polled.
type Endpoint struct {
	URL   string
	logs  *Logs
	calls sync.Map // operation -> *atomic.Int64
}

// Serve starts an endpoint, closed when the test ends.
func (l *Logs) Serve(t testing.TB) *Endpoint {
	e := &Endpoint{logs: l}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// Calls is how many requests of an operation (FilterLogEvents) this
// endpoint answered, throttled ones included.
func (e *Endpoint) Calls(op string) int64 {
	v, ok := e.calls.Load(op)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/":
		fail(w, http.StatusNotFound, "UnknownOperationException", "not "+r.Method+" "+r.URL.Path)
		return
	case !ok:
		fail(w, http.StatusBadRequest, "UnknownOperationException", "no X-Amz-Target "+targetPrefix+"*")
		return
	case r.Header.Get("Content-Type") != contentType:
		fail(w, http.StatusBadRequest, "SerializationException", "Content-Type "+r.Header.Get("Content-Type"))
		return
	case !signed(r.Header.Get("Authorization")):
		fail(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "request not signed with SigV4 for logs")
		return
	}
	v, _ := e.calls.LoadOrStore(op, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	l := e.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.throttle > 0 {
		l.throttle--
		fail(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	}
	switch op {
	case "FilterLogEvents":
		l.filter(w, body)
	case "DescribeLogStreams":
		l.describe(w, body)
	default:
		fail(w, http.StatusBadRequest, "UnknownOperationException", op)
	}
}

// signed checks the shape of a SigV4 Authorization for the logs service.
func signed(auth string) bool {
	cred, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 Credential=")
	if !ok {
		return false
	}
	scope, _, _ := strings.Cut(cred, ",")
	parts := strings.Split(scope, "/")
	return len(parts) == 5 && parts[0] != "" && parts[3] == "logs" && parts[4] == "aws4_request"
}

type filterInput struct {
	LogGroupName        string   `json:"logGroupName"`
	LogGroupIdentifier  string   `json:"logGroupIdentifier"`
	LogStreamNamePrefix string   `json:"logStreamNamePrefix"`
	LogStreamNames      []string `json:"logStreamNames"`
	StartTime           *int64   `json:"startTime"`
	EndTime             *int64   `json:"endTime"`
	NextToken           string   `json:"nextToken"`
	Limit               int      `json:"limit"`
}

// token is where the next page resumes: after this (timestamp, seq).
type token struct {
	TS  int64 `json:"ts"`
	Seq int64 `json:"seq"`
}

type filteredEvent struct {
	LogStreamName string `json:"logStreamName"`
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
	EventID       string `json:"eventId"`
}

func (l *Logs) filter(w http.ResponseWriter, body []byte) {
	var in filterInput
	if err := json.Unmarshal(body, &in); err != nil {
		fail(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	group := in.LogGroupName
	switch {
	case (group == "") == (in.LogGroupIdentifier == ""):
		fail(w, http.StatusBadRequest, "InvalidParameterException", "give either logGroupName or logGroupIdentifier")
		return
	case group == "":
		group = in.LogGroupIdentifier
	}
	if in.LogStreamNamePrefix != "" && len(in.LogStreamNames) > 0 {
		fail(w, http.StatusBadRequest, "InvalidParameterException", "logStreamNamePrefix and logStreamNames are exclusive")
		return
	}
	if !l.groups[group] {
		fail(w, http.StatusBadRequest, "ResourceNotFoundException", "The specified log group does not exist.")
		return
	}
	after := token{TS: -1}
	if in.NextToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		if err != nil || json.Unmarshal(raw, &after) != nil {
			fail(w, http.StatusBadRequest, "InvalidParameterException", "The specified nextToken is invalid.")
			return
		}
	}
	var match []Event
	for _, e := range l.events {
		if e.Group != group || !strings.HasPrefix(e.Stream, in.LogStreamNamePrefix) ||
			(len(in.LogStreamNames) > 0 && !slices.Contains(in.LogStreamNames, e.Stream)) ||
			(in.StartTime != nil && e.Timestamp < *in.StartTime) || (in.EndTime != nil && e.Timestamp > *in.EndTime) {
			continue
		}
		if e.Timestamp < after.TS || (e.Timestamp == after.TS && e.seq <= after.Seq) {
			continue
		}
		match = append(match, e)
	}
	slices.SortFunc(match, func(a, b Event) int {
		if a.Timestamp != b.Timestamp {
			return int(a.Timestamp - b.Timestamp)
		}
		return int(a.seq - b.seq)
	})
	size := l.pageSize
	if in.Limit > 0 {
		size = min(size, in.Limit)
	}
	out := struct {
		Events    []filteredEvent `json:"events"`
		NextToken string          `json:"nextToken,omitempty"`
	}{Events: []filteredEvent{}}
	if l.empty > 0 && len(match) > 0 {
		l.empty--
		out.NextToken = encodeToken(after)
		answer(w, out)
		return
	}
	page := match[:min(len(match), size)]
	for _, e := range page {
		out.Events = append(out.Events, filteredEvent{LogStreamName: e.Stream, Timestamp: e.Timestamp, Message: e.Message, IngestionTime: e.Timestamp, EventID: e.ID})
	}
	if len(match) > len(page) {
		last := page[len(page)-1]
		out.NextToken = encodeToken(token{TS: last.Timestamp, Seq: last.seq})
	}
	answer(w, out)
}

func encodeToken(t token) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (l *Logs) describe(w http.ResponseWriter, body []byte) {
	var in struct {
		LogGroupName        string `json:"logGroupName"`
		LogStreamNamePrefix string `json:"logStreamNamePrefix"`
		Limit               int    `json:"limit"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		fail(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	if !l.groups[in.LogGroupName] {
		fail(w, http.StatusBadRequest, "ResourceNotFoundException", "The specified log group does not exist.")
		return
	}
	type stream struct {
		LogStreamName string `json:"logStreamName"`
		CreationTime  int64  `json:"creationTime"`
	}
	out := struct {
		LogStreams []stream `json:"logStreams"`
	}{LogStreams: []stream{}}
	seen := map[string]bool{}
	for _, e := range l.events {
		if e.Group == in.LogGroupName && strings.HasPrefix(e.Stream, in.LogStreamNamePrefix) && !seen[e.Stream] {
			seen[e.Stream] = true
			out.LogStreams = append(out.LogStreams, stream{LogStreamName: e.Stream, CreationTime: e.Timestamp})
		}
	}
	if in.Limit > 0 {
		out.LogStreams = out.LogStreams[:min(len(out.LogStreams), in.Limit)]
	}
	answer(w, out)
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentType)
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers as CloudWatch Logs does: the error's type in the body's
// __type and in X-Amzn-ErrorType.
func fail(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}
