package parse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// eventFromNode turns a test's inline event (YAML or JSON flow syntax) into
// an audit event. Test events are usually partial, so a missing auditID and
// stage are filled in rather than rejected.
func eventFromNode(n *yaml.Node, defaultID string) (*audit.Event, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("an event must be a mapping with audit Event fields")
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return TestEvent(data, defaultID)
}

// TestEvent decodes one event of a test as encoding/json does, filling in
// a missing auditID with defaultID and a missing stage with
// ResponseComplete.
func TestEvent(data []byte, defaultID string) (*audit.Event, error) {
	ev := &audit.Event{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(ev); err != nil {
		return nil, fmt.Errorf("not an audit Event: %w", err)
	}
	if ev.AuditID == "" {
		ev.AuditID = defaultID
	}
	if ev.Stage == "" {
		ev.Stage = audit.StageResponseComplete
	}
	return ev, nil
}

// EventLines reads JSON lines of events, as kube-apiserver writes them, as
// tests read them (TestEvent), each line's problem apart.
func EventLines(data []byte) ([]*audit.Event, []error) {
	var evs []*audit.Event
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		ev, err := TestEvent(b, fmt.Sprintf("line-%d", line))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return evs, errs
}
