package slack

import (
	"fmt"
	"strconv"
	"strings"
	"time"
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
	if why := b.why(a); why != "" {
		blocks = append(blocks, b.section(why))
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, b.fields(a), nil))
	if who := who(a); who != "" {
		blocks = append(blocks, b.section(who))
	}
	if len(a.Members) > 0 {
		blocks = append(blocks, b.section(b.members(a)))
	}

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

// why is the rule's description and a link to its runbook. The link
// comes after the description so that cutting a long description to the
// section's limit cannot cut the link.
func (b *builder) why(a *alert.Alert) string {
	link := ""
	if a.RunbookURL != "" {
		link = ":book: " + Link(a.RunbookURL, "Runbook")
	}
	if a.Description == "" {
		return link
	}
	desc := Escape(a.Description)
	if link == "" {
		return desc
	}
	room := b.limit(MaxSectionText) - utf8.RuneCountInString(link) - 1
	return b.fit(truncateEscaped(desc, max(room, 0)), desc) + "\n" + link
}

// who tells the groups the request was made with and why the apiserver
// allowed or denied it: which binding, for RBAC.
func who(a *alert.Alert) string {
	var lines []string
	if len(a.UserGroups) > 0 {
		lines = append(lines, "*Groups* "+Escape(strings.Join(a.UserGroups, ", ")))
	}
	// The User field already tells whom the user acted as.
	if len(a.ImpersonatedGroups) > 0 {
		lines = append(lines, "*Acting as groups* "+Escape(strings.Join(a.ImpersonatedGroups, ", ")))
	}
	if a.AuthorizationDecision != "" || a.AuthorizationReason != "" {
		line := "*Authorization* " + Escape(a.AuthorizationDecision)
		if a.AuthorizationReason != "" {
			line = strings.TrimSpace(line) + " · " + Escape(a.AuthorizationReason)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// members lists the member events of a threshold or suppression alert.
func (b *builder) members(a *alert.Alert) string {
	var head string
	switch {
	case a.Suppressed > 0:
		head = fmt.Sprintf("*Held back before this alert* (earliest %d of %d)", len(a.Members), a.Suppressed)
	default:
		head = fmt.Sprintf("*Counted* (latest %d of %d)", len(a.Members), a.Count)
	}
	var s strings.Builder
	s.WriteString(head)
	for _, m := range a.Members {
		line := Escape(eventLine(m.Time, m.User, m.Verb, m.Resource, m.Subresource, m.Namespace, m.Name))
		s.WriteString("\n• " + b.fit(truncateEscaped(line, 200), line))
	}
	return s.String()
}

// eventLine is one short line of who did what to which object, and when.
func eventLine(at time.Time, user, verb, resource, subresource, namespace, name string) string {
	line := at.UTC().Format("15:04:05Z") + " " + user + " " + verb + " " + resource
	if subresource != "" {
		line += "/" + subresource
	}
	if namespace != "" {
		line += " " + namespace + "/" + name
	} else if name != "" {
		line += " " + name
	}
	return line
}

// Link is mrkdwn for a link to url showing text. A URL that could end the
// link early or is not http(s) (the rule loader refuses both) is shown as
// escaped text instead.
func Link(url, text string) string {
	if strings.ContainsAny(url, " <>|\n") || !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return Escape(url)
	}
	return "<" + Escape(url) + "|" + Escape(text) + ">"
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
		line := eventLine(a.Time, a.User, a.Verb, a.Resource, a.Subresource, a.Namespace, a.Name)
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
