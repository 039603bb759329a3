package retry

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	retried := []int{408, 429, 500, 502, 503, 504}
	final := []int{400, 401, 403, 404, 405, 409, 410, 413, 422}
	for _, c := range retried {
		if !Status(c) {
			t.Errorf("%d not retried", c)
		}
	}
	for _, c := range final {
		if Status(c) {
			t.Errorf("%d retried", c)
		}
	}
}

func TestParseAfter(t *testing.T) {
	now := time.Date(2024, 2, 19, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"30", 30 * time.Second, true},
		{"0", 0, true},
		{"-5", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	} {
		got, ok := ParseAfter(tc.h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseAfter(%q) = %s, %v; want %s, %v", tc.h, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRedactURL(t *testing.T) {
	inner := errors.New("connection refused")
	err := fmt.Errorf("failed to post webhook: %w", &url.Error{Op: "Post", URL: "https://hooks.slack.com/services/T/B/s3cret", Err: inner})
	got := RedactURL(err)
	if strings.Contains(got.Error(), "s3cret") {
		t.Errorf("URL kept: %v", got)
	}
	if !errors.Is(got, inner) || !strings.Contains(got.Error(), "connection refused") {
		t.Errorf("cause lost: %v", got)
	}
	plain := errors.New("no url here")
	if RedactURL(plain) != plain || RedactURL(nil) != nil { //nolint:errorlint // identity, not equivalence, is the point
		t.Error("errors without a URL must pass unchanged")
	}
}
