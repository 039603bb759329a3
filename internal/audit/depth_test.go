package audit

import (
	"errors"
	"strings"
	"testing"
)

// nested is an event whose requestObject nests n objects.
func nested(n int) []byte {
	return []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"d","stage":"ResponseComplete","requestObject":` +
		strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) + `}`)
}

func TestParseRawDepth(t *testing.T) {
	// The event object is level 1, its requestObject level 2.
	if _, err := ParseRawDepth(nested(19), 20); err != nil {
		t.Fatalf("20 levels with limit 20: %v", err)
	}
	_, err := ParseRawDepth(nested(20), 20)
	if !errors.Is(err, ErrTooDeep) || !strings.Contains(err.Error(), "exceeded max depth") {
		t.Fatalf("21 levels with limit 20: %v; want ErrTooDeep saying so", err)
	}
	if _, err := ParseRaw(nested(5_000)); err != nil {
		t.Fatalf("5,000 levels with the default limit: %v", err)
	}
	if _, err := ParseRaw(nested(MaxDepth)); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("%d levels with the default limit: %v, want ErrTooDeep", MaxDepth+1, err)
	}
	if _, err := ParseRaw([]byte(`{"kind":"Event"`)); errors.Is(err, ErrTooDeep) {
		t.Fatalf("truncated JSON reported as too deep: %v", err)
	}
}
