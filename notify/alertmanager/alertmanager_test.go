package alertmanager

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

// server is an Alertmanager stand-in answering with a script of statuses,
// then 200, for the cases a real one cannot be made to play.
type server struct {
	*httptest.Server
	mu         sync.Mutex
	statuses   []int
	retryAfter string
	requests   [][]Alert
	auth       []string
}

func newServer(t *testing.T, statuses ...int) *server {
	s := &server{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/am/api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		var body []Alert
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, body)
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		code := http.StatusOK
		if len(s.statuses) > 0 {
			code, s.statuses = s.statuses[0], s.statuses[1:]
		}
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, r := range s.requests {
		out = append(out, len(r))
	}
	return out
}

func newNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	cfg.Timeout = 5 * time.Second
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func TestLargeGroupsAreSentInParts(t *testing.T) {
	s := newServer(t)
	n := newNotifier(t, Config{URLs: []string{s.URL + "/am/"}, BearerToken: "t0k"})
	if _, err := n.Notify(context.Background(), alerttest.Many(2*MaxAlertsPerRequest+1)...); err != nil {
		t.Fatal(err)
	}
	if got := s.sizes(); len(got) != 3 || got[0] != MaxAlertsPerRequest || got[2] != 1 {
		t.Errorf("request sizes %v, want %d, %d, 1", got, MaxAlertsPerRequest, MaxAlertsPerRequest)
	}
	if s.auth[0] != "Bearer t0k" {
		t.Errorf("Authorization = %q", s.auth[0])
	}
}

func TestEveryAlertmanagerGetsTheAlerts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b       int
		retryAfter string
		wantErr    bool
		wantRetry  bool
		wantWait   time.Duration
	}{
		{"both accept", 200, 200, "", false, false, 0},
		{"one accepts", 503, 200, "", false, false, 0},
		{"both down", 503, 500, "9", true, true, 9 * time.Second},
		{"one refuses, one down", 400, 503, "", true, true, 0},
		{"both refuse", 400, 422, "", true, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newServer(t, tc.a), newServer(t, tc.b)
			b.retryAfter = tc.retryAfter
			n := newNotifier(t, Config{URLs: []string{a.URL + "/am", b.URL + "/am"}})
			retry, err := n.Notify(context.Background(), alerttest.Sample())
			if (err != nil) != tc.wantErr || retry != tc.wantRetry {
				t.Fatalf("retry=%v err=%v; want retry=%v, an error: %v", retry, err, tc.wantRetry, tc.wantErr)
			}
			if len(a.sizes()) != 1 || len(b.sizes()) != 1 {
				t.Errorf("requests: %v and %v, want one each", a.sizes(), b.sizes())
			}
			var ra interface{ RetryAfter() time.Duration }
			if tc.wantWait > 0 && (!errors.As(err, &ra) || ra.RetryAfter() != tc.wantWait) {
				t.Errorf("Retry-After not reported as %s: %v", tc.wantWait, err)
			}
		})
	}
}

func TestLabelsAreBoundedAndValid(t *testing.T) {
	a := alerttest.Sample()
	a.User = strings.Repeat("é", MaxLabelBytes) // two bytes each
	a.Namespace = "bad\xffutf8"
	a.Resource, a.Subresource = "pods", "exec"
	l := Labels(a)
	if u := l[LabelUser]; len(u) > MaxLabelBytes || !utf8.ValidString(u) || !strings.HasSuffix(u, "…") {
		t.Errorf("user label of %d bytes, valid UTF-8 %v: %q", len(u), utf8.ValidString(u), u)
	}
	if !utf8.ValidString(l[LabelNamespace]) {
		t.Errorf("namespace label %q is not UTF-8", l[LabelNamespace])
	}
	if l[LabelResource] != "pods/exec" {
		t.Errorf("resource label %q", l[LabelResource])
	}
	a.Cluster = ""
	if _, ok := Labels(a)[LabelCluster]; ok {
		t.Error("an empty value became a label")
	}
}

func TestEndsAtFollowsTheSending(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	old, ahead := alerttest.Sample(), alerttest.Sample()
	ahead.Time = now.Add(time.Minute) // a clock ahead of ours
	got := Convert([]*alert.Alert{old, ahead}, now, 10*time.Minute, "")
	if !got[0].StartsAt.Equal(old.Time) || !got[0].EndsAt.Equal(now.Add(10*time.Minute)) {
		t.Errorf("late alert: %s to %s", got[0].StartsAt, got[0].EndsAt)
	}
	if !got[1].EndsAt.Equal(ahead.Time.Add(10 * time.Minute)) {
		t.Errorf("alert from the future ends %s, before it starts plus resolve_after", got[1].EndsAt)
	}
	threshold := alerttest.Sample()
	threshold.Count, threshold.Window = 20, "5m0s"
	if an := Annotations(threshold); an["count"] != "20" || an["window"] != "5m0s" {
		t.Errorf("threshold annotations %v", an)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{}, "no url"},
		{"ftp", Config{URLs: []string{"ftp://am"}}, "url 1: must be an http"},
		{"credentials in url", Config{URLs: []string{"http://am", "http://u:p@am"}}, "url 2: credentials belong in username"},
		{"both auths", Config{URLs: []string{"http://am"}, Username: "u", Password: "p", BearerToken: "t"}, "not both"},
		{"user without password", Config{URLs: []string{"http://am"}, Username: "u"}, "both a username and a password"},
		{"negative resolve", Config{URLs: []string{"http://am"}, ResolveAfter: -time.Second}, "resolve_after"},
		{"generator not a url", Config{URLs: []string{"http://am"}, GeneratorURL: "vigil/{rule}"}, "generator_url"},
		{"missing ca", Config{URLs: []string{"https://am"}, CAFile: "/nonexistent/ca.pem"}, "tls.ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
