package slack

import (
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// go test ./notify/slack -run TestPreview -preview /tmp/slack.html writes
// an HTML approximation of Slack's rendering of the Block Kit messages,
// from which docs/slack-alert.png is made with a headless browser.
var preview = flag.String("preview", "", "write an HTML preview of sample messages to this file")

// previewAlerts are what the default pack raised on the real v1.34
// cluster's log (`vigil replay -o json` over
// rules/default/testdata/cluster-v1.34.jsonl.gz): a forbidden-burst
// threshold alert, then the secret-read-by-non-node alerts of one service
// account.
const previewAlerts = "testdata/preview-alerts.jsonl"

func TestPreview(t *testing.T) {
	if *preview == "" {
		t.Skip("no -preview file")
	}
	data, err := os.ReadFile(previewAlerts)
	if err != nil {
		t.Fatal(err)
	}
	var burst *alert.Alert
	var reads []*alert.Alert
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		a := new(alert.Alert)
		if err := json.Unmarshal([]byte(line), a); err != nil {
			t.Fatal(err)
		}
		// Replay knows no cluster name; a deployment's config gives one.
		a.Cluster = "prod-eu-1"
		if a.Rule == "forbidden-burst" {
			burst = a
		} else {
			reads = append(reads, a)
		}
	}
	if burst == nil || len(reads) < 2 {
		t.Fatalf("%s: want a forbidden-burst alert and secret reads", previewAlerts)
	}
	var b strings.Builder
	b.WriteString(previewHead)
	m1, _ := Message([]*alert.Alert{burst}, 0)
	m2, _ := Message(reads, 0)
	for _, m := range []*slack.WebhookMessage{m1, m2} {
		renderMessage(&b, m)
	}
	b.WriteString("</div></body></html>\n")
	if err := os.WriteFile(*preview, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func renderMessage(b *strings.Builder, m *slack.WebhookMessage) {
	b.WriteString(`<div class="msg"><div class="avatar">V</div><div class="body"><div class="who"><b>vigil</b> <span class="app">APP</span> <span class="ts">01:13</span></div>`)
	for _, a := range m.Attachments {
		fmt.Fprintf(b, `<div class="att" style="border-color:%s">`, html.EscapeString(a.Color))
		for _, blk := range a.Blocks.BlockSet {
			switch x := blk.(type) {
			case *slack.HeaderBlock:
				fmt.Fprintf(b, `<div class="header">%s</div>`, emoji(html.EscapeString(x.Text.Text)))
			case *slack.SectionBlock:
				if x.Text != nil {
					fmt.Fprintf(b, `<div class="section">%s</div>`, mrkdwn(x.Text.Text))
				}
				if len(x.Fields) > 0 {
					b.WriteString(`<div class="fields">`)
					for _, f := range x.Fields {
						fmt.Fprintf(b, `<div>%s</div>`, mrkdwn(f.Text))
					}
					b.WriteString(`</div>`)
				}
			case *slack.ContextBlock:
				for _, e := range x.ContextElements.Elements {
					if t, ok := e.(*slack.TextBlockObject); ok {
						fmt.Fprintf(b, `<div class="context">%s</div>`, mrkdwn(t.Text))
					}
				}
			case *slack.DividerBlock:
				b.WriteString(`<hr>`)
			}
		}
		b.WriteString(`</div>`)
	}
	b.WriteString(`</div></div>`)
}

var (
	boldRe = regexp.MustCompile(`\*([^*\n]+)\*`)
	codeRe = regexp.MustCompile("`([^`\n]+)`")
	linkRe = regexp.MustCompile(`<(https?://[^|>\s]+)\|([^>]+)>`)
)

// mrkdwn renders the subset the messages use. The text is already
// entity-escaped for Slack, which is also valid HTML escaping.
func mrkdwn(s string) string {
	s = linkRe.ReplaceAllString(s, `<a href="$1">$2</a>`)
	s = codeRe.ReplaceAllString(s, "<code>$1</code>")
	s = boldRe.ReplaceAllString(s, "<b>$1</b>")
	return emoji(strings.ReplaceAll(s, "\n", "<br>"))
}

func emoji(s string) string {
	return strings.NewReplacer(
		":rotating_light:", "🚨", ":red_circle:", "🔴", ":large_orange_circle:", "🟠",
		":large_yellow_circle:", "🟡", ":large_blue_circle:", "🔵", ":white_circle:", "⚪",
		":book:", "📖",
	).Replace(s)
}

const previewHead = `<!doctype html><html><head><meta charset="utf-8"><style>
a{color:#1264a3;text-decoration:none}
body{margin:0;background:#fff;font:15px/1.46 "Lato","Helvetica Neue",Helvetica,Arial,sans-serif;color:#1d1c1d}
.chan{padding:10px 20px;border-bottom:1px solid #ddd;font-weight:900;font-size:18px}
.wrap{padding:8px 0;width:760px}
.msg{display:flex;padding:8px 20px}
.avatar{width:36px;height:36px;border-radius:4px;background:#4a154b;color:#fff;font-weight:900;display:flex;align-items:center;justify-content:center;margin-right:8px;flex:none}
.body{flex:1;min-width:0}
.who .app{background:#eee;color:#616061;font-size:10px;padding:1px 3px;border-radius:2px;font-weight:700}
.who .ts{color:#616061;font-size:12px}
.att{border-left:4px solid;border-radius:4px 0 0 4px;padding:4px 12px;margin-top:4px}
.header{font-size:18px;font-weight:900;margin:4px 0}
.section{margin:6px 0;word-wrap:break-word}
.fields{display:grid;grid-template-columns:1fr 1fr;gap:8px 16px;margin:8px 0}
.fields div{word-wrap:break-word}
.context{color:#616061;font-size:12px;margin:6px 0}
code{font:12px Monaco,Menlo,Consolas,monospace;color:#e01e5a;background:#f6f6f6;border:1px solid #ddd;border-radius:3px;padding:0 3px}
hr{border:0;border-top:1px solid #ddd;margin:8px 0}
</style></head><body><div class="chan"># secops-alerts</div><div class="wrap">
`
