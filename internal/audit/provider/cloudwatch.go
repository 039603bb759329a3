package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/vigil-k8s/vigil/internal/audit"
)

// cloudWatchMarker ends an EKS audit event that CloudWatch Logs cut
// because it was over the service's size limit for one event.
const cloudWatchMarker = "[Truncated...]"

// CloudWatchTruncated reports whether a CloudWatch Logs message is an
// event cut short: it ends with CloudWatch's "[Truncated...]" marker, or it
// is JSON that ends before its top-level object closes. Such a message can
// never be decoded; it should be reported as cut, not as malformed JSON.
func CloudWatchTruncated(message []byte) bool {
	message = bytes.TrimSpace(message)
	return bytes.HasSuffix(message, []byte(cloudWatchMarker)) || cutShort(message)
}

// cutShort reports whether b is the start of a JSON object whose end is
// missing: well-formed up to where it stops.
func cutShort(b []byte) bool {
	if len(b) == 0 || b[0] != '{' || json.Valid(b) {
		return false
	}
	var v json.RawMessage
	err := json.NewDecoder(bytes.NewReader(b)).Decode(&v)
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// auditIDPattern finds the auditID near the start of a cut event, where
// kube-apiserver writes it, to name the event that was lost.
var auditIDPattern = regexp.MustCompile(`"auditID"\s*:\s*"([^"\\]{1,128})"`)

// DecodeCloudWatchMessage reads the message of an EKS audit log event, the
// apiserver's Event JSON. A message CloudWatch cut (CloudWatchTruncated) is
// an error wrapping ErrTruncated that names the event's auditID when the
// part that is left shows it.
func DecodeCloudWatchMessage(message []byte) (audit.Raw, error) {
	message = bytes.TrimSpace(message)
	if CloudWatchTruncated(message) {
		what := "the event"
		if m := auditIDPattern.FindSubmatch(message); m != nil {
			what = fmt.Sprintf("event %s", m[1])
		}
		how := "ends inside its JSON"
		if bytes.HasSuffix(message, []byte(cloudWatchMarker)) {
			how = "ends with " + cloudWatchMarker
		}
		return audit.Raw{}, fmt.Errorf("%w: %s %s after %d bytes (CloudWatch Logs cuts events over its size limit)",
			ErrTruncated, what, how, len(message))
	}
	return audit.ParseRaw(message)
}

// cloudWatchList reads the "events" (or a subscription's "logEvents") of a
// CloudWatch Logs document: `aws logs filter-log-events` and
// `get-log-events` print {"events": [{"timestamp", "message", ...}], ...}.
func cloudWatchList(record, list []byte, field string) (Batch, error) {
	items, err := rawItems(list, field)
	if err != nil {
		return Batch{Format: FormatCloudWatch}, err
	}
	out := Batch{Format: FormatCloudWatch, Items: make([]Item, 0, len(items))}
	for i, item := range items {
		it := cloudWatchEvent(item)
		it.Path = joinPath(fmt.Sprintf("%s[%d]", field, i), it.Path)
		it.Offset += offset(record, item)
		out.Items = append(out.Items, it)
	}
	return out, nil
}

// cloudWatchSubscription reads what a subscription filter delivers (to
// Firehose, Lambda or Kinesis, once gunzipped): {"messageType":
// "DATA_MESSAGE", "logGroup", "logStream", "logEvents": [...]}. The
// CONTROL_MESSAGE CloudWatch sends to check the destination has no events.
func cloudWatchSubscription(record []byte, t *top) (Batch, error) {
	switch t.messageType {
	case "DATA_MESSAGE", "":
	case "CONTROL_MESSAGE":
		return Batch{Format: FormatCloudWatch, Items: []Item{{Err: fmt.Errorf("%w: messageType CONTROL_MESSAGE, CloudWatch's check of the destination", ErrNotAudit)}}}, nil
	default:
		return Batch{Format: FormatCloudWatch}, fmt.Errorf("messageType %q: want DATA_MESSAGE or CONTROL_MESSAGE", t.messageType)
	}
	if t.raw[mLogEvents] == nil {
		return Batch{Format: FormatCloudWatch}, errors.New("logEvents: missing")
	}
	return cloudWatchList(record, t.raw[mLogEvents], "logEvents")
}

// cloudWatchEvent reads one OutputLogEvent or FilteredLogEvent:
// {"timestamp": ms, "message": "...", "ingestionTime", "logStreamName",
// "eventId"}.
func cloudWatchEvent(event []byte) Item {
	raw, err := member(event, "message")
	switch {
	case err != nil:
		return Item{Err: fmt.Errorf("malformed CloudWatch Logs event: %w", err)}
	case raw == nil:
		return Item{Err: errors.New("message: missing, which holds the event")}
	case raw[0] != '"':
		return Item{Err: errors.New("message: not a string"), Path: "message", Offset: offset(event, raw)}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return Item{Err: err, Path: "message", Offset: offset(event, raw)}
	}
	r, err := DecodeCloudWatchMessage([]byte(s))
	return Item{Raw: r, Err: err, Path: "message", Offset: offset(event, raw)}
}

// exportLine is a line of a CloudWatch Logs export to S3: the event's
// ingestion time in RFC 3339, a space, and the message.
var exportLine = regexp.MustCompile(`^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})) `)

// decodeExportLine reads a line of a CloudWatch Logs export to S3; false
// when the line is not one.
func decodeExportLine(line []byte) (Batch, bool) {
	m := exportLine.FindSubmatchIndex(line)
	if m == nil {
		return Batch{}, false
	}
	if _, err := time.Parse(time.RFC3339Nano, string(line[m[2]:m[3]])); err != nil {
		return Batch{}, false
	}
	msg := line[m[1]:]
	r, err := DecodeCloudWatchMessage(msg)
	return Batch{Format: FormatCloudWatch, Items: []Item{{Raw: r, Err: err, Offset: m[1]}}}, true
}
