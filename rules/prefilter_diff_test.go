package rules

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/rules/parse"
)

const corpusDir = "../../shared/corpus"

// diffEval compares Eval, which goes through the prefilter, with every rule
// evaluated on the event. The prefilter may only skip rules that cannot
// match; a difference either way is a bug.
func diffEval(t testing.TB, set *Set, ev *audit.Event, where string) {
	t.Helper()
	matches, err := set.Eval(context.Background(), ev)
	var ee *EvalErrors
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: Eval: %v", where, err)
	}
	got := make([]string, 0, len(matches))
	for _, m := range matches {
		got = append(got, m.Rule.ID)
	}
	want := set.evalUnfiltered(ev)
	slices.Sort(got)
	slices.Sort(want)
	if slices.Equal(got, want) {
		return
	}
	var dropped, added []string
	for _, id := range want {
		if !slices.Contains(got, id) {
			dropped = append(dropped, id)
		}
	}
	for _, id := range got {
		if !slices.Contains(want, id) {
			added = append(added, id)
		}
	}
	data, _ := json.Marshal(ev)
	t.Errorf("%s: prefiltered Eval differs from evaluating every rule: dropped %v, added %v\n  event: %s", where, dropped, added, data)
}

// corpusEvents reads every audit Event of the shared corpora, as leniently
// as rule tests do (a missing auditID or stage is filled in), so that the
// partial events of the labelled corpora are compared too.
func corpusEvents(t testing.TB) map[string][]*audit.Event {
	t.Helper()
	out := map[string][]*audit.Event{}
	lines := func(name string) {
		data, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := parse.EventLines(data) // malformed lines (fal_01_003) are not events
		out[name] = append(out[name], evs...)
	}
	lines("immudb-log-audit/k8s.log")
	lines("audit2rbac/demo.log")
	lines("packt-learn-kubernetes-security/audit-records.json")
	lines("packt-learn-kubernetes-security/audit-output.json")
	falco, err := filepath.Glob(filepath.Join(corpusDir, "falco-trace-files", "*.json"))
	if err != nil || len(falco) == 0 {
		t.Fatalf("falco trace files: %v", err)
	}
	for _, f := range falco {
		lines(strings.TrimPrefix(f, corpusDir+"/"))
	}

	f, err := os.Open(filepath.Join(corpusDir, "panther-analysis", "panther_k8s_rule_tests.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var w struct {
			Log json.RawMessage `json:"log"`
		}
		if json.Unmarshal(sc.Bytes(), &w) != nil {
			continue
		}
		// Only audit Events: AKS and GKE wrappers are other formats.
		var probe struct {
			Verb string `json:"verb"`
		}
		if json.Unmarshal(w.Log, &probe) != nil || probe.Verb == "" {
			continue
		}
		if ev, err := parse.TestEvent(w.Log, "panther"); err == nil {
			out["panther"] = append(out["panther"], ev)
		}
	}
	return out
}

// packEvents are the events of the default pack's own tests, positives and
// negatives: they sit on the edges of the conditions.
func packEvents(set *Set) []*audit.Event {
	var out []*audit.Event
	for _, tc := range set.Tests() {
		out = append(out, tc.Events...)
	}
	return out
}

// TestPrefilterNeverDropsAMatch checks, over every corpus and the default
// pack's test events, that the prefilter never hides a match from Eval.
func TestPrefilterNeverDropsAMatch(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	total, matched := 0, 0
	corpora := corpusEvents(t)
	corpora["default pack tests"] = packEvents(set)
	for name, evs := range corpora {
		if len(evs) == 0 && !strings.HasSuffix(name, "fal_01_003.json") { // {"kind": 0} is no event
			t.Errorf("%s: no events read", name)
		}
		for i, ev := range evs {
			diffEval(t, set, ev, name+"#"+itoa(i))
			total++
			if len(set.evalUnfiltered(ev)) > 0 {
				matched++
			}
		}
	}
	// The comparison means little unless many events do match something.
	if total < 3000 || matched < 100 {
		t.Errorf("compared %d events of which %d match a rule; want at least 3000 and 100", total, matched)
	}
}

