package slack

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"go.uber.org/goleak"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

func TestMain(m *testing.M) {
	// slacktest's chat.postMessage hands each message to a goroutine that
	// waits for a websocket client which these tests never open.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/slack-go/slack/slacktest.(*Server).queueForWebsocket"))
}

// server is slacktest's Slack with handlers that record what was posted.
type server struct {
	*slacktest.Server
	posted chan url.Values // chat.postMessage forms
	hooks  chan []byte     // incoming webhook bodies
}

func newServer(t *testing.T, respond func(w http.ResponseWriter) bool) *server {
	t.Helper()
	s := &server{posted: make(chan url.Values, 10), hooks: make(chan []byte, 10)}
	s.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.posted <- r.PostForm
			if respond != nil && respond(w) {
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": r.PostForm.Get("channel"), "ts": "1.000"})
		})
		c.Handle("/services/", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			s.hooks <- b
			if respond != nil && respond(w) {
				return
			}
			_, _ = io.WriteString(w, "ok")
		})
	})
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *server) hookURL() string { return s.GetAPIURL() + "services/T000/B000/s3cretXXXX" }

func TestBotTokenAgainstSlacktest(t *testing.T) {
	// The stock slacktest handler: slack-go's client and our message agree
	// with what slack-go's own test server accepts.
	s := slacktest.NewTestServer()
	s.Start()
	defer s.Stop()
	n, err := New(Config{Token: "xoxb-test", Channel: "#alerts", APIURL: s.GetAPIURL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if retry, err := n.Notify(context.Background(), alerttest.Sample()); err != nil {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
}

func TestBotTokenPostsBlocksToChannel(t *testing.T) {
	s := newServer(t, nil)
	// Without the trailing slash, as people write base URLs.
	apiURL := strings.TrimSuffix(s.GetAPIURL(), "/")
	n, err := New(Config{Token: "xoxb-test", Channel: "#alerts", APIURL: apiURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Notify(context.Background(), alerttest.Sample()); err != nil {
		t.Fatal(err)
	}
	form := <-s.posted
	if form.Get("channel") != "#alerts" {
		t.Errorf("channel = %q", form.Get("channel"))
	}
	if form.Get("token") != "xoxb-test" {
		t.Errorf("token not sent")
	}
	if !strings.Contains(form.Get("text"), "Secret read by a non-node identity") {
		t.Errorf("fallback text = %q", form.Get("text"))
	}
	var atts []slack.Attachment
	if err := json.Unmarshal([]byte(form.Get("attachments")), &atts); err != nil {
		t.Fatal(err)
	}
	if len(atts) != 1 || atts[0].Color != severityColor[alert.SeverityHigh] || len(atts[0].Blocks.BlockSet) < 3 {
		t.Fatalf("attachments = %+v", atts)
	}
	h, ok := atts[0].Blocks.BlockSet[0].(*slack.HeaderBlock)
	if !ok || !strings.Contains(h.Text.Text, "HIGH") {
		t.Errorf("first block is not the severity header: %#v", atts[0].Blocks.BlockSet[0])
	}
}

func TestIncomingWebhook(t *testing.T) {
	s := newServer(t, nil)
	n, err := New(Config{WebhookURL: s.hookURL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Notify(context.Background(), alerttest.Many(3)...); err != nil {
		t.Fatal(err)
	}
	var msg slack.WebhookMessage
	if err := json.Unmarshal(<-s.hooks, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "3 alerts") {
		t.Errorf("grouped fallback text = %q", msg.Text)
	}
}

func TestFailuresAreClassified(t *testing.T) {
	for _, tc := range []struct {
		name      string
		token     bool
		respond   func(w http.ResponseWriter) bool
		wantRetry bool
		wantWait  time.Duration
	}{
		{"webhook 429 with Retry-After", false, status(http.StatusTooManyRequests, "3"), true, 3 * time.Second},
		{"webhook 500", false, status(http.StatusInternalServerError, ""), true, 0},
		{"webhook 404 no_service", false, status(http.StatusNotFound, ""), false, 0},
		{"webhook 400 invalid_blocks", false, status(http.StatusBadRequest, ""), false, 0},
		{"api 429 with Retry-After", true, status(http.StatusTooManyRequests, "2"), true, 2 * time.Second},
		{"api invalid_auth", true, apiError("invalid_auth"), false, 0},
		{"api channel_not_found", true, apiError("channel_not_found"), false, 0},
		{"api internal_error", true, apiError("internal_error"), true, 0},
		{"api 503", true, status(http.StatusServiceUnavailable, ""), true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.respond)
			cfg := Config{WebhookURL: s.hookURL(), Timeout: 5 * time.Second}
			if tc.token {
				cfg = Config{Token: "xoxb-test", Channel: "C1", APIURL: s.GetAPIURL(), Timeout: 5 * time.Second}
			}
			n, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			retry, err := n.Notify(context.Background(), alerttest.Sample())
			if err == nil {
				t.Fatal("no error")
			}
			if retry != tc.wantRetry {
				t.Errorf("retry = %v, want %v (err %v)", retry, tc.wantRetry, err)
			}
			var ra interface{ RetryAfter() time.Duration }
			if tc.wantWait > 0 && (!errors.As(err, &ra) || ra.RetryAfter() != tc.wantWait) {
				t.Errorf("Retry-After %s not reported: %v", tc.wantWait, err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the webhook URL: %v", err)
			}
		})
	}
}

func status(code int, retryAfter string) func(w http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		return true
	}
}

func apiError(e string) func(w http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": e})
		return true
	}
}

func TestWebhookURLNotInTransportErrors(t *testing.T) {
	s := newServer(t, nil)
	url := s.hookURL()
	s.Stop()
	n, err := New(Config{WebhookURL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	retry, err := n.Notify(context.Background(), alerttest.Sample())
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v, want a retryable error", retry, err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "services/") {
		t.Errorf("error leaks the webhook URL: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "either a webhook URL or a bot token"},
		{Config{WebhookURL: "https://x", Token: "t"}, "either a webhook URL or a bot token"},
		{Config{Token: "t"}, "needs a channel"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestMaxTextCharsAndTruncated(t *testing.T) {
	s := newServer(t, nil)
	cut := prometheus.NewCounter(prometheus.CounterOpts{Name: "truncated_texts_total"})
	n, err := New(Config{WebhookURL: s.hookURL(), Timeout: 5 * time.Second, MaxTextChars: 300, Truncated: cut})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	long := alerttest.Sample()
	long.Output = strings.Repeat("y", 1000)
	for _, a := range []*alert.Alert{long, alerttest.Sample()} {
		if _, err := n.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	var msg slack.WebhookMessage
	if err := json.Unmarshal(<-s.hooks, &msg); err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(msg.Text); n != 300 {
		t.Errorf("fallback text has %d characters, want 300", n)
	}
	if calls := testutil.ToFloat64(cut); calls != 1 {
		t.Errorf("Truncated counted %v messages, want one (the long alert only)", calls)
	}
	if _, err := New(Config{WebhookURL: "https://x", MaxTextChars: -1}); err == nil {
		t.Error("a negative MaxTextChars is accepted")
	}
}
