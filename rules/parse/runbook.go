package parse

import (
	"fmt"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxRunbookURL bounds a runbook_url. Every alert of the rule carries it,
// and Slack shows it as a link.
const MaxRunbookURL = 2048

// unsafeURLChars are characters RFC 3986 does not allow in a URL. Each
// would end or split the link where a destination writes one, Slack's
// <url|text> above all, so a URL holding one is refused rather than
// shown broken.
const unsafeURLChars = " \"<>\\^`{|}"

// runbookURL reads a runbook_url: an absolute http or https URL.
func (p *parser) runbookURL(v *yaml.Node, id string) (string, bool) {
	s, ok := p.str(v, id, "runbook_url")
	if !ok {
		return "", false
	}
	if msg := checkRunbookURL(s); msg != "" {
		p.problem(v, id, "runbook_url %q %s", s, msg)
		return "", false
	}
	return s, true
}

// checkRunbookURL says what is wrong with s as a runbook URL, or "".
func checkRunbookURL(s string) string {
	const want = "is not an absolute http or https URL like https://wiki.example.com/runbooks/secret-read"
	if len(s) > MaxRunbookURL {
		return "is longer than 2048 bytes"
	}
	if i := strings.IndexAny(s, unsafeURLChars); i >= 0 {
		return fmt.Sprintf("holds %q, which a URL must percent-encode", s[i:i+1])
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return want
	}
	return ""
}
