package config_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/config"
)

const routeDests = "destinations:\n  - {name: team-a, type: stdout}\n  - {name: security, type: stdout}\n"

func TestRoutesMatchOnAnyField(t *testing.T) {
	cfg, err := config.Parse("v.yaml", []byte(routeDests+`routes:
  - match: {namespace: [team-a, team-a-jobs], user: [alice], resource: [secrets]}
    to: [team-a]
    group_by: [namespace, user, resource, tags]
  - match:
      namespace: [""]
      when: >-
        alert.resource in ["clusterroles", "clusterrolebindings"]
        && !alert.user.startsWith("system:")
    to: [security]
`))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Routes[0].Match
	if !slices.Equal(m.Namespace, []string{"team-a", "team-a-jobs"}) || !slices.Equal(m.User, []string{"alice"}) || !slices.Equal(m.Resource, []string{"secrets"}) {
		t.Errorf("match lists %+v", m)
	}
	if w := cfg.Routes[1].Match.When; !strings.HasPrefix(w, `alert.resource in`) || !slices.Equal(cfg.Routes[1].Match.Namespace, []string{""}) {
		t.Errorf("second route's match %+v", cfg.Routes[1].Match)
	}
}

// A route's when is compiled at load, and each problem is placed at its
// line and column in the file, in every way YAML can hold a string.
func TestRouteWhenErrorsArePlaced(t *testing.T) {
	for _, tc := range []struct {
		name, route, want string
	}{
		{"plain", "  - match: {when: alert.namespce == \"team-a\"}\n    to: [team-a]\n",
			`v.yaml:5:25: routes[0].match.when: unknown field "namespce" of alert, did you mean "namespace"?`},
		{"double-quoted", "  - to: [team-a]\n    match:\n      when: \"alert.usr == 'bob'\"\n",
			`v.yaml:7:20: routes[0].match.when: unknown field "usr" of alert, did you mean "user"?`},
		{"block, second line", "  - to: [team-a]\n    match:\n      when: |\n        alert.namespace == \"team-a\" &&\n          alert.resorce == \"secrets\"\n",
			`v.yaml:9:17: routes[0].match.when: unknown field "resorce" of alert, did you mean "resource"?`},
		{"type", "  - to: [team-a]\n    match: {when: 'alert.count == \"1\"'}\n",
			`v.yaml:6:32: routes[0].match.when: found no matching overload for '_==_'`},
		{"not boolean", "  - to: [team-a]\n    match: {when: alert.namespace}\n",
			`v.yaml:6:19: routes[0].match.when: must be a boolean expression, but this one gives string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("v.yaml", []byte(routeDests+"routes:\n"+tc.route))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRouteErrorsSuggest(t *testing.T) {
	for _, tc := range []struct {
		name, route, want string
	}{
		{"group_by", "  - {to: [team-a], group_by: [namepsace]}\n",
			`v.yaml:5: routes[0].group_by[0]: cannot group by "namepsace", did you mean "namespace"? (want one of rule, severity, cluster, user, namespace, resource, verb, tags, or ... for all of them)`},
		{"group_by all, misspelt", "  - {to: [team-a], group_by: [....]}\n", `cannot group by "...."`},
		{"destination", "  - {to: [team-b]}\n", `v.yaml:5: routes[0].to[0]: unknown destination "team-b", did you mean "team-a"?`},
		{"match key", "  - {to: [team-a], match: {namespaces: [x]}}\n", "v.yaml:5: field namespaces not found in type config.Match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("v.yaml", []byte(routeDests+"routes:\n"+tc.route))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// The routing example of docs/notify.md is a valid configuration.
func TestNotifyDocsRoutingExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/notify.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "### Routing by team")
	if !ok {
		t.Fatal(`docs/notify.md has no "Routing by team" section`)
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the section has no yaml example")
	}
	cfg, err := config.Parse("notify.md", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 3 || cfg.Routes[1].Match.When == "" || !slices.Equal(cfg.Routes[2].Match.Resource, []string{"clusterroles", "clusterrolebindings"}) {
		t.Errorf("the example's routes are not the ones described: %+v", cfg.Routes)
	}
}
