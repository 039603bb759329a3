package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/vigil-k8s/vigil/ingest"
	"github.com/vigil-k8s/vigil/internal/audit"
)

// maxDeadLetterBytes caps what of a bad body is kept as a dead letter, to
// stay below NATS' default maximum message size.
const maxDeadLetterBytes = 512 << 10

// statusError is a failed request: the status to answer and why.
type statusError struct {
	code  int
	msg   string
	limit string // the configured limit that was reached, if any
}

func (e *statusError) Error() string { return e.msg }

func fail(code int, format string, args ...any) *statusError {
	return &statusError{code: code, msg: fmt.Sprintf(format, args...)}
}

// limited is a statusError for a configured limit.
func limited(limit string, code int, format string, args ...any) *statusError {
	e := fail(code, format, args...)
	e.limit = limit
	return e
}

func (s *Server) count(code int, limit string) {
	s.metrics.WebhookRequests.WithLabelValues(strconv.Itoa(code)).Inc()
	if limit != "" {
		s.metrics.LimitExceeded.WithLabelValues(limit).Inc()
	}
}

func (s *Server) handler(pub ingest.Publisher) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	// Any path: the path of the URL in the apiserver's kubeconfig is the
	// user's choice.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.receive(w, r, pub)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) {
				se = fail(http.StatusInternalServerError, "%v", err)
			}
			level := s.log.Warn
			if se.code >= 500 {
				level = s.log.Error
			}
			level("audit webhook request refused", "remote", r.RemoteAddr, "status", se.code, "err", se.msg)
			if se.code == http.StatusTooManyRequests || se.code == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", retryAfter)
			}
			if se.code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			}
			s.count(se.code, se.limit)
			http.Error(w, se.msg, se.code)
			return
		}
		s.count(http.StatusOK, "")
		s.log.Debug("audit events stored", "remote", r.RemoteAddr, "events", n)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "stored %d events\n", n)
	})
	return mux
}

// receive handles one POST and returns how many events it stored.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, pub ingest.Publisher) (int, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return 0, fail(http.StatusMethodNotAllowed, "method %s not allowed: POST audit EventLists", r.Method)
	}
	if err := s.authorize(r); err != nil {
		return 0, err
	}
	// Refuse rather than queue when saturated: the apiserver retries, and
	// memory stays bounded by max_concurrent bodies.
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		return 0, limited("max_concurrent", http.StatusTooManyRequests, "too many requests in flight (max_concurrent %d); retry later", s.cfg.MaxConcurrent)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return 0, err
	}
	events, where, bad, err := s.parse(body)
	if err != nil {
		if se := (*statusError)(nil); errors.As(err, &se) && se.code == http.StatusBadRequest {
			s.deadLetter(r, pub, body, err.Error())
		}
		return 0, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.publishLimit)
	defer cancel()
	for _, b := range bad {
		if err := s.deadLetterItem(ctx, r, pub, b); err != nil {
			return 0, err
		}
	}
	if len(events) == 0 {
		return 0, nil
	}
	// An event too large to store is dead-lettered: the apiserver would
	// retry it in vain and then drop the whole batch.
	err = ingest.Store(ctx, pub, events, func(ctx context.Context, i int, reason string, sample []byte) error {
		return s.deadLetterItem(ctx, r, pub, badItem{where: where[i], err: errors.New(reason), data: sample})
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fail(http.StatusServiceUnavailable, "cannot store %d events: JetStream did not acknowledge them within %s", len(events), s.publishLimit)
		}
		return 0, fail(http.StatusServiceUnavailable, "cannot store %d events: %v", len(events), err)
	}
	return len(events), nil
}

