package slack

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

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
	threshold.Count, threshold.Window = 20, "5m0s"

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
		{"escaped.json", []*alert.Alert{hostile}},
		{"group.json", alerttest.Many(25)},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, Message(tc.alerts)) })
	}
}

func TestMessageEscapesMentions(t *testing.T) {
	a := alerttest.Sample()
	a.User = "<!channel>"
	a.Output = "<!everyone> <@U1> <#C1>"
	b, err := json.Marshal(Message([]*alert.Alert{a}))
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
	group := append([]*alert.Alert{a}, alerttest.Many(200)...)
	for _, alerts := range [][]*alert.Alert{{a}, group} {
		msg := Message(alerts)
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