// TestPrefilterNeverDropsAMatchUnderMutation moves each matching event of
// the pack's tests and the labelled corpora along the fields the prefilter
// reads — resource, subresource, stage, and every field a guard compares
// (verb, user, groups, response code, impersonation, …) — through every
// value a rule names, so that each rule's constraint is probed from both
// sides.
func TestPrefilterNeverDropsAMatchUnderMutation(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	resources := []string{"", "pods", "secrets", "no-such-resource"}
	guarded := 0
	for _, r := range set.rules {
		resources = appendNew(resources, r.resources...)
		if r.guarded() {
			guarded++
		}
	}
	// The guards must cover the rules that watch every resource, or most
	// events would still reach CEL.
	for _, id := range []string{"anonymous-request-allowed", "forbidden-burst", "impersonation-used"} {
		if r, ok := set.Rule(id); !ok || !r.guarded() {
			t.Errorf("rule %s has no guard", id)
		}
	}
	probes := map[string][]string{
		"objectRef.resource":    resources,
		"objectRef.subresource": {"", "exec", "attach", "portforward", "proxy", "token", "status", "ephemeralcontainers", "log"},
		"stage":                 {audit.StageRequestReceived, audit.StageResponseStarted, audit.StageResponseComplete, audit.StagePanic},
		"verb":                  {"", "get", "create", "no-such-verb"},
		"user.username":         {"", "alice"},
		"user.groups":           {"", "developers"},
		"responseStatus.code":   {"0", "200", "403", "500"},
		"objectRef":             {""},
	}
	for path, vs := range set.probes {
		probes[path] = appendNew(probes[path], vs...)
	}
	for _, want := range []string{"user.username", "user.groups", "responseStatus.code", "impersonatedUser"} {
		if len(set.probes[want]) == 0 {
			t.Errorf("no guard compares %s", want)
		}
	}
	paths := make([]string, 0, len(probes))
	for p := range probes {
		paths = append(paths, p)
	}
	slices.Sort(paths)

	var bases []*audit.Event
	corpora := corpusEvents(t)
	for _, name := range []string{"panther", "audit2rbac/demo.log", "packt-learn-kubernetes-security/audit-records.json"} {
		bases = append(bases, corpora[name]...)
	}
	for name, evs := range corpora {
		if strings.HasPrefix(name, "falco-trace-files/") {
			bases = append(bases, evs...)
		}
	}
	bases = append(bases, packEvents(set)...)
	// Each base event tries a rotating share of the values, so that every
	// value meets many events while the test stays quick under -race.
	stride := 4
	if testing.Short() {
		stride = 16
	}
	n := 0
	for i, base := range bases {
		for _, path := range paths {
			for j, v := range probes[path] {
				if path != "stage" && (i+j)%stride != 0 {
					continue
				}
				ev, ok := mutate(base, path, v)
				if !ok {
					t.Fatalf("the test cannot move events along %s, which a guard compares", path)
				}
				diffEval(t, set, ev, path+" "+v)
				n++
			}
		}
	}
	if n < 4000 {
		t.Errorf("only %d mutated events compared", n)
	}
}

