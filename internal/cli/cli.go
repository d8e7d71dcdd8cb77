// Package cli holds what tickbox's command-line programs share about
// exit statuses: an error that carries the status to exit with.
package cli

import (
	"errors"
	"fmt"
)

// ExitError is an error with the process exit status it calls for.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with an exit status.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// Usage is a usage error: exit status 2.
func Usage(format string, a ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, a...)}
}

// Code returns the exit status err calls for: its ExitError's, or def.
func Code(err error, def int) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return def
}
