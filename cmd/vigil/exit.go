package main

import "fmt"

// exitError ends the process with code after the command has already told
// the user what went wrong, so main prints nothing more.
type exitError struct {
	code   int
	reason string
}

func (e *exitError) Error() string { return fmt.Sprintf("%s (exit %d)", e.reason, e.code) }

// ExitCode is the process exit status.
func (e *exitError) ExitCode() int { return e.code }
