package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	"github.com/vigil-k8s/vigil/rules"
)

// genRule is one rule of a generated policy and why it is there.
type genRule struct {
	comment string
	noise   bool // may be left out if it hides what a rule needs
	rule    auditinternal.PolicyRule
}

// noiseRules drop read-only traffic of the cluster's own components, which
// makes up most of an audit log and which no rule looks at. Generate keeps
// only those that hide nothing a loaded rule needs.
func noiseRules() []genRule {
	core := func(res ...string) auditinternal.GroupResources {
		return auditinternal.GroupResources{Group: "", Resources: res}
	}
	return []genRule{
		{comment: "kube-proxy watching endpoints and services", noise: true, rule: auditinternal.PolicyRule{
			Level: auditinternal.LevelNone, Users: []string{"system:kube-proxy"}, Verbs: []string{"watch"},
			Resources: []auditinternal.GroupResources{core("endpoints", "services", "services/status"),
				{Group: "discovery.k8s.io", Resources: []string{"endpointslices"}}},
		}},
		{comment: "the insecure port's user reading kube-system ConfigMaps", noise: true, rule: auditinternal.PolicyRule{
			Level: auditinternal.LevelNone, Users: []string{"system:unsecured"}, Namespaces: []string{"kube-system"},
			Verbs: []string{"get"}, Resources: []auditinternal.GroupResources{core("configmaps")},
		}},
		{comment: "kubelets reading nodes", noise: true, rule: auditinternal.PolicyRule{
			Level: auditinternal.LevelNone, UserGroups: []string{"system:nodes"}, Verbs: []string{"get", "list", "watch"},
			Resources: []auditinternal.GroupResources{core("nodes")},
		}},
		{comment: "health, version and metrics probes", noise: true, rule: auditinternal.PolicyRule{
			Level: auditinternal.LevelNone, Verbs: []string{"get"},
			NonResourceURLs: []string{"/healthz*", "/readyz*", "/livez*", "/version", "/metrics"},
		}},
		{comment: "events", noise: true, rule: auditinternal.PolicyRule{
			Level: auditinternal.LevelNone,
			Resources: []auditinternal.GroupResources{core("events"),
				{Group: "events.k8s.io", Resources: []string{"events"}}},
		}},
	}
}

