package rules

// Limits on what one rule may cost. Like kube-apiserver's CEL limits they are
// named and kept together, so that raising one is a visible decision.
const (
	// PerRuleCostLimit bounds the CEL cost of one evaluation of a rule's
	// condition (or output, or threshold key). It matches kube-apiserver's
	// per-call limit: generous for a condition, fatal to a runaway
	// comprehension over a huge requestObject.
	PerRuleCostLimit uint64 = 1_000_000

	// PerMacroCostLimit bounds one evaluation of a macro. Macros are shared
	// by many rules but evaluated once per event.
	PerMacroCostLimit uint64 = 1_000_000

	// MaxExpressionLength bounds the source of one CEL expression, which
	// keeps parsing of hostile rule files cheap.
	MaxExpressionLength = 16 * 1024

	// MaxObjectBytes bounds the requestObject or responseObject that rules
	// may decode; larger bodies read as absent rather than stall a worker.
	MaxObjectBytes = 4 << 20
)