func (s *Server) deadLetterItem(ctx context.Context, r *http.Request, pub ingest.Publisher, b badItem) error {
	data := b.data
	reason := b.err.Error()
	if len(data) > maxDeadLetterBytes {
		reason = fmt.Sprintf("%s; data is its first %d of %d bytes", reason, maxDeadLetterBytes, len(data))
		data = data[:maxDeadLetterBytes]
	}
	if err := pub.DeadLetter(ctx, "webhook:"+remoteHost(r)+":"+b.where, reason, data); err != nil {
		return fail(http.StatusServiceUnavailable, "cannot store dead letter for %s: %v", b.where, err)
	}
	s.log.Warn("dead-lettered audit event", "remote", r.RemoteAddr, "item", b.where, "reason", reason)
	return nil
}

func (s *Server) authorize(r *http.Request) error {
	_, token := s.creds.current()
	if token == nil {
		return nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return fail(http.StatusUnauthorized, "missing bearer token")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return fail(http.StatusUnauthorized, "Authorization header is not a bearer token")
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), token) != 1 {
		return fail(http.StatusUnauthorized, "invalid bearer token")
	}
	return nil
}

// readBody reads the body, decompressed, refusing more than max_body_bytes
// either on the wire or after decompression.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	max := s.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return nil, limited("max_body_bytes", http.StatusRequestEntityTooLarge, "body of %d bytes exceeds max_body_bytes %d", r.ContentLength, max)
	}
	var in io.Reader = http.MaxBytesReader(w, r.Body, max)
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, readError(err, "gzip body", max)
		}
		defer zr.Close()
		in = zr
	default:
		return nil, fail(http.StatusUnsupportedMediaType, "Content-Encoding %q not supported (use gzip or none)", enc)
	}
	// Sized on Content-Length when it tells (apiservers send it), so that
	// a batch of a megabyte is not copied over and over as it grows.
	size := 512
	if r.ContentLength > 0 && enc != "gzip" {
		size = int(min(r.ContentLength, maxPresize)) + 1
	}
	body, err := readAll(io.LimitReader(in, max+1), size)
	if err != nil {
		return nil, readError(err, "body", max)
	}
	if int64(len(body)) > max {
		return nil, limited("max_body_bytes", http.StatusRequestEntityTooLarge, "decompressed body exceeds max_body_bytes %d", max)
	}
	return body, nil
}

// maxPresize bounds the memory a request's declared length reserves before
// its bytes arrive.
const maxPresize = 8 << 20

// readAll is io.ReadAll starting with size bytes of room, growing as it
// does (by a quarter once large), so that a body cut at max_body_bytes
// holds no more than it.
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

func readError(err error, what string, max int64) error {
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		return limited("max_body_bytes", http.StatusRequestEntityTooLarge, "%s exceeds max_body_bytes %d", what, max)
	case errors.As(err, &ne) && ne.Timeout():
		return limited("read_timeout", http.StatusRequestTimeout, "reading %s: not complete within read_timeout: %v", what, err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fail(http.StatusBadRequest, "reading %s: truncated: %v", what, err)
	case errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum):
		return fail(http.StatusBadRequest, "reading %s: not valid gzip: %v", what, err)
	}
	return fail(http.StatusBadRequest, "reading %s: %v", what, err)
}

// badItem is an item of an EventList that is not a usable event.
type badItem struct {
	where string
	err   error
	data  []byte
}

type envelope struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
}

// decodeEnvelope is json.Unmarshal into an envelope, but with each item's
// nesting counted from the item (audit.SplitList): encoding/json refuses
// nesting deeper than 10,000 levels counted from the value it decodes, and
// the apiserver checks each event's requestObject alone, so an event it
// logs (a patch body is logged as sent) may be 10,000 deep by itself and
// deeper inside a list. Counted from the whole body, that one event would
// refuse its whole batch, and with it the other users' events.
func decodeEnvelope(body []byte) (envelope, error) {
	kind, apiVersion, items, err := audit.SplitList(body)
	env := envelope{Kind: kind, APIVersion: apiVersion, Items: make([]json.RawMessage, len(items))}
	for i, item := range items {
		env.Items[i] = item
	}
	return env, err
}

