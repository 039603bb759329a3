package webhook

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// decodeEnvelope must agree with json.Unmarshal on every body but those
// nested deeper than encoding/json allows as a whole.
func TestDecodeEnvelopeAgreesWithUnmarshal(t *testing.T) {
	for _, body := range []string{
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"a":1},{"b":[2,{"c":null}]}]}`,
		`{"kind":"EventList","items":null}`,
		`{"kind":"EventList","items":[]}`,
		`{"metadata":{"x":[1,2]},"kind":"Event","auditID":"x"}`,
		`{"kind":"EventList","items":[{"a":1}]} trailing`,
		`{"kind":"EventList","items":[{"a":1}`,
		`{"kind":"EventList","items":{"a":1}}`,
		`{"kind":1}`,
		`[]`,
		`"x"`,
		``,
		`{"kind":"EventList","items":[1,"two",{}]}`,
	} {
		var want envelope
		wantErr := json.Unmarshal([]byte(body), &want)
		got, err := decodeEnvelope([]byte(body))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, json.Unmarshal says %v", body, err, wantErr)
			continue
		}
		if len(got.Items) == 0 && len(want.Items) == 0 {
			got.Items, want.Items = nil, nil // both mean no items
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, json.Unmarshal gives %+v", body, got, want)
		}
	}
}

func TestDecodeEnvelopeCountsDepthPerItem(t *testing.T) {
	// 10,000 levels in the item, 10,002 in the body.
	item := strings.Repeat(`{"a":`, 10_000) + `1` + strings.Repeat(`}`, 10_000)
	body := `{"kind":"EventList","items":[` + item + `,{"auditID":"b"}]}`
	env, err := decodeEnvelope([]byte(body))
	if err != nil || len(env.Items) != 2 {
		t.Fatalf("items %d, err %v; want both items", len(env.Items), err)
	}
	deeper := `{"kind":"EventList","items":[` + strings.Repeat(`[`, 100_000) + `]}`
	if _, err := decodeEnvelope([]byte(deeper)); err == nil {
		t.Error("an item 100,000 levels deep was accepted")
	}
}
