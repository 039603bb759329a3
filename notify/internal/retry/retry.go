// Package retry classifies delivery failures for the notifiers: which HTTP
// statuses are worth retrying, how long a server asked to wait, and how to
// report a failed request without leaking the secret-bearing URL.
package retry

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Status reports whether a response with this status code is worth
// retrying. Everything 2xx is a success and never reaches here; other 4xx
// mean the request itself is wrong and sending it again cannot help.
func Status(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code >= 400 && code < 500:
		return false
	case code >= 500:
		return true
	}
	// 1xx/3xx that the client did not follow are a server misconfiguration
	// that may be fixed while we wait.
	return true
}

// After is a failure whose server said when to try again.
type After struct {
	Wait time.Duration
	Err  error
}

func (e *After) Error() string { return e.Err.Error() }
func (e *After) Unwrap() error { return e.Err }

// RetryAfter is the server's requested wait.
func (e *After) RetryAfter() time.Duration { return e.Wait }

// ParseAfter reads a Retry-After header: delay-seconds or an HTTP date.
func ParseAfter(h string, now time.Time) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// Redacted stands in for a URL in errors.
const Redacted = "[redacted]"

// RedactURL rewrites err so that no *url.Error in it prints the URL, which
// for Slack incoming webhooks and many receivers carries the credential.
// Messages wrapped around a *url.Error were already formatted with the URL,
// so the wrapping is dropped and only the transport failure is kept.
func RedactURL(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: Redacted, Err: ue.Err}
	}
	return err
}
