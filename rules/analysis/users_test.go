package analysis

import (
	"slices"
	"testing"

	celast "github.com/google/cel-go/common/ast"
)

func TestUsersReadsWhoAConditionAdmits(t *testing.T) {
	lists := map[string][]string{"node_groups": {"system:nodes"}, "cp": {"system:kube-scheduler"}}
	macros := map[string]celast.Expr{
		"node_identity": parsed(t, `event.user.groups.exists(g, g in lists.node_groups) || event.user.username.startsWith("system:node:")`),
	}
	a := New(lists, macros)
	type user struct {
		name   string
		groups []string
	}
	node := user{"system:node:n1", []string{"system:nodes", "system:authenticated"}}
	nodeGroupOnly := user{"alice", []string{"system:nodes"}}
	alice := user{"alice", []string{"system:authenticated"}}
	scheduler := user{"system:kube-scheduler", nil}
	for _, c := range []struct {
		cond     string
		admits   []user
		excludes []user
		names    []string
		prefixes []string
		groups   []string
		suffixes []string
	}{{
		cond:     `event.verb == "get" && !macros.node_identity && !(event.user.username in lists.cp)`,
		admits:   []user{alice},
		excludes: []user{node, nodeGroupOnly, scheduler},
		names:    []string{"system:kube-scheduler"}, prefixes: []string{"system:node:"}, groups: []string{"system:nodes"},
	}, {
		// Not of a necessary condition decides nothing.
		cond:     `!(macros.node_identity && event.verb == "get")`,
		admits:   []user{alice, node, nodeGroupOnly, scheduler},
		prefixes: []string{"system:node:"}, groups: []string{"system:nodes"},
	}, {
		cond:     `event.user.username.endsWith("-admin") || "system:masters" in event.user.groups`,
		admits:   []user{{"ops-admin", nil}, {"bob", []string{"system:masters"}}},
		excludes: []user{alice, node},
		suffixes: []string{"-admin"}, groups: []string{"system:masters"},
	}, {
		cond:   `event.user.username.matches("^x")`,
		admits: []user{alice, node},
	}} {
		_, n := a.Condition(parsed(t, c.cond))
		u := n.Users
		for _, x := range c.admits {
			if !u.Admits(x.name, x.groups) {
				t.Errorf("%s: excludes %v", c.cond, x)
			}
		}
		for _, x := range c.excludes {
			if u.Admits(x.name, x.groups) {
				t.Errorf("%s: admits %v", c.cond, x)
			}
		}
		if !slices.Equal(u.Names, c.names) || !slices.Equal(u.Prefixes, c.prefixes) || !slices.Equal(u.Groups, c.groups) || !slices.Equal(u.Suffixes, c.suffixes) {
			t.Errorf("%s: names %q prefixes %q suffixes %q groups %q", c.cond, u.Names, u.Prefixes, u.Suffixes, u.Groups)
		}
	}
}