// credentials are logged at most at Metadata unless a rule needs their
// bodies: an audit log is read by more people than Secrets are.
func credentials() []auditinternal.GroupResources {
	return []auditinternal.GroupResources{
		{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
		{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
	}
}

// need is one resource (or resource/subresource) a rule needs at a level.
type need struct {
	level           auditinternal.Level
	group, resource string // resource as a policy names it: "pods", "pods/exec", "pods/*"
	verbs           []string
	rules           []string
}

// Generate returns the smallest audit Policy (YAML) under which Check finds
// every rule of the set ok.
func Generate(set *rules.Set) ([]byte, error) {
	body := plan(set)
	for {
		out := render(body, omitRequestReceived(set))
		p, err := Parse(out)
		if err != nil {
			return nil, fmt.Errorf("generated policy is invalid: %w\n%s", err, out)
		}
		drop := map[int]bool{}
		var bad []string
		for _, r := range Check(p, set) {
			if r.Status == OK {
				continue
			}
			for _, i := range r.PolicyRules {
				if i >= 0 && body[i].noise {
					drop[i] = true
				}
			}
			bad = append(bad, fmt.Sprintf("%s: %s: %s", r.Rule, r.Status, r.Reason))
		}
		if len(bad) == 0 {
			return out, nil
		}
		if len(drop) == 0 {
			return nil, fmt.Errorf("generated policy leaves rules not ok:\n%s", strings.Join(bad, "\n"))
		}
		var kept []genRule
		for i, g := range body {
			if !drop[i] {
				kept = append(kept, g)
			}
		}
		body = kept
	}
}

// omitRequestReceived is true unless a rule sees only RequestReceived.
func omitRequestReceived(set *rules.Set) bool {
	for _, r := range set.Rules() {
		if !slices.ContainsFunc(r.Stages, func(s string) bool { return s != string(auditinternal.StageRequestReceived) }) {
			return false
		}
	}
	return true
}

func plan(set *rules.Set) []genRule {
	body := noiseRules()
	catchAll := auditinternal.LevelNone
	var catchAllRules []string
	var needs []*need
	add := func(level auditinternal.Level, group, resource string, verbs []string, id string) {
		for _, n := range needs {
			if n.level == level && n.group == group && n.resource == resource {
				if n.verbs != nil {
					if verbs == nil {
						n.verbs = nil
					} else {
						n.verbs = union(n.verbs, verbs...)
					}
				}
				n.rules = union(n.rules, id)
				return
			}
		}
		needs = append(needs, &need{level: level, group: group, resource: resource, verbs: slices.Clone(verbs), rules: []string{id}})
	}
	for _, r := range set.Rules() {
		n := r.Needs()
		level := NeededLevel(n)
		ts, anyResource := targets(n)
		if anyResource || slices.ContainsFunc(ts, func(t target) bool { return t.nonResource }) {
			if !catchAll.GreaterOrEqual(level) {
				catchAll = level
			}
			catchAllRules = append(catchAllRules, r.ID)
		}
		for _, t := range ts {
			if t.nonResource {
				continue
			}
			switch t.sub {
			case "":
				add(level, t.group, t.resource, n.Verbs, r.ID)
			case "*":
				add(level, t.group, t.resource, n.Verbs, r.ID)
				if b, known := builtins()[t.resource]; !known || len(b.subresources) > 0 {
					add(level, t.group, t.resource+"/*", n.Verbs, r.ID)
				}
			default:
				add(level, t.group, t.resource+"/"+t.sub, n.Verbs, r.ID)
			}
		}
	}
	isCredential := func(group, resource string) bool {
		return slices.ContainsFunc(credentials(), func(gr auditinternal.GroupResources) bool {
			return gr.Group == group && slices.Contains(gr.Resources, resource)
		})
	}
	for _, level := range []auditinternal.Level{auditinternal.LevelRequestResponse, auditinternal.LevelRequest, auditinternal.LevelMetadata} {
		if level == auditinternal.LevelMetadata && catchAll.GreaterOrEqual(auditinternal.LevelMetadata) {
			if catchAll != auditinternal.LevelMetadata {
				body = append(body, genRule{comment: "credentials: never their content", rule: auditinternal.PolicyRule{
					Level: auditinternal.LevelMetadata, Resources: credentials(),
				}})
			}
			continue
		}
		var at []*need
		for _, n := range needs {
			// The catch-all logs these anyway, unless it is above
			// Metadata and they are credentials, which are capped first.
			if n.level == level && (!catchAll.GreaterOrEqual(level) || isCredential(n.group, n.resource)) {
				at = append(at, n)
			}
		}
		body = append(body, groupByVerbs(level, at)...)
	}
	last := genRule{comment: "everything else: no rule needs it", rule: auditinternal.PolicyRule{Level: auditinternal.LevelNone}}
	if catchAll != auditinternal.LevelNone {
		last = genRule{comment: "any request, for " + strings.Join(catchAllRules, ", "), rule: auditinternal.PolicyRule{Level: catchAll}}
	}
	return append(body, last)
}

// groupByVerbs makes one policy rule per set of verbs, its resources
// grouped by API group.
func groupByVerbs(level auditinternal.Level, needs []*need) []genRule {
	var out []genRule
	for _, n := range needs {
		slices.Sort(n.verbs)
		key := strings.Join(n.verbs, ",")
		i := slices.IndexFunc(out, func(g genRule) bool {
			return strings.Join(g.rule.Verbs, ",") == key && (g.rule.Verbs == nil) == (n.verbs == nil)
		})
		if i < 0 {
			out = append(out, genRule{rule: auditinternal.PolicyRule{Level: level, Verbs: n.verbs}})
			i = len(out) - 1
		}
		g := &out[i]
		j := slices.IndexFunc(g.rule.Resources, func(gr auditinternal.GroupResources) bool { return gr.Group == n.group })
		if j < 0 {
			g.rule.Resources = append(g.rule.Resources, auditinternal.GroupResources{Group: n.group})
			j = len(g.rule.Resources) - 1
		}
		g.rule.Resources[j].Resources = union(g.rule.Resources[j].Resources, n.resource)
		ids := union(strings.Split(g.comment, ", "), n.rules...)
		ids = slices.DeleteFunc(ids, func(s string) bool { return s == "" })
		g.comment = strings.Join(ids, ", ")
	}
	for i := range out {
		out[i].comment = "for " + out[i].comment
	}
	return out
}

// render writes a policy as YAML, with each rule's reason as a comment.
func render(body []genRule, omitRequestReceived bool) []byte {
	var b strings.Builder
	b.WriteString("# Audit policy for vigil's rules (vigil policy generate).\n")
	b.WriteString("apiVersion: audit.k8s.io/v1\nkind: Policy\n")
	if omitRequestReceived {
		b.WriteString("omitStages: [RequestReceived]\n")
	}
	b.WriteString("rules:\n")
	for _, g := range body {
		for _, line := range wrap(g.comment, 96) {
			b.WriteString("  # " + line + "\n")
		}
		r := g.rule
		fmt.Fprintf(&b, "  - level: %s\n", r.Level)
		flow := func(key string, vals []string) {
			if len(vals) > 0 {
				fmt.Fprintf(&b, "    %s: %s\n", key, flowList(vals))
			}
		}
		flow("users", r.Users)
		flow("userGroups", r.UserGroups)
		flow("verbs", r.Verbs)
		flow("namespaces", r.Namespaces)
		if len(r.Resources) > 0 {
			b.WriteString("    resources:\n")
			for _, gr := range r.Resources {
				fmt.Fprintf(&b, "      - group: %s\n", scalar(gr.Group))
				fmt.Fprintf(&b, "        resources: %s\n", flowList(gr.Resources))
			}
		}
		flow("nonResourceURLs", r.NonResourceURLs)
	}
	return []byte(b.String())
}

func flowList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = scalar(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// scalar quotes a YAML value unless it is plainly a word.
func scalar(s string) string {
	plain := s != ""
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '/' && c != '_' {
			plain = false
		}
	}
	if plain && s != "true" && s != "false" && s != "null" {
		return s
	}
	return strconv.Quote(s)
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
