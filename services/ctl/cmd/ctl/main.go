// Command ctl is tickbox's control hub and the client for every control
// protocol the daemons speak.
//
//	ctl serve [flags]                         run the hub service
//	ctl kea SOCKET COMMAND [ARGS-JSON]        Kea JSON channel request
//	ctl ipc [-follow] NAME|PATH LINE...       nose line-JSON IPC
//	ctl dgram SOCKET CMD...                   sfptpd-style datagrams
//	ctl console SOCKET                        interactive console
//
// Client exit codes: 0 success; 1 the daemon answered with a failure; 2
// usage or connection error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tickbox-fw/tickbox/internal/cli"
)

const usage = `usage: ctl COMMAND [ARGS]

commands:
  serve [flags]                         run the control hub (ctl serve -h)
  kea [-service S] SOCKET COMMAND [ARGS-JSON]
                                        send one Kea control-channel command, print the reply
  ipc [-follow] NAME|PATH LINE...       send nose IPC lines, print replies (and events)
  dgram SOCKET CMD...                   send each CMD as one sfptpd control datagram
  console SOCKET                        interactive console: stdin lines in, output out

exit status: 0 success, 1 the daemon reported a failure, 2 usage or connection error
`

func connErr(err error) error { return &cli.ExitError{Code: 2, Err: err} }

var errFailed = &cli.ExitError{Code: 1, Err: errors.New("the daemon reported a failure")}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// invocation carries a client invocation's streams.
type invocation struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// run executes one ctl invocation and returns its exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	c := &invocation{stdin: stdin, stdout: stdout, stderr: stderr}
	var err error
	rest := args[1:]
	switch args[0] {
	case "serve":
		err = serve(rest, stderr)
	case "kea":
		err = c.kea(rest)
	case "ipc":
		err = c.ipc(rest)
	case "dgram":
		err = c.dgram(rest)
	case "console":
		err = c.console(rest)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ctl: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if err != errFailed {
		fmt.Fprintf(stderr, "ctl: %v\n", err)
	}
	return cli.Code(err, 2)
}
