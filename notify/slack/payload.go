package slack

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Slack's documented Block Kit limits. A message over any of them is
// rejected whole with invalid_blocks, so every value is cut to fit instead.
const (
	MaxHeaderText   = 150
	MaxSectionText  = 3000
	MaxFieldText    = 2000
	MaxFields       = 10
	MaxBlocks       = 50
	MaxContextText  = 2000
	MaxFallbackText = 3000
	// MaxListed is how many alerts of a group are listed one per line
	// before the rest are only counted.
	MaxListed = 10
)

// Severity presentation: the attachment colour bar and the header emoji.
var (
	severityColor = map[string]string{
		alert.SeverityCritical: "#8E1600",
		alert.SeverityHigh:     "#E01E5A",
		alert.SeverityMedium:   "#F2952F",
		alert.SeverityLow:      "#ECB22E",
		alert.SeverityInfo:     "#36C5F0",
	}
	severityEmoji = map[string]string{
		alert.SeverityCritical: ":rotating_light:",
		alert.SeverityHigh:     ":red_circle:",
		alert.SeverityMedium:   ":large_orange_circle:",
		alert.SeverityLow:      ":large_yellow_circle:",
		alert.SeverityInfo:     ":large_blue_circle:",
	}
)

// Message builds the Slack message for one notification: a single alert,
// or a group whose first alert is shown in full and the others listed as
// "N more like this". It is a pure function of its input.
//
// maxText, when positive, lowers the limit of the section, context and
// fallback texts below Slack's own (MaxSectionText, MaxContextText,
// MaxFallbackText); the header and the fields keep Slack's limits.
// truncated reports whether any text of the message was cut to fit, by
// maxText or by one of Slack's limits.
func Message(alerts []*alert.Alert, maxText int) (msg *slack.WebhookMessage, truncated bool) {
	if len(alerts) == 0 {
		return &slack.WebhookMessage{}, false
	}
	b := &builder{maxText: maxText}
	a := alerts[0]
	sev := strings.ToUpper(a.Severity)
	emoji, ok := severityEmoji[a.Severity]
	if !ok {
		emoji = ":white_circle:"
	}
	color, ok := severityColor[a.Severity]
	if !ok {
		color = "#9E9E9E"
	}

	title := a.Title
	if title == "" {
		title = a.Rule
	}
	head := emoji + " " + sev + " · " + title
	if len(alerts) > 1 {
		head = fmt.Sprintf("%s (%d alerts)", head, len(alerts))
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, b.fit(Truncate(head, MaxHeaderText), head), true, false)),
	}
	if a.Output != "" {
		blocks = append(blocks, b.section(Escape(a.Output)))
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, b.fields(a), nil))

	ctx := []string{"rule `" + Escape(a.Rule) + "`"}
	if len(a.Tags) > 0 {
		ctx = append(ctx, "tags "+Escape(strings.Join(a.Tags, ", ")))
	}
	if a.AuditID != "" {
		ctx = append(ctx, "auditID `"+Escape(a.AuditID)+"`")
	}
	if a.Count > 1 {
		c := "count " + strconv.Itoa(a.Count)
		if a.Window != "" {
			c += " in " + Escape(a.Window)
		}
		ctx = append(ctx, c)
	}
	if a.Suppressed > 0 {
		ctx = append(ctx, strconv.Itoa(a.Suppressed)+" more held back by suppression before this one")
	}
	blocks = append(blocks, slack.NewContextBlock("",
		slack.NewTextBlockObject(slack.MarkdownType, b.cut(strings.Join(ctx, "  ·  "), MaxContextText), false, false)))

	if rest := alerts[1:]; len(rest) > 0 {
		blocks = append(blocks, slack.NewDividerBlock(), b.section(b.moreLikeThis(rest)))
	}
	if len(blocks) > MaxBlocks {
		blocks = blocks[:MaxBlocks]
		b.truncated = true
	}

	fallback := "[" + sev + "] " + title + ": " + a.Output
	if len(alerts) > 1 {
		fallback = fmt.Sprintf("[%s] %s: %d alerts", sev, title, len(alerts))
	}
	return &slack.WebhookMessage{
		Text: b.cut(Escape(fallback), MaxFallbackText),
		Attachments: []slack.Attachment{{
			Color:  color,
			Blocks: slack.Blocks{BlockSet: blocks},
		}},
	}, b.truncated
}

