package policy

import (
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/vigil-k8s/vigil/rules"
)

// kube-apiserver gives every request the groups of how it was
// authenticated: system:authenticated to every authenticated user,
// system:unauthenticated to system:anonymous, system:serviceaccounts and
// system:serviceaccounts:<ns> to the service account
// system:serviceaccount:<ns>:<name>. Kubelets are system:node:<name> in
// system:nodes, which is what the Node authorizer takes a node to be. The
// identities a policy is probed as carry these groups, so that a policy
// rule on one of them selects the users it selects in a cluster, and a rule
// that leaves out nodes by name or by group is seen to leave them out.
const (
	anonymous            = "system:anonymous"
	groupAuthenticated   = "system:authenticated"
	groupUnauthenticated = "system:unauthenticated"
	groupNodes           = "system:nodes"
	groupServiceAccounts = "system:serviceaccounts"
	serviceAccountPrefix = "system:serviceaccount:"
	nodePrefix           = "system:node:"
	// probeName is a name part no rule or policy names; "." rather than
	// ":" keeps a service account's namespace and name apart.
	probeNamePart = "policy-check.any"
)

// identity is the user name as kube-apiserver authenticates it, with the
// groups that name implies and extra ones.
func identity(name string, extra ...string) *user.DefaultInfo {
	groups := []string{groupAuthenticated}
	if name == anonymous {
		groups = []string{groupUnauthenticated}
	}
	if ns, ok := serviceAccountNamespace(name); ok {
		groups = append(groups, groupServiceAccounts, groupServiceAccounts+":"+ns)
	}
	if strings.HasPrefix(name, nodePrefix) {
		groups = append(groups, groupNodes)
	}
	return &user.DefaultInfo{Name: name, Groups: union(groups, extra...)}
}

func serviceAccountNamespace(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, serviceAccountPrefix)
	ns, sa, two := strings.Cut(rest, ":")
	return ns, ok && two && ns != "" && sa != "" && !strings.Contains(sa, ":")
}

// identityGroup says that a group follows from a user's name rather than
// being given to some users: its members are probed as member names them.
func identityGroup(g string) bool {
	switch g {
	case groupAuthenticated, groupUnauthenticated, groupNodes, groupServiceAccounts:
		return true
	}
	return strings.HasPrefix(g, groupServiceAccounts+":")
}

// member is a user in group g, named as Kubernetes names its members.
func member(g string) *user.DefaultInfo {
	switch {
	case g == groupUnauthenticated:
		return identity(anonymous)
	case g == groupNodes:
		return identity(nodePrefix + probeNamePart + "-node")
	case g == groupServiceAccounts:
		return identity(serviceAccountPrefix + probeNamePart + "-namespace:" + probeNamePart + "-name")
	case strings.HasPrefix(g, groupServiceAccounts+":"):
		return identity(serviceAccountPrefix + strings.TrimPrefix(g, groupServiceAccounts+":") + ":" + probeNamePart + "-name")
	}
	return identity(probeUser, g)
}

// identities are the users a rule is asked about, those its condition
// admits. The candidates are: a user the policy does not name,
// system:anonymous, each user the policy or the rule names, a member of
// each group either names, and a name with each prefix and suffix the rule
// tests for; each with only the groups its name implies, with each other
// group named, and with all of them. Of users the policy treats alike, one
// is kept. excluded are the users the policy treats otherwise that the
// condition leaves out, to tell what the policy logs that the rule cannot
// see. When the analysis admits none, every candidate is asked about: the
// condition may hold for a user it could not construct.
func (p *Policy) identities(n rules.Needs) (admitted, excluded []user.Info) {
	u := n.Users
	var candidates []*user.DefaultInfo
	names := union([]string{probeUser, anonymous}, p.users...)
	names = union(names, u.Names...)
	for _, pre := range u.Prefixes {
		name := pre + probeNamePart
		if strings.HasPrefix(name, serviceAccountPrefix) {
			if _, ok := serviceAccountNamespace(name); !ok {
				name += ":" + probeNamePart + "-name"
			}
		}
		names = union(names, name)
		for _, suf := range u.Suffixes {
			names = union(names, pre+probeNamePart+suf)
		}
	}
	for _, suf := range u.Suffixes {
		names = union(names, probeNamePart+suf)
	}
	groups := union(slices.Clone(p.groups), u.Groups...)
	var extra []string
	for _, g := range groups {
		if identityGroup(g) {
			candidates = append(candidates, member(g))
		} else {
			extra = append(extra, g)
		}
	}
	for _, name := range names {
		candidates = append(candidates, identity(name))
		if name == anonymous {
			continue
		}
		for _, g := range extra {
			candidates = append(candidates, identity(name, g))
		}
		if len(extra) > 1 {
			candidates = append(candidates, identity(name, extra...))
		}
	}
	in, out := map[string]bool{}, map[string]bool{}
	for _, c := range candidates {
		key := p.class(c)
		if u.Admits(c.Name, c.Groups) {
			if !in[key] {
				in[key] = true
				admitted = append(admitted, c)
			}
			continue
		}
		if !out[key] {
			out[key] = true
			excluded = append(excluded, c)
		}
	}
	if len(admitted) == 0 {
		return excluded, nil
	}
	return admitted, slices.DeleteFunc(excluded, func(c user.Info) bool { return in[p.class(c)] })
}

// class is what the policy can tell of a user: whether it names the user,
// and which of the groups it names the user is in.
func (p *Policy) class(u user.Info) string {
	name := ""
	if slices.Contains(p.users, u.GetName()) {
		name = u.GetName()
	}
	var gs []string
	for _, g := range u.GetGroups() {
		if slices.Contains(p.groups, g) {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	return name + "\x00" + strings.Join(gs, "\x00")
}
