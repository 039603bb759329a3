package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
	"github.com/vigil-k8s/vigil/notify/slack"
)

// slackHook is slack-go's test Slack with an incoming webhook that records
// every message.
type slackHook struct {
	*slacktest.Server
	mu   sync.Mutex
	msgs []slackMsg
}

type slackMsg struct {
	at  time.Time
	msg slackapi.WebhookMessage
}

func newSlackHook(t *testing.T) *slackHook {
	t.Helper()
	h := &slackHook{}
	h.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/services/", func(w http.ResponseWriter, r *http.Request) {
			var m slackapi.WebhookMessage
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &m); err != nil {
				http.Error(w, "invalid_payload", http.StatusBadRequest)
				return
			}
			h.mu.Lock()
			h.msgs = append(h.msgs, slackMsg{at: time.Now(), msg: m})
			h.mu.Unlock()
			_, _ = io.WriteString(w, "ok")
		})
	})
	h.Start()
	t.Cleanup(h.Stop)
	return h
}

func (h *slackHook) messages() []slackMsg {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slackMsg(nil), h.msgs...)
}

// dest is a Slack destination posting to the hook.
func (h *slackHook) dest(t *testing.T, name string) Destination {
	return h.destWith(t, name, slack.Config{})
}

func (h *slackHook) destWith(t *testing.T, name string, c slack.Config) Destination {
	t.Helper()
	c.WebhookURL = h.GetAPIURL() + "services/T0/B0/secret"
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	n, err := slack.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return Destination{Name: name, Notifier: n}
}

// sectionTexts are the mrkdwn texts of a message's sections.
func sectionTexts(m slackapi.WebhookMessage) string {
	var b strings.Builder
	for _, a := range m.Attachments {
		for _, blk := range a.Blocks.BlockSet {
			switch s := blk.(type) {
			case *slackapi.SectionBlock:
				if s.Text != nil {
					b.WriteString(s.Text.Text + "\n")
				}
			case *slackapi.HeaderBlock:
				b.WriteString(s.Text.Text + "\n")
			}
		}
	}
	return b.String()
}

func TestGroupWindowMakesOneSlackMessage(t *testing.T) {
	e := newEnv(t)
	h := newSlackHook(t)
	dst := h.dest(t, "secops")
	dst.RateLimit = slack.DefaultRate // one message a second
	cfg := testSetup([]Destination{dst},
		Route{To: []string{"secops"}, GroupBy: []string{"rule"}, GroupWait: 2 * time.Second})

	burst := alerttest.Many(500)
	other := alerttest.Many(3)
	for i, a := range other {
		a.Rule = "exec-into-pod"
		a.ID = alert.ID(a.Rule, fmt.Sprint(i))
	}
	e.publish(append(burst, other...)...)
	e.run(cfg)

	waitFor(t, "both groups notified", func() bool { return len(h.messages()) >= 2 })
	waitFor(t, "every alert acknowledged", e.settled("secops"))

	msgs := h.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d Slack messages, want one per rule", len(msgs))
	}
	var big, small string
	for _, m := range msgs {
		txt := sectionTexts(m.msg)
		if strings.Contains(txt, "exec-into-pod") || strings.Contains(m.msg.Text, "3 alerts") {
			small = txt
		} else {
			big = txt
		}
	}
	if !strings.Contains(big, "(500 alerts)") || !strings.Contains(big, "499 more like this") || !strings.Contains(big, "…and 489 more") {
		t.Errorf("the burst's message does not count 500 alerts:\n%s", big)
	}
	if !strings.Contains(small, "(3 alerts)") || !strings.Contains(small, "2 more like this") {
		t.Errorf("the other rule's message:\n%s", small)
	}
	if n := e.counter("vigil_notify_delivered_alerts_total", "secops"); n != 503 {
		t.Errorf("delivered metric = %v, want 503", n)
	}
}

func TestGroupIntervalThrottlesLaterAlerts(t *testing.T) {
	e := newEnv(t)
	h := newSlackHook(t)
	const interval = time.Second
	cfg := testSetup([]Destination{h.dest(t, "secops")},
		Route{To: []string{"secops"}, GroupBy: []string{"rule"}, GroupWait: 100 * time.Millisecond, GroupInterval: interval})
	e.run(cfg)

	all := alerttest.Many(6)
	e.publish(all[0])
	waitFor(t, "the first notification", func() bool { return len(h.messages()) == 1 })
	e.publish(all[1:]...)
	// The later alerts are held for the rest of group_interval: half-way
	// through it there must still be only the first message. (Arrival
	// times at the sink include delivery latency, so they are compared
	// with a margin rather than to the exact interval.)
	time.Sleep(time.Until(h.messages()[0].at.Add(interval / 2)))
	if n := len(h.messages()); n != 1 {
		t.Fatalf("%d messages half-way through group_interval, want the later alerts held", n)
	}
	waitFor(t, "the second notification", func() bool { return len(h.messages()) == 2 })
	waitFor(t, "every alert acknowledged", e.settled("secops"))

	msgs := h.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if !strings.Contains(sectionTexts(msgs[1].msg), "(5 alerts)") {
		t.Errorf("second message does not hold the 5 later alerts:\n%s", sectionTexts(msgs[1].msg))
	}
	if gap := msgs[1].at.Sub(msgs[0].at); gap < interval/2 {
		t.Errorf("second notification %s after the first, group_interval is %s", gap, interval)
	}
}

