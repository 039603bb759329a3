package analysis

import (
	"slices"

	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// An audit policy selects requests by user and group as well as by
// resource, and most rules leave out the cluster's own identities (nodes,
// the control plane). Users is what a condition demands of event.user, so
// that a policy that logs only those identities can be seen to leave such
// a rule blind.

// Users is what a condition demands of the user who made a request.
type Users struct {
	// Names, Prefixes and Suffixes are the literals the condition compares
	// event.user.username with (==, != and in; startsWith; endsWith and
	// contains), and Groups those it looks for in event.user.groups: the
	// identities worth asking a policy about.
	Names, Prefixes, Suffixes, Groups []string
	// test is the condition's guard with every atom on anything but the
	// user left unknown; nil when it decides nothing.
	test func(*audit.Event) bool
}

// Admits reports whether the condition can hold for a request by the user
// with this name and these groups (all of them, as the event carries
// them). It is false only when no such request can match.
func (u Users) Admits(name string, groups []string) bool {
	return u.test == nil || u.test(&audit.Event{User: audit.UserInfo{Username: name, Groups: groups}})
}

func (u Users) clone() Users {
	for _, l := range []*[]string{&u.Names, &u.Prefixes, &u.Suffixes, &u.Groups} {
		*l = slices.Clone(*l)
	}
	return u
}

func isUserPath(path string) bool { return path == "user.username" || path == "user.groups" }

// userGuardFold is the guard fold with atoms on other fields unknown: what
// is left is a necessary condition on the user alone.
func (a *Analyzer) userGuardFold() Fold[*guard] {
	f := a.guardFold()
	atom := f.Atom
	f.Atom = func(c *Cond) *guard {
		if c.Op != Literal && !isUserPath(c.Path) {
			return nil
		}
		return atom(c)
	}
	return f
}

// userLiteralsFold collects the literals of the atoms on the user.
func userLiteralsFold() Fold[*Users] {
	union := func(xs []*Users) *Users {
		out := &Users{}
		for _, x := range xs {
			out.Names = appendNew(out.Names, x.Names...)
			out.Prefixes = appendNew(out.Prefixes, x.Prefixes...)
			out.Suffixes = appendNew(out.Suffixes, x.Suffixes...)
			out.Groups = appendNew(out.Groups, x.Groups...)
		}
		return out
	}
	return Fold[*Users]{
		Atom: func(c *Cond) *Users {
			out := &Users{}
			s, isString := c.Lit.(types.String)
			switch {
			case c.Path == "user.username" && c.Op == Compare && isString &&
				(c.Name == operators.Equals || c.Name == operators.NotEquals):
				out.Names = []string{string(s)}
			case c.Path == "user.username" && c.Op == In:
				out.Names = slices.Clone(c.Values)
			case c.Path == "user.username" && c.Op == StringFunc && isString && c.Name == "startsWith":
				out.Prefixes = []string{string(s)}
			case c.Path == "user.username" && c.Op == StringFunc && isString:
				out.Suffixes = []string{string(s)}
			case c.Path == "user.groups" && c.Op == Contains && isString:
				out.Groups = []string{string(s)}
			}
			return out
		},
		And:     union,
		Or:      union,
		Not:     func(x *Users) *Users { return x },
		Unknown: &Users{},
	}
}

func appendNew(list []string, vals ...string) []string {
	for _, v := range vals {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

// users reads what the condition demands of the user.
func (a *Analyzer) users(c *Cond) Users {
	u := *a.userLits.fold(c)
	if g := a.userGuards.fold(c); g != nil {
		u.test = g.test
	}
	return u.clone()
}
