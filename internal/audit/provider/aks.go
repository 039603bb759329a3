package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vigil-k8s/vigil/internal/audit"
	"github.com/vigil-k8s/vigil/internal/audit/jsonscan"
)

// The diagnostic log categories of an AKS cluster that hold audit events:
// kube-audit has every event, kube-audit-admin all but get and list.
const (
	AKSCategoryAudit      = "kube-audit"
	AKSCategoryAuditAdmin = "kube-audit-admin"
)

// aksDocument reads what diagnostic settings send to Event Hubs and write
// to storage: {"records": [record, ...]}.
func aksDocument(record, list []byte) (Batch, error) {
	items, err := rawItems(list, "records")
	if err != nil {
		return Batch{Format: FormatAKS}, err
	}
	out := Batch{Format: FormatAKS, Items: make([]Item, 0, len(items))}
	for i, item := range items {
		it := aksItem(item)
		it.Path = joinPath(fmt.Sprintf("records[%d]", i), it.Path)
		it.Offset += offset(record, item)
		out.Items = append(out.Items, it)
	}
	return out, nil
}

// aksItem reads one diagnostic record: {"category": "kube-audit",
// "properties": {"log": "<the Event's JSON>", ...}, ...}. properties.log
// may also be the Event as an object.
func aksItem(record []byte) Item {
	var category string
	var props []byte
	d := jsonscan.NewDecoder(record, jsonscan.Options{})
	err := d.Document(func() error {
		return d.Members(1, func(key []byte) error {
			switch jsonscan.Canonical(key, []string{"category", "properties"}) {
			case "category":
				return d.String(&category, 1, "record.category")
			case "properties":
				var err error
				props, err = d.Raw(1)
				return err
			}
			return d.Skip(1)
		})
	})
	if err != nil {
		return Item{Err: fmt.Errorf("malformed AKS record: %w", err)}
	}
	switch category {
	case AKSCategoryAudit, AKSCategoryAuditAdmin, "":
	default:
		return Item{Err: fmt.Errorf("%w: category %q holds no audit events (want %s or %s)",
			ErrNotAudit, category, AKSCategoryAudit, AKSCategoryAuditAdmin)}
	}
	if props == nil || bytes.Equal(props, []byte("null")) {
		return Item{Err: errors.New("properties: missing, which holds the event in properties.log")}
	}
	log, off, err := aksLog(props)
	if err != nil {
		return Item{Err: err, Path: "properties.log", Offset: offset(record, props)}
	}
	r, err := audit.ParseRaw(log)
	if err != nil && cutShort(log) {
		err = fmt.Errorf("%w: ends inside its JSON after %d bytes (AKS cuts long kube-audit entries)", ErrTruncated, len(log))
	}
	return Item{Raw: r, Err: err, Path: "properties.log", Offset: offset(record, props) + off}
}

// aksLog returns properties.log: the string's contents, or the object's
// bytes (a sub-slice of props, at offset off).
func aksLog(props []byte) (log []byte, off int, err error) {
	if props[0] != '{' {
		return nil, 0, errors.New("properties: not an object")
	}
	raw, err := member(props, "log")
	switch {
	case err != nil:
		return nil, 0, err
	case raw == nil || bytes.Equal(raw, []byte("null")):
		return nil, 0, errors.New("missing, which holds the event")
	case raw[0] == '{':
		return raw, offset(props, raw), nil
	case raw[0] != '"':
		return nil, 0, errors.New("neither a string nor an object")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, 0, err
	}
	if s == "" {
		return nil, 0, errors.New("empty")
	}
	return []byte(s), offset(props, raw), nil
}
