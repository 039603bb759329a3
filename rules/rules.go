// Package rules is vigil's rule language: YAML rule files with CEL
// conditions over Kubernetes audit events, their loading, type-checking and
// linting, rule tests, and the embedded default detection pack.
//
// The work is split by concern: package parse reads the file format,
// package compile holds the CEL environment, the named cost limits and the
// activation, and package analysis reads what conditions demand of an
// event. This package puts a rule set together from them and evaluates it.
package rules

import (
	"github.com/vigil-k8s/vigil/rules/analysis"
	"github.com/vigil-k8s/vigil/rules/compile"
	"github.com/vigil-k8s/vigil/rules/parse"
)

// Types and limits defined by the packages that own them.
type (
	// Problem is one thing wrong with a rule file.
	Problem = parse.Problem
	// Problems is every problem found while loading rules.
	Problems = parse.Problems
	// Threshold turns a rule into a count over a sliding window.
	Threshold = parse.Threshold
	// Suppress holds back a group's later matches for a while after one
	// alerted.
	Suppress = parse.Suppress
	// NewTerms makes a rule alert on a value new for its entity.
	NewTerms = parse.NewTerms
	// Sequence makes a rule alert on steps matched in order by one group.
	Sequence = parse.Sequence
	// TestCase is one `tests:` entry of a rule file.
	TestCase = parse.TestCase
	// Needs is what a rule demands of the events it can match.
	Needs = analysis.Needs
	// Limits are the limits on one evaluation a deployment may change.
	Limits = compile.Limits
)

// Named limits; see package compile.
const (
	PerRuleCostLimit    = compile.PerRuleCostLimit
	MaxExpressionLength = compile.MaxExpressionLength
	MaxObjectBytes      = compile.MaxObjectBytes
	MaxThresholdCount   = parse.MaxThresholdCount
)
