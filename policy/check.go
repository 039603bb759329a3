// Package policy relates vigil's rules to kube-apiserver's audit policy:
// which rules a policy leaves blind, and the smallest policy that lets every
// rule fire. Policies are loaded and evaluated with kube-apiserver's own
// code, so the answers are the apiserver's.
package policy

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vigil-k8s/vigil/rules"
)

// Probe values stand for "anything the policy does not name". The ":" keeps
// namespaces, names and resources from being real ones (Kubernetes names
// cannot hold it), so no policy rule selects them by name.
const (
	probeUser      = "policy-check:any-user"
	probeNamespace = "policy-check:any-namespace"
	probeName      = "policy-check:any-name"
	probeResource  = "policy-check:any-resource"
	probeGroup     = "policy-check.any-group"
	probePath      = "/policy-check:any-path"
)

// Policy is a loaded kube-apiserver audit policy.
type Policy struct {
	rules []auditinternal.PolicyRule // as written, for rendering
	eval  audit.PolicyRuleEvaluator
	// one evaluator per rule, matching exactly what that rule selects, to
	// name the rule that decides a request
	each []audit.PolicyRuleEvaluator
	// what the policy names, to probe it with
	users, groups, namespaces, verbs, apiGroups, resourceNames []string
	subresources                                               map[string][]string // by resource; "*" for any
}

// Load reads an audit Policy file (audit.k8s.io/v1) as kube-apiserver does.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit policy: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("audit policy %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes and validates an audit Policy as kube-apiserver does, but
// rejects unknown fields, which kube-apiserver only warns about: a
// misspelt selector is dropped, and its rule then selects every request.
func Parse(data []byte) (*Policy, error) {
	strict := serializer.NewCodecFactory(audit.Scheme, serializer.EnableStrict).UniversalDecoder()
	if _, _, err := strict.Decode(data, nil, &auditinternal.Policy{}); err != nil && runtime.IsStrictDecodingError(err) {
		return nil, fmt.Errorf("%w (kube-apiserver ignores unknown fields, so the policy would not say what it means)", err)
	}
	ip, err := auditpolicy.LoadPolicyFromBytes(data)
	if err != nil {
		return nil, err
	}
	return newPolicy(ip), nil
}

func newPolicy(ip *auditinternal.Policy) *Policy {
	p := &Policy{
		rules:        ip.DeepCopy().Rules,
		eval:         auditpolicy.NewPolicyRuleEvaluator(ip.DeepCopy()),
		subresources: map[string][]string{},
	}
	add := func(list *[]string, vals ...string) {
		for _, v := range vals {
			if !slices.Contains(*list, v) {
				*list = append(*list, v)
			}
		}
	}
	for _, r := range ip.Rules {
		single := r.DeepCopy()
		single.Level = auditinternal.LevelRequestResponse // anything but None: a match shows
		single.OmitStages = nil
		p.each = append(p.each, auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{*single}}))
		add(&p.users, r.Users...)
		add(&p.groups, r.UserGroups...)
		add(&p.namespaces, r.Namespaces...)
		add(&p.verbs, r.Verbs...)
		for _, gr := range r.Resources {
			if gr.Group != "*" {
				add(&p.apiGroups, gr.Group)
			}
			add(&p.resourceNames, gr.ResourceNames...)
			for _, res := range gr.Resources {
				if base, sub, ok := strings.Cut(res, "/"); ok && sub != "*" {
					l := p.subresources[base]
					add(&l, sub)
					p.subresources[base] = l
				}
			}
		}
	}
	return p
}

// Status is what a policy lets a rule see.
type Status string

const (
	// OK: every request the rule can match is logged at the level it needs.
	OK Status = "ok"
	// Partial: some of them are, for some users, groups, namespaces, verbs
	// or resources.
	Partial Status = "partial"
	// Blind: none of them are; the rule can never fire.
	Blind Status = "blind"
)

// Result is the verdict on one rule.
type Result struct {
	Rule   string `json:"rule"`
	Status Status `json:"status"`
	// Needs is the audit level the rule needs: Metadata, Request or
	// RequestResponse.
	Needs  string `json:"needs"`
	Reason string `json:"reason"`
	// PolicyRules are the indexes of the policy rules that keep requests
	// the rule matches from it (-1: no rule matched them).
	PolicyRules []int `json:"-"`
}

// NeededLevel is the audit level at which kube-apiserver logs what a rule
// reads.
func NeededLevel(n rules.Needs) auditinternal.Level {
	switch {
	case n.ResponseObject:
		return auditinternal.LevelRequestResponse
	case n.RequestObject:
		return auditinternal.LevelRequest
	}
	return auditinternal.LevelMetadata
}

