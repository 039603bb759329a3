package rules

import (
	"errors"
	"strings"
	"testing"
)

const unguardedRule = `macros:
  paused: event.requestObject.spec.paused
rules:
  - id: host-network
    title: Host network
    severity: low
    condition: >
      event.objectRef.resource == "pods" &&
      event.requestObject.spec.hostNetwork == true
  - id: guarded
    title: Guarded
    severity: low
    condition: >
      has(event.requestObject.spec) && event.requestObject.?spec.?hostPID.orValue(false) &&
      event.annotations[?"a"].orValue("") == ""
`

func TestUnguardedBodyReadsAreWarningsThatDoNotFailTheLoad(t *testing.T) {
	set, err := Compile([]File{{Name: "w.yaml", Data: []byte(unguardedRule)}})
	if err != nil {
		t.Fatalf("a load with only warnings failed: %v", err)
	}
	var got []string
	for _, w := range set.Warnings() {
		got = append(got, w.String())
	}
	want := []string{
		"w.yaml:2:11: warning: reads event.requestObject.spec.paused, an evaluation error (no match) on events without it: write event.requestObject.?spec.?paused.orValue(...), or test it with has() first",
		"w.yaml:9:7: host-network: warning: reads event.requestObject.spec.hostNetwork, an evaluation error (no match) on events without it: write event.requestObject.?spec.?hostNetwork.orValue(...), or test it with has() first",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWarningsComeWithTheErrorsOfAFailedLoad(t *testing.T) {
	_, err := Compile([]File{{Name: "w.yaml", Data: []byte(unguardedRule + "  - id: bad\n    title: Bad\n    severity: low\n    condition: event.verbb == \"x\"\n")}})
	var probs *Problems
	if !errors.As(err, &probs) {
		t.Fatalf("error %v, want problems", err)
	}
	var errs, warns int
	for _, p := range probs.List {
		if p.Warning {
			warns++
		} else {
			errs++
		}
	}
	if errs != 1 || warns != 2 || !strings.Contains(err.Error(), `w.yaml:19:22: bad: condition: unknown field "verbb"`) {
		t.Errorf("%d errors, %d warnings:\n%v", errs, warns, err)
	}
}

func TestDefaultPackDrawsNoLintWarnings(t *testing.T) {
	set, err := Load(LoadOptions{Default: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range set.Warnings() {
		t.Error(w.String())
	}
}
