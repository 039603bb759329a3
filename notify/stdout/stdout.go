// Package stdout prints alerts for local runs: one readable line per alert
// with its context indented below it, or the alert JSON per line.
package stdout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// Formats.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Notifier writes alerts to a writer. It is safe for concurrent use; each
// alert is written with one Write call so lines never interleave.
type Notifier struct {
	mu     sync.Mutex
	w      io.Writer
	format string
	color  bool
}

// Option configures a Notifier.
type Option func(*Notifier)

// WithFormat selects FormatText (the default) or FormatJSON.
func WithFormat(f string) Option { return func(n *Notifier) { n.format = f } }

// WithColor forces colour on or off; by default it is on when the writer is
// a terminal and NO_COLOR is unset.
func WithColor(on bool) Option { return func(n *Notifier) { n.color = on } }

// New returns a Notifier writing to w.
func New(w io.Writer, opts ...Option) (*Notifier, error) {
	n := &Notifier{w: w, format: FormatText, color: isTerminal(w) && os.Getenv("NO_COLOR") == ""}
	for _, o := range opts {
		o(n)
	}
	if n.format == "" {
		n.format = FormatText
	}
	if n.format != FormatText && n.format != FormatJSON {
		return nil, fmt.Errorf("stdout: unknown format %q (want text or json)", n.format)
	}
	return n, nil
}

// Notify writes the alerts. A write error is retried: the usual cause is a
// full pipe or disk that may drain.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	var b strings.Builder
	for _, a := range alerts {
		if n.format == FormatJSON {
			j, err := json.Marshal(a)
			if err != nil {
				return false, fmt.Errorf("stdout: encode alert %s: %w", a.ID, err)
			}
			b.Write(j)
			b.WriteByte('\n')
			continue
		}
		b.WriteString(Line(a, n.color))
		b.WriteByte('\n')
	}
	if err := ctx.Err(); err != nil {
		return true, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := io.WriteString(n.w, b.String()); err != nil {
		return true, fmt.Errorf("stdout: %w", err)
	}
	return false, nil
}

// ANSI colours per severity.
var sevColor = map[string]string{
	alert.SeverityCritical: "\x1b[1;35m",
	alert.SeverityHigh:     "\x1b[1;31m",
	alert.SeverityMedium:   "\x1b[33m",
	alert.SeverityLow:      "\x1b[36m",
	alert.SeverityInfo:     "\x1b[2m",
}

const reset = "\x1b[0m"

// Line renders one alert as
//
//	time severity rule: output
//
// followed, when the alert has them, by indented lines of its context:
// description, runbook, groups, impersonation, authorization, audit ID and
// members. The user, verb and object are left to the output, which names
// them already (a rule's own output as much as the default one). Both a
// running vigil and replay print alerts with it.
//
// Every value comes from an audit event an attacker may shape, so control
// characters are escaped: a crafted user agent must not be able to rewrite
// the terminal or forge a second alert line.
func Line(a *alert.Alert, color bool) string {
	var b strings.Builder
	b.WriteString(a.Time.UTC().Format(time.RFC3339))
	b.WriteByte(' ')
	sev := fmt.Sprintf("%-8s", Escape(a.Severity))
	if c, ok := sevColor[a.Severity]; ok && color {
		sev = c + sev + reset
	}
	b.WriteString(sev)
	b.WriteByte(' ')
	b.WriteString(Escape(a.Rule))
	b.WriteString(": ")
	b.WriteString(Escape(a.Output))
	if a.Count > 1 {
		fmt.Fprintf(&b, " x%d", a.Count)
		if a.Window != "" {
			b.WriteString(" in " + Escape(a.Window))
		}
	}
	if a.Suppressed > 0 {
		fmt.Fprintf(&b, " (+%d held back before)", a.Suppressed)
	}
	for _, l := range contextLines(a) {
		b.WriteString("\n" + contextIndent + l)
	}
	return b.String()
}

// contextIndent starts each line of an alert's context, so that no value
// can make one look like the first line of an alert, which starts with its
// time.
const contextIndent = "    "

// contextLines are what a responder needs beyond the alert's line, each
// escaped: why the rule matters, where its runbook is, the groups and the
// authorization of the request, its audit ID, and a threshold's or
// suppression's members.
func contextLines(a *alert.Alert) []string {
	var out []string
	add := func(label, v string) {
		if v != "" {
			out = append(out, label+Escape(v))
		}
	}
	add("", a.Description)
	add("runbook: ", a.RunbookURL)
	add("groups: ", strings.Join(a.UserGroups, ", "))
	// An output need not say the request was impersonated; the line
	// does, as the default output would.
	if len(a.ImpersonatedGroups) > 0 {
		add("as "+Escape(a.ImpersonatedUser)+" in groups: ", strings.Join(a.ImpersonatedGroups, ", "))
	} else {
		add("as ", a.ImpersonatedUser)
	}
	authz := a.AuthorizationDecision
	if a.AuthorizationReason != "" {
		authz = strings.TrimSpace(authz + " " + a.AuthorizationReason)
	}
	add("authorization: ", authz)
	// The event's ID, to find it in the audit log.
	add("auditID: ", a.AuditID)
	for _, m := range a.Members {
		res := m.Resource
		if m.Subresource != "" {
			res += "/" + m.Subresource
		}
		obj := m.Name
		if m.Namespace != "" {
			obj = m.Namespace + "/" + m.Name
		}
		add("member: ", strings.Join(slices.DeleteFunc([]string{m.Time.UTC().Format(time.RFC3339), m.User, m.Verb, res, obj},
			func(s string) bool { return s == "" }), " "))
	}
	return out
}

// Escape replaces control characters, including newlines and ESC, with Go
// escape sequences and invalid UTF-8 with \x escapes.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	return st.Mode()&os.ModeCharDevice != 0
}
