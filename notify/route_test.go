package notify

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/notify/internal/alerttest"
)

func TestMatches(t *testing.T) {
	a := alerttest.Sample() // high, secret-read-by-non-node, prod-eu-1, tags credential-access T1552.007
	for _, tc := range []struct {
		name string
		m    config.Match
		want bool
	}{
		{"empty matches all", config.Match{}, true},
		{"severity in list", config.Match{Severity: []string{"critical", "high"}}, true},
		{"severity not in list", config.Match{Severity: []string{"critical"}}, false},
		{"rule", config.Match{Rules: []string{"secret-read-by-non-node"}}, true},
		{"other rule", config.Match{Rules: []string{"exec-into-pod"}}, false},
		{"any tag", config.Match{Tags: []string{"persistence", "T1552.007"}}, true},
		{"no tag", config.Match{Tags: []string{"persistence"}}, false},
		{"cluster", config.Match{Cluster: []string{"prod-eu-1"}}, true},
		{"other cluster", config.Match{Cluster: []string{"staging"}}, false},
		{"all lists must hold", config.Match{Severity: []string{"high"}, Cluster: []string{"staging"}}, false},
	} {
		if got := Matches(tc.m, a); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRouteFor(t *testing.T) {
	routes := []config.Route{
		{Match: config.Match{Severity: []string{"critical"}}, To: []string{"pager"}, Continue: true},
		{Match: config.Match{Severity: []string{"critical", "high"}}, To: []string{"slack", "siem"}},
		{Match: config.Match{}, To: []string{"siem"}},
	}
	crit, high, low := alerttest.Sample(), alerttest.Sample(), alerttest.Sample()
	crit.Severity, low.Severity = alert.SeverityCritical, alert.SeverityLow
	for _, tc := range []struct {
		a         *alert.Alert
		dest      string
		wantRoute int
		wantOK    bool
	}{
		{crit, "pager", 0, true},
		{crit, "slack", 1, true}, // route 0 continues
		{crit, "siem", 1, true},
		{high, "pager", 0, false},
		{high, "slack", 1, true},
		{low, "slack", 0, false},
		{low, "siem", 2, true},
	} {
		r, ok := RouteFor(routes, tc.dest, tc.a)
		if ok != tc.wantOK || (ok && r != tc.wantRoute) {
			t.Errorf("%s alert to %s: route %d ok=%v, want route %d ok=%v", tc.a.Severity, tc.dest, r, ok, tc.wantRoute, tc.wantOK)
		}
	}
	// The first matching route without continue ends the search even if
	// it does not name the destination.
	if _, ok := RouteFor(routes, "pager", high); ok {
		t.Error("high alert reached pager")
	}
	if r, ok := RouteFor(nil, "anything", low); !ok || r != -1 {
		t.Errorf("no routes: got route %d ok=%v, want every destination, ungrouped", r, ok)
	}
}

func TestGroupKey(t *testing.T) {
	a, b := alerttest.Sample(), alerttest.Sample()
	b.User = "mallory"
	if GroupKey([]string{"rule"}, a) != GroupKey([]string{"rule"}, b) {
		t.Error("same rule, different users: want one group by rule")
	}
	if GroupKey([]string{"rule", "user"}, a) == GroupKey([]string{"rule", "user"}, b) {
		t.Error("different users grouped together under group_by user")
	}
	if GroupKey([]string{"..."}, a) == GroupKey([]string{"..."}, b) {
		t.Error(`group_by "..." ignores the user`)
	}
	if GroupKey(nil, a) != GroupKey(nil, b) {
		t.Error("no group_by: want one group for the route")
	}
}

func TestGroupingDefaults(t *testing.T) {
	if groupingOf(config.Route{}).enabled() {
		t.Error("a route without grouping settings groups")
	}
	g := groupingOf(config.Route{GroupBy: []string{"rule"}})
	if !g.enabled() || g.wait != DefaultGroupWait || g.interval != DefaultGroupInterval || g.repeat != DefaultRepeatInterval {
		t.Errorf("group_by alone: got %+v, want Alertmanager's defaults", g)
	}
	g = groupingOf(config.Route{GroupWait: 10 * time.Second, RepeatInterval: time.Minute, GroupInterval: 2 * time.Minute})
	if g.repeat != 2*time.Minute {
		t.Errorf("repeat_interval shorter than group_interval: got %s", g.repeat)
	}
}

func TestNewNotifier(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	if err := os.WriteFile(urlFile, []byte("https://hooks.example/T/B/X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_TOKEN", "xoxb-1")
	var out bytes.Buffer
	for _, tc := range []struct {
		name    string
		d       config.Destination
		wantErr string
	}{
		{"slack webhook from file", config.Destination{Name: "s", Type: "slack", WebhookURLFile: urlFile}, ""},
		{"slack token", config.Destination{Name: "s", Type: "slack", TokenEnv: "TEST_TOKEN", Channel: "#a"}, ""},
		{"slack token unset", config.Destination{Name: "s", Type: "slack", TokenEnv: "TEST_UNSET_TOKEN", Channel: "#a"}, `destination "s": token: environment variable TEST_UNSET_TOKEN is not set`},
		{"slack token without channel", config.Destination{Name: "s", Type: "slack", TokenEnv: "TEST_TOKEN"}, `destination "s": slack: a bot token needs a channel`},
		{"webhook url", config.Destination{Name: "w", Type: "webhook", URL: "https://siem.example"}, ""},
		{"webhook url file", config.Destination{Name: "w", Type: "webhook", URLFile: urlFile}, ""},
		{"webhook missing ca", config.Destination{Name: "w", Type: "webhook", URL: "https://x", TLS: config.TLS{CA: filepath.Join(dir, "nope")}}, `destination "w": webhook: tls.ca`},
		{"stdout json", config.Destination{Name: "o", Type: "stdout", Format: "json"}, ""},
		{"stdout bad format", config.Destination{Name: "o", Type: "stdout", Format: "xml"}, `destination "o": stdout: unknown format "xml"`},
		{"unknown type", config.Destination{Name: "x", Type: "pagerduty"}, `destination "x": unknown type "pagerduty"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNotifier(tc.d, nil, WithStdout(&out))
			if tc.wantErr == "" {
				if err != nil || n == nil {
					t.Fatalf("NewNotifier: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
	n, err := NewNotifier(config.Destination{Name: "o", Type: "stdout"}, nil, WithStdout(&out))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), alerttest.Sample()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "secret-read-by-non-node: ") {
		t.Errorf("stdout notifier wrote %q", out.String())
	}
}

func TestNewDispatcherRejectsUnknownRouteTarget(t *testing.T) {
	cfg := &config.Config{
		Destinations: []config.Destination{{Name: "siem", Type: "stdout"}},
		Routes:       []config.Route{{To: []string{"siem"}}, {To: []string{"pagr"}}},
	}
	_, err := NewDispatcher(cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `routes[1]: unknown destination "pagr"`) {
		t.Errorf("got %v", err)
	}
}

func TestNewDispatcherRejectsCollidingConsumerNames(t *testing.T) {
	cfg := &config.Config{Destinations: []config.Destination{{Name: "sec.ops", Type: "stdout"}, {Name: "sec_ops", Type: "stdout"}}}
	_, err := NewDispatcher(cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `"sec.ops" and "sec_ops"`) {
		t.Errorf("got %v", err)
	}
}
