package slack

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, v any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep &lt; readable in the golden files
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("payload differs from %s (go test -update rewrites it after review):\n%s", path, got)
	}
}

func TestMessageGolden(t *testing.T) {
	imp := alerttest.Sample()
	imp.ImpersonatedUser = "system:admin"
	imp.Subresource = "exec"
	imp.Resource = "pods"
	imp.Severity = alert.SeverityCritical

	threshold := alerttest.Sample()
	threshold.Count, threshold.Window, threshold.WindowSeconds = 20, "5m0s", 300
	threshold.Members = members(10)

	suppressed := alerttest.Sample()
	suppressed.Suppressed, suppressed.WindowSeconds = 11, 600
	suppressed.Members = members(10)

	// The context a responder acts on: why, what to do, with which
	// groups, allowed by what, and as whom.
	context := alerttest.Sample()
	context.Description = "Anything but a kubelet or the control plane reading Secrets may be credential theft."
	context.RunbookURL = "https://github.com/vigil-k8s/vigil/blob/main/docs/rules.md#secrets?a=1&b=2"
	context.UserGroups = []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"}
	context.ImpersonatedUser = "system:admin"
	context.ImpersonatedGroups = []string{"system:masters"}
	context.AuthorizationDecision = "allow"
	context.AuthorizationReason = `RBAC: allowed by ClusterRoleBinding "app-admin" of ClusterRole "cluster-admin" to ServiceAccount "app/default"`

	hostile := alerttest.Sample()
	hostile.User = "<!channel> & <@U123>"
	hostile.UserAgent = "<https://evil.example|click me>"
	hostile.Output = "got <!here>"

	for _, tc := range []struct {
		name   string
		alerts []*alert.Alert
	}{
		{"single.json", []*alert.Alert{alerttest.Sample()}},
		{"impersonated.json", []*alert.Alert{imp}},
		{"threshold.json", []*alert.Alert{threshold}},
		{"suppressed.json", []*alert.Alert{suppressed}},
		{"context.json", []*alert.Alert{context}},
		{"escaped.json", []*alert.Alert{hostile}},
		{"group.json", alerttest.Many(25)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, _ := Message(tc.alerts, 0)
			golden(t, tc.name, msg)
		})
	}
}

// members are n member events of the sample alert's rule, a second apart.
func members(n int) []alert.Member {
	out := make([]alert.Member, n)
	for i, a := range alerttest.Many(n) {
		out[i] = alert.Member{AuditID: a.AuditID, Time: a.Time, User: a.User, Verb: a.Verb, Resource: a.Resource, Namespace: a.Namespace, Name: a.Name}
	}
	return out
}

// A long description is cut before the runbook link, never into it.
func TestMessageKeepsTheRunbookLink(t *testing.T) {
	a := alerttest.Sample()
	a.Description = strings.Repeat("<é>", 2000)
	a.RunbookURL = "https://wiki.example.com/runbooks/secret-read"
	for _, maxText := range []int{0, 300} {
		msg, truncated := Message([]*alert.Alert{a}, maxText)
		if !truncated {
			t.Errorf("max %d: a cut description is not reported as truncated", maxText)
		}
		var why string
		for _, s := range texts(t, msg)["section"] {
			if strings.Contains(s, "&lt;é") {
				why = s
			}
		}
		if !strings.HasSuffix(why, "…\n:book: <https://wiki.example.com/runbooks/secret-read|Runbook>") {
			t.Errorf("max %d: description section ends %q", maxText, why[max(0, len(why)-80):])
		}
		if limit := cmp.Or(maxText, MaxSectionText); utf8.RuneCountInString(why) > limit {
			t.Errorf("max %d: description section has %d characters", maxText, utf8.RuneCountInString(why))
		}
		checkEscaped(t, "description", strings.TrimSuffix(why, "<https://wiki.example.com/runbooks/secret-read|Runbook>"))
	}
}

func TestMessageEscapesMentions(t *testing.T) {
	a := alerttest.Sample()
	a.User = "<!channel>"
	a.Output = "<!everyone> <@U1> <#C1>"
	a.Description = "<!channel>"
	a.RunbookURL = "<!channel>"
	a.UserGroups = []string{"<@U1>"}
	a.ImpersonatedGroups = []string{"<#C1>"}
	a.AuthorizationReason = "<!everyone>"
	a.Members = []alert.Member{{User: "<!channel>", Name: "<@U1>"}}
	msg, _ := Message([]*alert.Alert{a}, 0)
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	// In the JSON, < is encoded as \u003c; decode the strings back.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var texts []string
	collectStrings(m, &texts)
	for _, s := range texts {
		for _, bad := range []string{"<!channel>", "<!everyone>", "<@U1>", "<#C1>"} {
			if strings.Contains(s, bad) {
				t.Errorf("message text %q contains the live mention %s", s, bad)
			}
		}
	}
}

