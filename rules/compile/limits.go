package compile

// Limits on what one rule may cost. Like kube-apiserver's CEL limits they are
// named and kept together, so that raising one is a visible decision.
const (
	// PerRuleCostLimit bounds the CEL cost of one evaluation of a rule's
	// condition (or output, or threshold key), and of a macro, which is
	// evaluated once per event for every rule that uses it. It matches
	// kube-apiserver's per-call limit: generous for a condition, fatal to
	// a runaway comprehension over a huge requestObject.
	PerRuleCostLimit uint64 = 1_000_000

	// MaxExpressionLength bounds the source of one CEL expression, which
	// keeps parsing of hostile rule files cheap.
	MaxExpressionLength = 16 * 1024

	// MaxObjectBytes bounds the requestObject or responseObject that rules
	// may decode; larger bodies read as absent rather than stall a worker.
	MaxObjectBytes = 4 << 20
)

// Limits are the limits a deployment may change (engine.max_rule_cost and
// engine.max_object_bytes); zero fields take the defaults above.
type Limits struct {
	// Cost bounds one evaluation of a condition, output, threshold key or
	// macro (PerRuleCostLimit).
	Cost uint64
	// ObjectBytes bounds the requestObject or responseObject rules decode
	// (MaxObjectBytes).
	ObjectBytes int
}

// WithDefaults fills in the zero limits.
func (l Limits) WithDefaults() Limits {
	if l.Cost == 0 {
		l.Cost = PerRuleCostLimit
	}
	if l.ObjectBytes <= 0 {
		l.ObjectBytes = MaxObjectBytes
	}
	return l
}
