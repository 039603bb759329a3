package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Keys of the vigil_notify bucket. Destination names and group labels
// are free text, so they are hashed into keys of fixed length and
// alphabet.

// sentKey is the delivery record of an alert to a destination, written
// after a successful delivery, so that a redelivered alert (after a crash
// between delivery and ack, or on another replica) is not sent twice.
func sentKey(dest, id string) string { return "sent." + hashHex(dest, id) }

// groupKVKey is the shared state of one group of a route to a
// destination.
func groupKVKey(dest string, route int, key string) string {
	return "group." + hashHex(dest, strconv.Itoa(route), key)
}

func hashHex(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
