package rules

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-k8s/vigil/internal/alert"
)

// However many requests a window counts, its state keeps the members of
// only the latest MaxMembers still in it.
func TestWindowStateKeepsTheLatestMembers(t *testing.T) {
	th := &Threshold{Count: 1000, Window: time.Minute}
	var st WindowState
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 500 {
		// Out of order: odd requests arrive before the even one before
		// them.
		j := i ^ 1
		id := fmt.Sprintf("r%03d", j)
		at := t0.Add(time.Duration(j) * 200 * time.Millisecond)
		if f, _ := st.Observe(th, alert.Member{AuditID: id, Time: at}, "", at); f != nil {
			t.Fatalf("fired at %s", id)
		}
		if len(st.Members) > alert.MaxMembers {
			t.Fatalf("after %s the state keeps %d members", id, len(st.Members))
		}
	}
	// 0.2s apart, the window holds the last 300 of them; the members are
	// the latest ten.
	for i := 490; i < 500; i++ {
		if _, ok := st.Members[fmt.Sprintf("r%03d", i)]; !ok {
			t.Errorf("member r%03d missing; members %v", i, st.Members)
		}
	}
	b, _ := json.Marshal(&st)
	if len(b) > 64<<10 {
		t.Errorf("the state is %d bytes of JSON", len(b))
	}
	th.Count = 300
	at := t0.Add(500 * 200 * time.Millisecond)
	f, _ := st.Observe(th, alert.Member{AuditID: "r500", Time: at}, "", at)
	if f == nil || len(f.Members) != alert.MaxMembers || f.Members[0].AuditID != "r491" || f.Members[9].AuditID != "r500" {
		t.Fatalf("firing %+v, want members r491 to r500", f)
	}
	if st.Members != nil {
		t.Errorf("members kept after firing: %v", st.Members)
	}
}