// Two notifier replicas share a destination's consumer; the group state in
// the bucket keeps them to one notification per group_interval between
// them, and every alert is delivered exactly once.
func TestReplicasShareGroupState(t *testing.T) {
	e := newEnv(t)
	h := newSlackHook(t)
	const interval = time.Second
	cfg := testSetup([]Destination{h.dest(t, "secops")},
		Route{To: []string{"secops"}, GroupBy: []string{"rule"}, GroupWait: 300 * time.Millisecond, GroupInterval: interval})
	alerts := alerttest.Many(200)
	e.publish(alerts...)
	smallFetches := func(o *Options) { o.FetchBatch, o.FetchWait = 10, 50*time.Millisecond }
	e.run(cfg, smallFetches)
	e.run(cfg, smallFetches)

	waitFor(t, "every alert acknowledged", func() bool {
		total := 0
		for _, m := range h.messages() {
			var n int
			if _, err := fmt.Sscanf(m.msg.Text[strings.LastIndex(m.msg.Text, ": ")+2:], "%d alerts", &n); err != nil {
				n = 1
			}
			total += n
		}
		return total >= len(alerts) && e.settled("secops")()
	})
	msgs := h.messages()
	t.Logf("%d alerts in %d notifications", len(alerts), len(msgs))
	for i := 1; i < len(msgs); i++ {
		if gap := msgs[i].at.Sub(msgs[i-1].at); gap < interval-50*time.Millisecond {
			t.Errorf("notifications %d and %d of one group %s apart, group_interval is %s", i, i+1, gap, interval)
		}
	}
	if n := e.counter("vigil_notify_delivered_alerts_total", "secops"); n != float64(len(alerts)) {
		t.Errorf("delivered metric = %v, want %d: each alert exactly once", n, len(alerts))
	}
}

func TestRateLimitSpacesMessages(t *testing.T) {
	e := newEnv(t)
	h := newSlackHook(t)
	dst := h.dest(t, "secops")
	dst.RateLimit = 5
	cfg := testSetup([]Destination{dst})
	e.run(cfg)

	e.publish(alerttest.Many(6)...)
	waitFor(t, "six messages", func() bool { return len(h.messages()) == 6 })
	msgs := h.messages()
	// One message at once, then one per 200ms.
	if span := msgs[5].at.Sub(msgs[0].at); span < 950*time.Millisecond {
		t.Errorf("6 messages at 5/s took %s, want at least 1s", span)
	}
}

func TestSlackMaxTextCharsCutsAndCounts(t *testing.T) {
	e := newEnv(t)
	h := newSlackHook(t)
	dst := h.destWith(t, "secops", slack.Config{MaxTextChars: 500, Truncated: e.m.NotifyTruncated.WithLabelValues("secops")})
	cfg := testSetup([]Destination{dst})

	long := alerttest.Sample()
	long.Output = strings.Repeat("<!channel> ", 1000) // 11,000 characters
	long.Output = long.Output[:10_000]
	short := alerttest.Many(2)[1]
	e.publish(long, short)
	e.run(cfg)

	waitFor(t, "both alerts notified", func() bool { return len(h.messages()) >= 2 })
	waitFor(t, "every alert acknowledged", e.settled("secops"))
	msgs := h.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d Slack messages, want 2", len(msgs))
	}
	var cut *slackapi.WebhookMessage
	for i, m := range msgs {
		if strings.Contains(m.msg.Text, "&lt;!channel&gt;") {
			cut = &msgs[i].msg
		}
	}
	if cut == nil {
		t.Fatalf("no message carries the long output: %+v", msgs)
	}
	if n := utf8.RuneCountInString(cut.Text); n > 500 || !strings.HasSuffix(cut.Text, "…") {
		t.Errorf("fallback text has %d characters (limit 500) and ends %q", n, cut.Text[max(0, len(cut.Text)-10):])
	}
	sections := 0
	for _, blk := range cut.Attachments[0].Blocks.BlockSet {
		s, ok := blk.(*slackapi.SectionBlock)
		if !ok || s.Text == nil {
			continue
		}
		sections++
		if n := utf8.RuneCountInString(s.Text.Text); n > 500 {
			t.Errorf("section text has %d characters, limit 500", n)
		}
		if strings.Contains(s.Text.Text, "<!channel>") {
			t.Error("the section text holds a live <!channel>")
		}
	}
	if sections != 1 {
		t.Errorf("%d section texts, want the output's", sections)
	}
	if n := e.counter("vigil_notify_truncated_texts_total", "secops"); n != 1 {
		t.Errorf("truncated metric = %v, want 1 (the short alert was not cut)", n)
	}
	if n := e.counter("vigil_notify_delivered_alerts_total", "secops"); n != 2 {
		t.Errorf("delivered metric = %v, want 2", n)
	}
}