// parse splits a body into events. A body that is not an EventList or an
// Event is an error; an item of a list that is not a usable event is
// returned as bad, to be dead-lettered, so that one odd event does not
// hold back the rest of its batch forever.
func (s *Server) parse(body []byte) (events []audit.Raw, where []string, bad []badItem, err error) {
	env, err := decodeEnvelope(body)
	if errors.Is(err, audit.ErrTooDeep) {
		return nil, nil, nil, limited("max_json_depth", http.StatusBadRequest, "body nested deeper than %d levels: %v", audit.MaxDepth, err)
	}
	if err != nil {
		return nil, nil, nil, fail(http.StatusBadRequest, "malformed body: want an audit.k8s.io EventList: %v", err)
	}
	switch env.APIVersion {
	case "", audit.APIVersionV1, audit.APIVersionV1beta1:
	default:
		return nil, nil, nil, fail(http.StatusBadRequest, "apiVersion %q not supported (want %s or %s)", env.APIVersion, audit.APIVersionV1, audit.APIVersionV1beta1)
	}
	switch env.Kind {
	case "Event":
		r, err := audit.ParseRawDepth(body, s.cfg.MaxJSONDepth)
		if errors.Is(err, audit.ErrTooDeep) {
			return nil, nil, nil, limited("max_json_depth", http.StatusBadRequest, "event nested deeper than max_json_depth %d: %v", s.cfg.MaxJSONDepth, err)
		}
		if err != nil {
			return nil, nil, nil, fail(http.StatusBadRequest, "malformed event: %v", err)
		}
		return []audit.Raw{r}, []string{"event"}, nil, nil
	case "EventList":
	default:
		return nil, nil, nil, fail(http.StatusBadRequest, "body kind %q, want EventList (or Event)", env.Kind)
	}
	if len(env.Items) > s.cfg.MaxEvents {
		return nil, nil, nil, limited("max_events", http.StatusRequestEntityTooLarge, "EventList has %d items, more than max_events %d", len(env.Items), s.cfg.MaxEvents)
	}
	events = make([]audit.Raw, 0, len(env.Items))
	where = make([]string, 0, len(env.Items))
	for i, item := range env.Items {
		r, err := audit.ParseRawDepth(item, s.cfg.MaxJSONDepth)
		if errors.Is(err, audit.ErrTooDeep) {
			s.metrics.LimitExceeded.WithLabelValues("max_json_depth").Inc()
		}
		if err != nil {
			// A few bad items are dead-lettered one by one; a list with
			// more is not what an apiserver sends, and is refused whole.
			if len(bad) == s.cfg.MaxBadItems {
				return nil, nil, nil, limited("max_bad_items", http.StatusBadRequest, "more than max_bad_items %d items are not audit events; first: %s: %v", s.cfg.MaxBadItems, bad[0].where, bad[0].err)
			}
			bad = append(bad, badItem{where: fmt.Sprintf("items[%d]", i), err: err, data: item})
			continue
		}
		events = append(events, r)
		where = append(where, fmt.Sprintf("items[%d]", i))
	}
	return events, where, bad, nil
}

// deadLetter keeps a body that could not be used at all, so that what the
// apiserver sent can still be inspected.
func (s *Server) deadLetter(r *http.Request, pub ingest.Publisher, body []byte, reason string) {
	data := body
	if len(data) > maxDeadLetterBytes {
		data = data[:maxDeadLetterBytes]
		reason = fmt.Sprintf("%s (first %d of %d bytes kept)", reason, maxDeadLetterBytes, len(body))
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.publishLimit)
	defer cancel()
	if err := pub.DeadLetter(ctx, "webhook:"+remoteHost(r), reason, bytes.Clone(data)); err != nil {
		s.log.Error("cannot store dead letter of malformed body", "remote", r.RemoteAddr, "err", err)
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