// mutate returns a copy of base with the field at path set to v: for a
// list, v is added to it ("" empties it); for an optional part, its
// presence is toggled.
func mutate(base *audit.Event, path, v string) (*audit.Event, bool) {
	ev := *base
	user := func() *audit.UserInfo {
		u := audit.UserInfo{}
		if base.ImpersonatedUser != nil {
			u = *base.ImpersonatedUser
		}
		ev.ImpersonatedUser = &u
		return &u
	}
	status := func() *audit.Status {
		s := audit.Status{}
		if base.ResponseStatus != nil {
			s = *base.ResponseStatus
		}
		ev.ResponseStatus = &s
		return &s
	}
	list := func(l []string) []string {
		if v == "" {
			return nil
		}
		return append(slices.Clone(l), v)
	}
	if name, ok := strings.CutPrefix(path, "objectRef."); ok {
		var o audit.ObjectReference
		fields := map[string]*string{"resource": &o.Resource, "subresource": &o.Subresource, "namespace": &o.Namespace,
			"name": &o.Name, "uid": &o.UID, "apiGroup": &o.APIGroup, "apiVersion": &o.APIVersion, "resourceVersion": &o.ResourceVersion}
		if fields[name] == nil {
			return nil, false
		}
		if base.ObjectRef != nil {
			o = *base.ObjectRef
		}
		*fields[name] = v
		ev.ObjectRef = &o
		return &ev, true
	}
	switch path {
	case "verb":
		ev.Verb = v
	case "stage":
		ev.Stage = v
	case "level":
		ev.Level = v
	case "requestURI":
		ev.RequestURI = v
	case "userAgent":
		ev.UserAgent = v
	case "user.username":
		ev.User.Username = v
	case "user.uid":
		ev.User.UID = v
	case "user.groups":
		ev.User.Groups = list(ev.User.Groups)
	case "sourceIPs":
		ev.SourceIPs = list(ev.SourceIPs)
	case "impersonatedUser.username":
		user().Username = v
	case "impersonatedUser.groups":
		u := user()
		u.Groups = list(u.Groups)
	case "impersonatedUser":
		if base.ImpersonatedUser != nil {
			ev.ImpersonatedUser = nil
		} else {
			user().Username = "bob"
		}
	case "objectRef":
		if base.ObjectRef != nil {
			ev.ObjectRef = nil
		} else {
			ev.ObjectRef = &audit.ObjectReference{}
		}
	case "responseStatus":
		if base.ResponseStatus != nil {
			ev.ResponseStatus = nil
		} else {
			status()
		}
	case "responseStatus.code":
		code, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, false
		}
		status().Code = code
	case "responseStatus.status":
		status().Status = v
	case "responseStatus.reason":
		status().Reason = v
	case "responseStatus.message":
		status().Message = v
	default:
		return nil, false
	}
	return &ev, true
}

