package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// RunFunc is a program's body: it runs until its work is done or ctx
// ends, and returns nil for exit status 0. Test seams (a ready callback,
// a wrapped backend) ride on a method value: hooks{...}.run.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs a program as a process: run gets the command line's
// arguments, the standard streams and a context that SIGINT or SIGTERM
// cancels ([SignalContext]); the process exits with [Exec]'s status.
func Main(name string, run RunFunc) {
	ctx, stop := SignalContext(context.Background())
	code := Exec(ctx, name, run, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exec calls run and returns the exit status its error calls for: 0 for
// nil or -h/-help ([flag.ErrHelp], the usage text has been printed), the
// [ExitError]'s code, or 1 for any other error. Every error but a silent
// ExitError is printed once to stderr as "NAME: error" (a Plain one
// without "NAME: "), so a program returns its errors rather than printing
// them. Tests call Exec to see what a process would print and exit with.
func Exec(ctx context.Context, name string, run RunFunc, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ee *ExitError
	switch {
	case !errors.As(err, &ee):
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	case ee.Err == nil:
	case ee.Plain:
		fmt.Fprintln(stderr, err)
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	return Code(err, ExitFailure)
}

// ParseFlags parses args with fs, which should be ContinueOnError with
// its output on the program's stderr: the flag package prints the
// mistake and the usage text there. A mistake is returned as a usage
// error (status 2); -h and -help as [flag.ErrHelp] with status 0, for a
// run to return as it is; arguments beyond maxArgs (-1: any number) as
// a usage error naming the first.
func ParseFlags(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &ExitError{Code: ExitOK, Err: err}
		}
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return Usage("unexpected argument %q", fs.Arg(maxArgs))
	}
	return nil
}
