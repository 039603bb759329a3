package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestBodyGolden(t *testing.T) {
	threshold := alerttest.Sample()
	threshold.Count, threshold.Window = 20, "5m0s"
	for _, tc := range []struct {
		name   string
		alerts []*alert.Alert
	}{
		{"one.json", []*alert.Alert{alerttest.Sample()}},
		{"threshold.json", []*alert.Alert{threshold}},
		{"two.json", alerttest.Many(2)},
		{"none.json", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := Body(tc.alerts)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, body, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", tc.name)
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("body differs from %s:\n%s", path, pretty.Bytes())
			}
		})
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"version":"1","alerts":[]}`)
	now := time.Unix(1708305212, 0)
	h := Sign("s3cret", now, body)
	if !strings.HasPrefix(h, "t=1708305212,v1=") {
		t.Fatalf("header %q does not start with the timestamp", h)
	}
	// The test vector in docs/notify.md.
	if want := "t=1708305212,v1=d4e2510586400f3b0900d14c64c2e6edcaa4efc624ab8cfdc46689a63c723f68"; h != want {
		t.Errorf("Sign = %q, want the documented %q", h, want)
	}
	if err := verifyAt("s3cret", h, body, time.Minute, now.Add(30*time.Second)); err != nil {
		t.Errorf("valid signature rejected: %v", err)
	}
	for _, tc := range []struct {
		name, secret, header string
		body                 []byte
		at                   time.Time
		want                 error
	}{
		{"wrong secret", "other", h, body, now, ErrBadSignature},
		{"tampered body", "s3cret", h, []byte(`{"version":"1","alerts":[{}]}`), now, ErrBadSignature},
		{"replayed later", "s3cret", h, body, now.Add(time.Hour), ErrTooOld},
		{"moved timestamp", "s3cret", strings.Replace(h, "t=1708305212", "t=1708308812", 1), body, now.Add(time.Hour), ErrBadSignature},
		{"empty header", "s3cret", "", body, now, ErrNoSignature},
		{"no v1", "s3cret", "t=1708305212", body, now, ErrNoSignature},
		{"bad timestamp", "s3cret", "t=soon,v1=00", body, now, ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyAt(tc.secret, tc.header, tc.body, time.Minute, tc.at)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// During secret rotation a sender may include two signatures.
	rotated := Sign("new", now, body) + ",v1=" + strings.SplitN(h, "v1=", 2)[1]
	if err := verifyAt("s3cret", rotated, body, time.Minute, now); err != nil {
		t.Errorf("old secret not accepted among two signatures: %v", err)
	}
}

// sink records requests and answers with the next status of a script.
type sink struct {
	t        *testing.T
	statuses []int
	header   http.Header
	reqs     chan *http.Request
	bodies   chan []byte
}

func newSink(t *testing.T, statuses ...int) *sink {
	return &sink{t: t, statuses: statuses, header: http.Header{}, reqs: make(chan *http.Request, 10), bodies: make(chan []byte, 10)}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.reqs <- r
	s.bodies <- b
	code := http.StatusOK
	if len(s.statuses) > 0 {
		code, s.statuses = s.statuses[0], s.statuses[1:]
	}
	for k, v := range s.header {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, http.StatusText(code))
}

func TestNotifyPostsSignedJSON(t *testing.T) {
	sk := newSink(t)
	srv := httptest.NewServer(sk)
	defer srv.Close()
	n, err := New(Config{URL: srv.URL + "/hook", Secret: "k", Headers: map[string]string{"Authorization": "Bearer t0k"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	alerts := alerttest.Many(3)
	if retry, err := n.Notify(context.Background(), alerts...); err != nil {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	r, body := <-sk.reqs, <-sk.bodies
	if r.Method != http.MethodPost || r.URL.Path != "/hook" {
		t.Errorf("got %s %s", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer t0k" {
		t.Errorf("custom header Authorization = %q", got)
	}
	if err := Verify("k", r.Header.Get(SignatureHeader), body, time.Minute); err != nil {
		t.Errorf("signature of delivered body: %v", err)
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Version != "1" || len(p.Alerts) != 3 || p.Alerts[2].ID != alerts[2].ID {
		t.Errorf("body = version %q with %d alerts", p.Version, len(p.Alerts))
	}
}

func TestNotifyClassifiesStatus(t *testing.T) {
	for _, tc := range []struct {
		code       int
		retryAfter string
		wantRetry  bool
		wantWait   time.Duration
	}{
		{http.StatusOK, "", false, 0},
		{http.StatusNoContent, "", false, 0},
		{http.StatusBadRequest, "", false, 0},
		{http.StatusUnauthorized, "", false, 0},
		{http.StatusNotFound, "", false, 0},
		{http.StatusRequestTimeout, "", true, 0},
		{http.StatusTooManyRequests, "7", true, 7 * time.Second},
		{http.StatusInternalServerError, "", true, 0},
		{http.StatusServiceUnavailable, "120", true, 2 * time.Minute},
		{http.StatusFound, "", true, 0},
	} {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			sk := newSink(t, tc.code)
			if tc.retryAfter != "" {
				sk.header.Set("Retry-After", tc.retryAfter)
			}
			srv := httptest.NewServer(sk)
			defer srv.Close()
			n, err := New(Config{URL: srv.URL, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			retry, err := n.Notify(context.Background(), alerttest.Sample())
			if (err == nil) != (tc.code < 300) {
				t.Fatalf("err = %v for %d", err, tc.code)
			}
			if retry != tc.wantRetry {
				t.Errorf("retry = %v, want %v", retry, tc.wantRetry)
			}
			var ra interface{ RetryAfter() time.Duration }
			if tc.wantWait > 0 && (!errors.As(err, &ra) || ra.RetryAfter() != tc.wantWait) {
				t.Errorf("Retry-After not reported as %s: %v", tc.wantWait, err)
			}
		})
	}
}

func TestErrorsHideURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/hooks/T000/B000/s3cret-path?token=s3cret-query"
	srv.Close() // connection refused from now on
	n, err := New(Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	retry, err := n.Notify(context.Background(), alerttest.Sample())
	if err == nil || !retry {
		t.Fatalf("want a retryable error for a refused connection, got retry=%v err=%v", retry, err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the URL: %v", err)
	}
}

func TestTLSWithCustomCA(t *testing.T) {
	sk := newSink(t)
	srv := httptest.NewTLSServer(sk)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}

	without, err := New(Config{URL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer without.Close()
	if _, err := without.Notify(context.Background(), alerttest.Sample()); err == nil {
		t.Error("a server with an unknown CA was trusted")
	}

	with, err := New(Config{URL: srv.URL, CAFile: ca, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer with.Close()
	if _, err := with.Notify(context.Background(), alerttest.Sample()); err != nil {
		t.Errorf("with the CA configured: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{}, "url is empty"},
		{"ftp", Config{URL: "ftp://x"}, "http:// or https://"},
		{"missing ca", Config{URL: "https://x", CAFile: filepath.Join(dir, "nope.pem")}, "tls.ca"},
		{"ca not pem", Config{URL: "https://x", CAFile: notPEM}, "no PEM certificate"},
		{"cert without key", Config{URL: "https://x", CertFile: notPEM}, "tls.cert and tls.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
