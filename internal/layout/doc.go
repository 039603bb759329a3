// Package layout holds no code: its test keeps the import rules of
// docs/architecture.md true, so that a change that makes a component know
// the YAML schema, the transport know its callers or a source know NATS
// fails at once rather than in review.
package layout