func appendNew(to []string, vs ...string) []string {
	for _, v := range vs {
		if !slices.Contains(to, v) {
			to = append(to, v)
		}
	}
	return to
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// FuzzPrefilter mutates the fields rules read — verb, resource,
// subresource, namespace, stage, user, groups, response code, the
// impersonated user and the bodies — of events from the pack's tests, and checks that Eval with the
// prefilter finds exactly the matches of evaluating every rule.
//
//	go test -run '^$' -fuzz FuzzPrefilter ./rules
func FuzzPrefilter(f *testing.F) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		f.Fatal(err)
	}
	bases := packEvents(set)
	if len(bases) == 0 {
		f.Fatal("the default pack has no test events")
	}
	type seed struct {
		base                                              uint
		mask                                              uint16
		verb, resource, sub, ns, stage, user, group, body string
		code                                              int64
	}
	for _, s := range []seed{
		{0, 0, "", "", "", "", "", "", "", "", 0},
		{1, 0x3ff, "get", "secrets", "", "default", "ResponseComplete", "system:serviceaccount:default:app", "system:serviceaccounts", "", 200},
		{2, 0x3ff, "create", "pods", "exec", "default", "ResponseStarted", "dev", "developers", "", 101},
		{3, 0x3ff, "create", "pods", "", "kube-system", "ResponseComplete", "dev", "", `{"kind":"Pod","spec":{"hostPID":true,"containers":[{"name":"a","image":"x","securityContext":{"privileged":true}}]}}`, 201},
		{4, 0x3ff, "create", "clusterrolebindings", "", "", "ResponseComplete", "dev", "", `{"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`, 201},
		{5, 0x3ff, "delete", "deployments", "", "default", "ResponseComplete", "mallory", "system:authenticated", "", 200},
		{6, 0x3ff, "list", "secrets", "", "", "ResponseComplete", "system:anonymous", "system:unauthenticated", "", 403},
		{7, 0x3ff, "update", "configmaps", "", "kube-system", "ResponseComplete", "dev", "", `{"data":{"password":"hunter2"}}`, 200},
		{8, 0x3ff, "patch", "clusterroles", "", "", "RequestReceived", "system:node:n1", "system:nodes", `{"rules":[{"verbs":["*"],"resources":["*"]}]}`, 0},
		{9, 0x3ff, "create", "serviceaccounts", "token", "default", "ResponseComplete", "alice", "", "", 201},
	} {
		f.Add(s.base, s.mask, s.verb, s.resource, s.sub, s.ns, s.stage, s.user, s.group, s.body, s.code)
	}
	f.Fuzz(func(t *testing.T, base uint, mask uint16, verb, resource, sub, ns, stage, user, group, body string, code int64) {
		ev := *bases[base%uint(len(bases))]
		o := audit.ObjectReference{}
		if ev.ObjectRef != nil {
			o = *ev.ObjectRef
		}
		set1 := func(bit uint16, dst *string, v string) {
			if mask&bit != 0 {
				*dst = v
			}
		}
		set1(1<<0, &ev.Verb, verb)
		set1(1<<1, &o.Resource, resource)
		set1(1<<2, &o.Subresource, sub)
		set1(1<<3, &o.Namespace, ns)
		set1(1<<4, &ev.Stage, stage)
		set1(1<<5, &ev.User.Username, user)
		if mask&(1<<6) != 0 {
			ev.User.Groups = append(slices.Clone(ev.User.Groups), group)
		}
		if mask&(1<<7) != 0 {
			ev.ResponseStatus = &audit.Status{Code: code}
		}
		if mask&(1<<8) != 0 && json.Valid([]byte(body)) {
			ev.RequestObject = json.RawMessage(bytes.Clone([]byte(body)))
		}
		if mask&(1<<9) != 0 && json.Valid([]byte(body)) {
			ev.ResponseObject = json.RawMessage(bytes.Clone([]byte(body)))
		}
		if mask&(1<<10) != 0 {
			ev.ObjectRef = nil
		} else {
			ev.ObjectRef = &o
		}
		if mask&(1<<11) != 0 {
			ev.ImpersonatedUser = &audit.UserInfo{Username: user, Groups: []string{group}}
		}
		if mask&(1<<12) != 0 {
			ev.ResponseStatus = nil
		}
		diffEval(t, set, &ev, "fuzzed event")
	})
}

// recorder catches what diffEval reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, format)
}

// TestDiffCatchesADroppingPrefilter breaks the index on purpose — one rule
// filed under a resource it does not watch, one guard wrong about a
// value — and checks that the
// comparison above reports the match it loses.
func TestDiffCatchesADroppingPrefilter(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := set.Rule("secret-read-by-non-node")
	if !ok {
		t.Fatal("no rule secret-read-by-non-node")
	}
	r.resources = []string{"configmaps"}
	set.index = buildIndex(set.rules)
	ev := &audit.Event{AuditID: "a", Stage: audit.StageResponseComplete, Verb: "get",
		User:           audit.UserInfo{Username: "system:serviceaccount:default:app"},
		ObjectRef:      &audit.ObjectReference{Resource: "secrets", Namespace: "default", Name: "db"},
		ResponseStatus: &audit.Status{Code: 200}}
	rec := &recorder{TB: t}
	diffEval(rec, set, ev, "broken index")
	if len(rec.errors) == 0 {
		t.Fatal("a prefilter that drops secret-read-by-non-node went unnoticed")
	}

	// A guard that is wrong about one field value: 404 is not denied.
	r, ok = set.Rule("forbidden-burst")
	if !ok {
		t.Fatal("no rule forbidden-burst")
	}
	r.guard = func(ev *audit.Event) bool { return ev.ResponseCode() == 404 }
	rec = &recorder{TB: t}
	diffEval(rec, set, &audit.Event{AuditID: "b", Stage: audit.StageResponseComplete, Verb: "get",
		User: audit.UserInfo{Username: "mallory"}, ResponseStatus: &audit.Status{Code: 403}}, "broken guard")
	if len(rec.errors) == 0 {
		t.Fatal("a guard that drops forbidden-burst went unnoticed")
	}
}