func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

// Every text of a message with absurdly long values stays within Slack's
// limits, so Slack never rejects the message.
func TestMessageWithinLimits(t *testing.T) {
	long := strings.Repeat("<&>x", 5000)
	a := alerttest.Sample()
	a.Title = strings.Repeat("T", 400)
	a.Output, a.User, a.UserAgent, a.Name = long, long, long, long
	a.Tags = []string{long}
	a.SourceIPs = strings.Split(strings.Repeat("10.0.0.1,", 1000), ",")
	a.Description, a.AuthorizationReason = long, long
	a.RunbookURL = "https://example.com/" + strings.Repeat("r", 2000)
	a.UserGroups = strings.Split(strings.Repeat("<group>,", 1000), ",")
	a.Members = []alert.Member{{User: long, Name: long}, {User: long, Resource: long}}
	group := append([]*alert.Alert{a}, alerttest.Many(200)...)
	for _, alerts := range [][]*alert.Alert{{a}, group} {
		msg, truncated := Message(alerts, 0)
		if !truncated {
			t.Error("the message was cut but not reported as truncated")
		}
		if n := utf8.RuneCountInString(msg.Text); n > MaxFallbackText {
			t.Errorf("fallback text has %d characters, limit %d", n, MaxFallbackText)
		}
		blocks := msg.Attachments[0].Blocks.BlockSet
		if len(blocks) > MaxBlocks {
			t.Errorf("%d blocks, limit %d", len(blocks), MaxBlocks)
		}
		b, _ := json.Marshal(blocks)
		var raw []map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		for _, blk := range raw {
			switch blk["type"] {
			case "header":
				checkLen(t, "header", blk["text"].(map[string]any)["text"].(string), MaxHeaderText)
			case "section":
				if txt, ok := blk["text"].(map[string]any); ok {
					checkLen(t, "section text", txt["text"].(string), MaxSectionText)
				}
				if fs, ok := blk["fields"].([]any); ok {
					if len(fs) > MaxFields {
						t.Errorf("%d fields, limit %d", len(fs), MaxFields)
					}
					for _, f := range fs {
						checkLen(t, "field", f.(map[string]any)["text"].(string), MaxFieldText)
					}
				}
			case "context":
				for _, e := range blk["elements"].([]any) {
					checkLen(t, "context", e.(map[string]any)["text"].(string), MaxContextText)
				}
			}
		}
	}
}

