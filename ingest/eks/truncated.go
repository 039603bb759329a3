package eks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// truncatedMarker is what CloudWatch Logs appends to a message it cut to
// its size limit.
var truncatedMarker = []byte("[Truncated...]")

// Truncated reports whether msg is a JSON object that CloudWatch Logs cut
// short: it ends inside the object, optionally followed by the marker
// CloudWatch appends. Other bad JSON (a syntax error in the middle, a
// line that is not JSON at all) is not truncation.
func Truncated(msg []byte) bool {
	msg = bytes.TrimSpace(msg)
	if b, ok := bytes.CutSuffix(msg, truncatedMarker); ok {
		msg = bytes.TrimSpace(b)
	}
	if len(msg) == 0 || msg[0] != '{' {
		return false
	}
	var v json.RawMessage
	err := json.NewDecoder(bytes.NewReader(msg)).Decode(&v)
	return errors.Is(err, io.ErrUnexpectedEOF)
}
