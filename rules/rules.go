package rules

import "github.com/vigil-k8s/vigil/rules/parse"

// Types and limits of the rule file format, defined by package parse.
type (
	// Problem is one thing wrong with a rule file.
	Problem = parse.Problem
	// Problems is every problem found while loading rules.
	Problems = parse.Problems
	// Threshold turns a rule into a count over a sliding window.
	Threshold = parse.Threshold
	// TestCase is one `tests:` entry of a rule file.
	TestCase = parse.TestCase
)

// MaxThresholdCount bounds a threshold's count; see package parse.
const MaxThresholdCount = parse.MaxThresholdCount