func checkLen(t *testing.T, what, s string, limit int) {
	t.Helper()
	if n := utf8.RuneCountInString(s); n > limit {
		t.Errorf("%s has %d characters, limit %d", what, n, limit)
	}
	if strings.HasSuffix(strings.TrimSuffix(s, "…"), "&am") || strings.HasSuffix(strings.TrimSuffix(s, "…"), "&l") {
		t.Errorf("%s ends in a cut entity: %q", what, s[max(0, len(s)-10):])
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"this is too long", 8, "this is…"},
		{"héhéhéhé", 4, "héh…"},
	} {
		if got := Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// texts are the texts of a message by kind: "section", "field", "context",
// "header" and "fallback".
func texts(t *testing.T, msg *slack.WebhookMessage) map[string][]string {
	t.Helper()
	out := map[string][]string{"fallback": {msg.Text}}
	for _, blk := range msg.Attachments[0].Blocks.BlockSet {
		switch x := blk.(type) {
		case *slack.HeaderBlock:
			out["header"] = append(out["header"], x.Text.Text)
		case *slack.SectionBlock:
			if x.Text != nil {
				out["section"] = append(out["section"], x.Text.Text)
			}
			for _, f := range x.Fields {
				out["field"] = append(out["field"], f.Text)
			}
		case *slack.ContextBlock:
			for _, e := range x.ContextElements.Elements {
				if o, ok := e.(*slack.TextBlockObject); ok {
					out["context"] = append(out["context"], o.Text)
				}
			}
		}
	}
	return out
}

// A configured limit cuts the section, context and fallback texts, never
// into an entity, so that a cut cannot bring a mention back to life.
func TestMessageMaxText(t *testing.T) {
	const limit = 500
	// Every cut position around the mention: before, inside and after
	// each of its entities.
	for pad := limit - 20; pad <= limit+2; pad++ {
		a := alerttest.Sample()
		a.Output = strings.Repeat("x", pad) + "<!channel> & <@U1>" + strings.Repeat("é", 10_000)
		a.Tags = []string{strings.Repeat("t", pad) + "<!here>" + strings.Repeat("t", 3000)}
		a.Title = strings.Repeat("<T>", 100)
		a.User = strings.Repeat("u", 1500) // a field: keeps Slack's limit
		msg, truncated := Message([]*alert.Alert{a}, limit)
		if !truncated {
			t.Fatalf("pad %d: a cut message is not reported as truncated", pad)
		}
		got := texts(t, msg)
		for _, kind := range []string{"section", "context", "fallback"} {
			if len(got[kind]) != 1 {
				t.Fatalf("pad %d: %d %s texts, want 1", pad, len(got[kind]), kind)
			}
			s := got[kind][0]
			if n := utf8.RuneCountInString(s); n > limit {
				t.Errorf("pad %d: %s has %d characters, limit %d", pad, kind, n, limit)
			}
			if !strings.HasSuffix(s, "…") {
				t.Errorf("pad %d: %s does not end with …: %q", pad, kind, s[max(0, len(s)-20):])
			}
			checkEscaped(t, kind, s)
		}
		if n := utf8.RuneCountInString(got["header"][0]); n != MaxHeaderText {
			t.Errorf("header has %d characters, want Slack's %d", n, MaxHeaderText)
		}
		if !slices.ContainsFunc(got["field"], func(f string) bool { return utf8.RuneCountInString(f) > limit }) {
			t.Errorf("no field longer than %d characters: fields are cut to the configured limit", limit)
		}
	}
}

// checkEscaped fails if s holds a raw < or > (a live link or mention) or
// ends in a cut entity.
func checkEscaped(t *testing.T, what, s string) {
	t.Helper()
	if strings.ContainsAny(s, "<>") {
		t.Errorf("%s contains a raw < or >: %q", what, s)
	}
	body := strings.TrimSuffix(s, "…")
	if i := strings.LastIndexByte(body, '&'); i >= 0 && !strings.Contains(body[i:], ";") {
		t.Errorf("%s ends in a cut entity: %q", what, body[i:])
	}
}

// 0 keeps Slack's limits; a limit above one of them changes nothing.
func TestMessageDefaultLimits(t *testing.T) {
	a := alerttest.Sample()
	a.Output = strings.Repeat("x", 10_000)
	a.Tags = []string{strings.Repeat("t", 10_000)}
	for _, maxText := range []int{0, MaxSectionText, 1_000_000} {
		msg, truncated := Message([]*alert.Alert{a}, maxText)
		if !truncated {
			t.Errorf("max %d: a cut message is not reported as truncated", maxText)
		}
		got := texts(t, msg)
		for kind, want := range map[string]int{"section": MaxSectionText, "context": MaxContextText, "fallback": MaxFallbackText} {
			if n := utf8.RuneCountInString(got[kind][0]); n != want {
				t.Errorf("max %d: %s has %d characters, want Slack's %d", maxText, kind, n, want)
			}
		}
	}
}

// Grouped messages are cut too: both sections and the fallback.
func TestGroupMessageMaxText(t *testing.T) {
	const limit = 200
	group := alerttest.Many(25)
	group[0].Output = strings.Repeat("<!channel>", 100)
	group[0].Title = strings.Repeat("T", 200)
	msg, truncated := Message(group, limit)
	if !truncated {
		t.Fatal("a cut message is not reported as truncated")
	}
	got := texts(t, msg)
	if len(got["section"]) != 2 {
		t.Fatalf("%d section texts, want the output and the list", len(got["section"]))
	}
	for _, kind := range []string{"section", "context", "fallback"} {
		for _, s := range got[kind] {
			if n := utf8.RuneCountInString(s); n > limit {
				t.Errorf("%s has %d characters, limit %d", kind, n, limit)
			}
			checkEscaped(t, kind, s)
		}
	}
	if !strings.HasPrefix(got["section"][1], "*24 more like this*") {
		t.Errorf("list section = %q", got["section"][1])
	}
}

// Messages that fit are not reported as truncated, and a limit they fit
// in leaves them as they were.
func TestMessageNotTruncated(t *testing.T) {
	for _, alerts := range [][]*alert.Alert{{alerttest.Sample()}, alerttest.Many(3)} {
		plain, cut := Message(alerts, 0)
		limited, cutLimited := Message(alerts, 200)
		if cut || cutLimited {
			t.Errorf("%d alerts reported as truncated (%v, %v)", len(alerts), cut, cutLimited)
		}
		a, _ := json.Marshal(plain)
		b, _ := json.Marshal(limited)
		if !bytes.Equal(a, b) {
			t.Errorf("a limit the message fits in changed it:\n%s\n%s", a, b)
		}
	}
}
