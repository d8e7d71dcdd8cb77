package cli

import (
	"errors"
	"fmt"
)

// The exit statuses every program uses. A program may document more
// (ctl's clients: 1 when the daemon answered with a failure); it returns
// them with [Exit].
const (
	ExitOK      = 0 // success, or a stop by SIGINT/SIGTERM or a command
	ExitFailure = 1 // the program could not do its job (start-up, I/O)
	ExitUsage   = 2 // a bad command line: flags, arguments
)

// ExitError is an error with the process exit status it calls for.
type ExitError struct {
	Code int
	// Err is printed as "NAME: Err"; nil when the program has already
	// said all there is to say and only the status remains.
	Err error
	// Plain prints Err without the program's name, for messages that
	// already name their place (FILE:LINE: text).
	Plain bool
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with an exit status. A nil err makes a status that
// prints nothing.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// Plain wraps err with an exit status; it is printed without the
// program's name.
func Plain(code int, err error) error { return &ExitError{Code: code, Err: err, Plain: true} }

// Usage is a usage error: exit status 2.
func Usage(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// Code returns the exit status err calls for: its ExitError's, or def.
func Code(err error, def int) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return def
}