// Check reports, for every rule of the set in file order, whether the policy
// logs what the rule needs.
func Check(p *Policy, set *rules.Set) []Result {
	var out []Result
	for _, r := range set.Rules() {
		out = append(out, p.checkRule(r))
	}
	return out
}

// outcome is how the policy treats one probe.
type outcome struct {
	index  int // policy rule that decided, -1 for none
	logged bool
	why    string // when not logged
}

func (p *Policy) checkRule(r *rules.Rule) Result {
	n := r.Needs()
	need := NeededLevel(n)
	res := Result{Rule: r.ID, Needs: string(need)}
	var loggedBy []int
	type miss struct {
		index int
		why   string
	}
	var missed []miss
	ids, excluded := p.identities(n)
	for _, attrs := range p.probes(n, ids) {
		o := p.judge(attrs, need, r.Stages)
		if o.logged {
			if !slices.Contains(loggedBy, o.index) {
				loggedBy = append(loggedBy, o.index)
			}
			continue
		}
		if !slices.ContainsFunc(missed, func(m miss) bool { return m.index == o.index && m.why == o.why }) {
			missed = append(missed, miss{o.index, o.why})
		}
	}
	slices.Sort(loggedBy)
	// What the policy logs only for users the condition leaves out, the
	// rule never sees: said, so that a blind rule is not a puzzle.
	var unseen []int
	for _, attrs := range p.probes(n, excluded) {
		if o := p.judge(attrs, need, r.Stages); o.logged && !slices.Contains(loggedBy, o.index) && !slices.Contains(unseen, o.index) {
			unseen = append(unseen, o.index)
		}
	}
	slices.Sort(unseen)
	slices.SortStableFunc(missed, func(a, b miss) int { return a.index - b.index })
	var whys []string
	for _, m := range missed {
		whys = append(whys, m.why)
		if !slices.Contains(res.PolicyRules, m.index) {
			res.PolicyRules = append(res.PolicyRules, m.index)
		}
	}
	by := make([]string, len(loggedBy))
	for i, idx := range loggedBy {
		by[i] = p.Describe(idx)
	}
	if len(unseen) > 0 {
		only := make([]string, len(unseen))
		for i, idx := range unseen {
			only[i] = p.Describe(idx)
		}
		whys = append(whys, strings.Join(only, " and ")+" logs only users its condition excludes")
	}
	switch {
	case len(missed) == 0 && len(loggedBy) == 0:
		// Not the policy's doing: no request can satisfy the condition.
		res.Status = OK
		res.Reason = "its condition matches no request"
	case len(missed) == 0:
		res.Status = OK
		res.Reason = "logged by " + strings.Join(by, ", ")
	case len(loggedBy) == 0:
		res.Status = Blind
		res.Reason = strings.Join(whys, "; ")
	default:
		res.Status = Partial
		res.Reason = fmt.Sprintf("logged at %s only where %s applies; %s", need, strings.Join(by, " or "), strings.Join(whys, "; "))
	}
	return res
}

func (p *Policy) judge(attrs authorizer.AttributesRecord, need auditinternal.Level, stages []string) outcome {
	cfg := p.eval.EvaluatePolicyRule(attrs)
	o := outcome{index: -1}
	for i, e := range p.each {
		if e.EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			o.index = i
			break
		}
	}
	who := "no policy rule matches (level None)"
	if o.index >= 0 {
		who = p.Describe(o.index)
	}
	switch {
	case cfg.Level == auditinternal.LevelNone:
		o.why = who + " does not log it"
		if o.index < 0 {
			o.why = who
		}
	case !cfg.Level.GreaterOrEqual(need):
		o.why = fmt.Sprintf("%s logs it below %s", who, need)
	case !slices.ContainsFunc(stages, func(s string) bool { return !slices.Contains(cfg.OmitStages, auditinternal.Stage(s)) }):
		o.why = fmt.Sprintf("%s omits its stages %s", who, strings.Join(stages, ", "))
	default:
		o.logged = true
	}
	return o
}

