package provider

import (
	"encoding/json"
	"strings"
)

// rpcToHTTP maps google.rpc.Code (google/rpc/code.proto) to the HTTP status
// that code.proto gives each. GKE writes the apiserver's HTTP status as one
// of these, which loses detail: 201 Created and 101 Switching Protocols
// read as 200, 422 Invalid as 400, 409 Conflict may come back as 409 from
// either ALREADY_EXISTS or ABORTED. Rules comparing with 400 or 403 (the
// success and forbidden macros) see the same answer as on the apiserver.
var rpcToHTTP = map[int64]int64{
	0:  200, // OK
	1:  499, // CANCELLED
	2:  500, // UNKNOWN
	3:  400, // INVALID_ARGUMENT
	4:  504, // DEADLINE_EXCEEDED
	5:  404, // NOT_FOUND
	6:  409, // ALREADY_EXISTS
	7:  403, // PERMISSION_DENIED
	8:  429, // RESOURCE_EXHAUSTED
	9:  400, // FAILED_PRECONDITION
	10: 409, // ABORTED
	11: 400, // OUT_OF_RANGE
	12: 501, // UNIMPLEMENTED
	13: 500, // INTERNAL
	14: 503, // UNAVAILABLE
	15: 500, // DATA_LOSS
	16: 401, // UNAUTHENTICATED
}

// httpToRPC is the google.rpc.Code of an HTTP status, as the Google API
// design guide maps them: what an apiserver answer becomes in a GKE entry.
// A status missing here is FAILED_PRECONDITION below 500, UNKNOWN above.
var httpToRPC = map[int64]int64{400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4}

func rpcOfHTTP(code int64) int64 {
	if code < 400 {
		return 0
	}
	if rpc, ok := httpToRPC[code]; ok {
		return rpc
	}
	if code < 500 {
		return 9
	}
	return 2
}

// GKEResponseCode is how an apiserver response code reads once GKE logged
// it and ConvertGKE read it back, when the entry has no Status body: 201
// becomes 200, 422 becomes 400.
func GKEResponseCode(code int64) int64 { return HTTPStatusOfRPC(rpcOfHTTP(code)) }

// HTTPStatusOfRPC is the HTTP status of a google.rpc.Code; 500 for a code
// code.proto does not define.
func HTTPStatusOfRPC(code int64) int64 {
	if h, ok := rpcToHTTP[code]; ok {
		return h
	}
	return 500
}

// k8sStatus is a metav1.Status, what the apiserver answers a failed
// request with, and so the response body GKE logs for one.
type k8sStatus struct {
	Type    string `json:"@type"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Code    int64  `json:"code"`
}

// gkeStatus is the event's responseStatus. A response body that is a
// Status carries the apiserver's own code, reason and message; otherwise
// the code is the HTTP status of protoPayload.status. An entry without a
// status has none, as an apiserver event without a response.
func gkeStatus(st *rpcStatus, response json.RawMessage) *responseStatus {
	if s, ok := statusBody(response); ok {
		return &responseStatus{Status: s.Status, Message: s.Message, Reason: s.Reason, Code: s.Code}
	}
	if st == nil {
		return nil
	}
	out := &responseStatus{Code: HTTPStatusOfRPC(st.Code)}
	if out.Code >= 400 {
		out.Status, out.Message = "Failure", st.Message
	}
	return out
}

// statusBody reads response as a metav1.Status. GKE drops the body's kind
// for its @type, core.k8s.io/v1.Status; by the time the body reaches here
// gkeBody has turned that back into kind.
func statusBody(response json.RawMessage) (k8sStatus, bool) {
	var s k8sStatus
	if len(response) == 0 || response[0] != '{' || json.Unmarshal(response, &s) != nil {
		return s, false
	}
	isStatus := s.Kind == "Status" || strings.HasSuffix(s.Type, ".Status")
	return s, isStatus && s.Code > 0
}