// builder holds what one call of Message needs besides its input: the
// configured text limit, and whether anything was cut so far.
type builder struct {
	maxText   int
	truncated bool
}

// limit is Slack's limit of a text, lowered to the configured one.
func (b *builder) limit(slackMax int) int {
	if b.maxText > 0 && b.maxText < slackMax {
		return b.maxText
	}
	return slackMax
}

// cut fits escaped mrkdwn to min(slackMax, the configured limit).
func (b *builder) cut(mrkdwn string, slackMax int) string {
	return b.fit(truncateEscaped(mrkdwn, b.limit(slackMax)), mrkdwn)
}

// fit returns cut, noting whether it differs from the text it was cut from.
func (b *builder) fit(cut, from string) string {
	if cut != from {
		b.truncated = true
	}
	return cut
}

func (b *builder) section(mrkdwn string) *slack.SectionBlock {
	return slack.NewSectionBlock(
		slack.NewTextBlockObject(slack.MarkdownType, b.cut(mrkdwn, MaxSectionText), false, false), nil, nil)
}

// fields are the event's facts, at most MaxFields, empty ones left out.
// They keep Slack's limit whatever the configured one.
func (b *builder) fields(a *alert.Alert) []*slack.TextBlockObject {
	user := a.User
	if a.ImpersonatedUser != "" {
		user += " (as " + a.ImpersonatedUser + ")"
	}
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	obj := a.Name
	if a.Namespace != "" {
		obj = a.Namespace + "/" + a.Name
	}
	var when string
	if !a.Time.IsZero() {
		when = a.Time.UTC().Format("2006-01-02 15:04:05Z")
	}
	var code string
	if a.ResponseCode != 0 {
		code = strconv.FormatInt(a.ResponseCode, 10)
	}
	kv := [][2]string{
		{"Cluster", a.Cluster},
		{"User", user},
		{"Verb", a.Verb},
		{"Resource", res},
		{"Object", obj},
		{"Source IPs", strings.Join(a.SourceIPs, ", ")},
		{"User agent", a.UserAgent},
		{"Time", when},
		{"Response", code},
		{"Stage", a.Stage},
	}
	var out []*slack.TextBlockObject
	for _, f := range kv {
		if f[1] == "" {
			continue
		}
		if len(out) == MaxFields {
			b.truncated = true
			continue
		}
		label := "*" + f[0] + "*\n"
		v := Escape(f[1])
		out = append(out, slack.NewTextBlockObject(slack.MarkdownType,
			label+b.fit(truncateEscaped(v, MaxFieldText-utf8.RuneCountInString(label)), v), false, false))
	}
	return out
}

// moreLikeThis lists the other alerts of a group, one short line each.
func (b *builder) moreLikeThis(rest []*alert.Alert) string {
	var s strings.Builder
	fmt.Fprintf(&s, "*%d more like this*", len(rest))
	for i, a := range rest {
		if i == MaxListed {
			fmt.Fprintf(&s, "\n…and %d more", len(rest)-MaxListed)
			break
		}
		line := a.Time.UTC().Format("15:04:05Z") + " " + a.User + " " + a.Verb + " " + a.Resource
		if a.Subresource != "" {
			line += "/" + a.Subresource
		}
		if a.Namespace != "" {
			line += " " + a.Namespace + "/" + a.Name
		} else if a.Name != "" {
			line += " " + a.Name
		}
		// Each line is capped so that one huge value cannot push the
		// count line out of the section.
		line = Escape(line)
		s.WriteString("\n• " + b.fit(truncateEscaped(line, 200), line))
	}
	return s.String()
}

// Escape makes s safe as mrkdwn text: Slack reads <...> as links and
// mentions, so an audit field such as "<!channel>" would page a channel.
// The three characters Slack asks to be escaped are replaced.
func Escape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}

// Truncate cuts s to at most n characters (runes), ending with "…" when
// it had to cut.
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}

// truncateEscaped truncates already escaped text without leaving half of
// an entity such as "&am" at the cut.
func truncateEscaped(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	t := []rune(s)[:n-1]
	for i := len(t) - 1; i >= 0 && i >= len(t)-5; i-- {
		if t[i] == ';' {
			break
		}
		if t[i] == '&' {
			t = t[:i]
			break
		}
	}
	return string(t) + "…"
}