func union(a []string, b ...string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// probes are representative requests a rule can match: every combination
// of the values the rule pins, and, where it pins nothing, of a value the
// policy does not name and each value it does.
func (p *Policy) probes(n rules.Needs, ids []user.Info) []authorizer.AttributesRecord {
	verbs := n.Verbs
	if verbs == nil {
		verbs = union(standardVerbs(), p.verbs...)
	}
	names := n.Names
	if names == nil {
		names = union([]string{probeName}, p.resourceNames...)
	}
	anyNamespace := union([]string{"", probeNamespace}, p.namespaces...)
	ts, anyResource := targets(n)
	if anyResource {
		// A rule that can match any resource is probed with resources the
		// policy does not single out: the rules that drop noise (events,
		// leases) would otherwise make every such rule partial.
		for _, g := range union([]string{probeGroup}, p.apiGroups...) {
			ts = append(ts, target{group: g, resource: probeResource, namespaced: true})
		}
		ts = append(ts, target{nonResource: true})
	}
	var out []authorizer.AttributesRecord
	for _, u := range ids {
		for _, verb := range verbs {
			for _, t := range ts {
				if t.nonResource {
					out = append(out, authorizer.AttributesRecord{User: u, Verb: verb, Path: probePath})
					continue
				}
				groups := []string{t.group}
				if t.group == "*" {
					groups = union([]string{probeGroup}, p.apiGroups...)
				}
				subs := []string{t.sub}
				if t.sub == "*" {
					// Only the subresources the policy names: the others are
					// decided like the resource itself would be, and probing
					// every verb on every subresource (create deployments/status)
					// reports requests no client makes.
					subs = union(union([]string{""}, p.subresources[t.resource]...), p.subresources["*"]...)
				}
				nss := n.Namespaces
				switch {
				case nss != nil:
				case t.namespaced:
					nss = anyNamespace
				default:
					nss = []string{""}
				}
				for _, g := range groups {
					for _, sub := range subs {
						for _, ns := range nss {
							for _, name := range names {
								out = append(out, authorizer.AttributesRecord{
									User: u, Verb: verb, APIGroup: g, APIVersion: "v1",
									Resource: t.resource, Subresource: sub, Namespace: ns, Name: name,
									ResourceRequest: true,
								})
							}
						}
					}
				}
			}
		}
	}
	return out
}

// target is a kind of request a rule can match. group "*" is any group,
// sub "*" the resource and any of its subresources.
type target struct {
	group, resource, sub string
	namespaced           bool
	nonResource          bool
}

// targets lists the resources a rule can match; anyResource when its
// condition does not pin the resource.
func targets(n rules.Needs) (ts []target, anyResource bool) {
	if n.Resources == nil {
		return nil, true
	}
	table := builtins()
	for _, res := range n.Resources {
		if res == "" {
			ts = append(ts, target{nonResource: true})
			continue
		}
		b, known := table[res]
		groups := b.groups
		if n.APIGroups != nil {
			groups = n.APIGroups
		} else if !known {
			groups = []string{"*"}
		}
		for _, g := range groups {
			builtin := known && slices.Contains(b.groups, g)
			subs := []string{"*"}
			if n.Subresources != nil {
				subs = nil
				for _, s := range n.Subresources {
					// A subresource the resource does not have cannot be
					// requested; probing it would only report noise.
					if s == "" || !builtin || slices.Contains(b.subresources, s) {
						subs = append(subs, s)
					}
				}
			}
			for _, s := range subs {
				ts = append(ts, target{group: g, resource: res, sub: s, namespaced: !builtin || b.namespaced})
			}
		}
	}
	return ts, false
}

// Describe renders policy rule i as "rules[i] (level L, what it selects)".
func (p *Policy) Describe(i int) string {
	if i < 0 || i >= len(p.rules) {
		return "no policy rule"
	}
	r := p.rules[i]
	parts := []string{"level " + string(r.Level)}
	list := func(key string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, fmt.Sprintf("%s [%s]", key, strings.Join(vals, ", ")))
		}
	}
	list("users", r.Users)
	list("userGroups", r.UserGroups)
	list("verbs", r.Verbs)
	list("namespaces", r.Namespaces)
	var res []string
	for _, gr := range r.Resources {
		prefix := ""
		if gr.Group != "" {
			prefix = gr.Group + "/"
		}
		named := ""
		if len(gr.ResourceNames) > 0 {
			named = " named " + strings.Join(gr.ResourceNames, "|")
		}
		if len(gr.Resources) == 0 {
			res = append(res, prefix+"*"+named)
		}
		for _, x := range gr.Resources {
			res = append(res, prefix+x+named)
		}
	}
	if len(res) > 6 {
		res = append(res[:5], fmt.Sprintf("and %d more", len(res)-5))
	}
	list("resources", res)
	list("nonResourceURLs", r.NonResourceURLs)
	stages := make([]string, len(r.OmitStages))
	for j, s := range r.OmitStages {
		stages[j] = string(s)
	}
	list("omitStages", stages)
	return fmt.Sprintf("rules[%d] (%s)", i, strings.Join(parts, ", "))
}
