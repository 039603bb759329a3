package engine

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

const grantThenWorkload = `rules:
  - id: grant-then-workload
    severity: high
    sequence:
      by: [event.user.username]
      within: 10m
      steps:
        - {name: grant, condition: 'event.objectRef.resource == "clusterrolebindings" && event.verb == "create"'}
        - {name: workload, condition: 'event.objectRef.resource == "daemonsets" && event.verb in ["create", "patch"]'}
`

func change(id, user, resource string, offset time.Duration) *audit.Event {
	return &audit.Event{
		APIVersion: audit.APIVersionV1, Kind: "Event", AuditID: id, Stage: "ResponseComplete",
		Verb: "create", User: audit.UserInfo{Username: user},
		ObjectRef:                &audit.ObjectReference{Resource: resource, Name: id},
		ResponseStatus:           &audit.Status{Code: 201},
		RequestReceivedTimestamp: t0.Add(offset), StageTimestamp: t0.Add(offset),
	}
}

func TestSequenceAlertCarriesItsStepsAndAlertsOnceWhateverTheOrder(t *testing.T) {
	ctx := context.Background()
	e := NewEvaluator(ruleSet(t, grantThenWorkload), NewMemoryThresholds())
	grant := change("g1", "eve", "clusterrolebindings", 0)
	ds := change("w1", "eve", "daemonsets", 4*time.Minute)
	// The workload's event arrives first.
	if as, err := e.Evaluate(ctx, ds); err != nil || len(as) != 0 {
		t.Fatalf("the workload alone gave %v, %v", ids(as), err)
	}
	as, err := e.Evaluate(ctx, grant)
	if err != nil || len(as) != 1 {
		t.Fatalf("the grant after it gave %v, %v; want one alert", ids(as), err)
	}
	a := as[0]
	if !slices.Equal(a.Steps, []string{"grant", "workload"}) || len(a.Members) != 2 ||
		a.Members[0].AuditID != "g1" || a.Members[1].AuditID != "w1" || a.ElapsedSeconds != 240 {
		t.Errorf("steps %v members %v elapsed %d, want grant g1 then workload w1 240 s apart", a.Steps, a.Members, a.ElapsedSeconds)
	}
	// Redelivered, either event gives the same alert; a second workload
	// change does not alert again for the spent grant.
	for _, ev := range []*audit.Event{grant, ds} {
		re, err := e.Evaluate(ctx, ev)
		if err != nil || len(re) != 1 || re[0].ID != a.ID {
			t.Errorf("redelivered %s gave %v, want %s", ev.AuditID, ids(re), a.ID)
		}
	}
	if more, _ := e.Evaluate(ctx, change("w2", "eve", "daemonsets", 5*time.Minute)); len(more) != 0 {
		t.Errorf("a second workload alerted again: %v", ids(more))
	}
}

func TestSequenceSameAlertsWithOneWorkerOrThree(t *testing.T) {
	set := ruleSet(t, grantThenWorkload)
	var events []*audit.Event
	for u := range 10 {
		user := fmt.Sprintf("user%d", u)
		base := time.Duration(u) * time.Minute
		events = append(events,
			change(user+"-g", user, "clusterrolebindings", base),
			change(user+"-noise", user, "configmaps", base+time.Minute),
			// Each user changes a workload 3+2u minutes after the grant: users
			// 0 to 3 within 10 minutes, the rest after; fed newest first.
			change(user+"-w", user, "daemonsets", base+time.Duration(3+u*2)*time.Minute))
	}
	one, three := workersAlerts(t, set, events, 1, true), workersAlerts(t, set, events, 3, true)
	if len(one) != 4 {
		t.Errorf("one worker raised %d alerts, want 4 (users 0 to 3 within 10 minutes): %v", len(one), one)
	}
	if !slices.Equal(one, three) {
		t.Errorf("three workers raised %v, one worker %v", three, one)
	}
}
