// Command ctl is tickbox's control hub and the client for every control
// protocol the daemons speak.
//
//	ctl serve [flags]                         run the hub service
//	ctl -s SERVICE COMMAND [ARGS-JSON]        a command for a daemon, through the hub
//	ctl kea SOCKET COMMAND [ARGS-JSON]        Kea JSON channel request
//	ctl ipc [-follow] NAME|PATH LINE...       nose line-JSON IPC
//	ctl dgram SOCKET CMD...                   sfptpd-style datagrams
//	ctl console SOCKET                        interactive console
//
// ctl -s sends {"command", "service": [SERVICE], "arguments"} to the
// hub's Kea socket (-socket, else $CTL_SOCKET, else
// /run/ctl/control.sock), which forwards it to the daemon as Kea's
// Control Agent does; SERVICE may be a comma-separated list.
//
// Client exit codes: 0 success; 1 the daemon answered with a failure; 2
// usage or connection error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tickbox-fw/tickbox/internal/cli"
)

const usage = `usage: ctl COMMAND [ARGS]

commands:
  serve [flags]                         run the control hub (ctl serve -h)
  [-socket PATH] -s SERVICE[,SERVICE] COMMAND [ARGS-JSON]
                                        send a command through the hub to these daemons
                                        (socket: -socket, $CTL_SOCKET, /run/ctl/control.sock)
  kea [-service S] SOCKET COMMAND [ARGS-JSON]
                                        send one Kea control-channel command, print the reply
  ipc [-follow] NAME|PATH LINE...       send nose IPC lines, print replies (and events)
  dgram SOCKET CMD...                   send each CMD as one sfptpd control datagram
  console SOCKET                        interactive console: stdin lines in, output out

exit status: 0 success, 1 the daemon reported a failure, 2 usage or connection error
`

func connErr(err error) error { return &cli.ExitError{Code: 2, Err: err} }

// errFailed is the status after the daemon answered with a failure: its
// reply has been printed, so there is nothing more to say.
var errFailed = &cli.ExitError{Code: 1}

func main() { cli.Main("ctl", program{stdin: os.Stdin}.run) }

// program is ctl with the standard input the console client reads.
type program struct{ stdin io.Reader }

// invocation carries a client invocation's streams.
type invocation struct {
	// ctx is cancelled by SIGINT or SIGTERM (cli.Main).
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
}

// run executes one ctl invocation: serve runs until ctx ends (SIGINT,
// SIGTERM); a client's error other than the daemon's failure (status 1)
// is a usage or connection error, status 2.
func (p program) run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return cli.Exit(cli.ExitUsage, nil)
	}
	c := &invocation{ctx: ctx, stdin: p.stdin, stdout: stdout, stderr: stderr}
	var err error
	rest := args[1:]
	switch {
	case isServiceFlag(args[0]):
		err = c.service(args)
		if err != nil && cli.Code(err, -1) == -1 {
			return cli.Exit(cli.ExitUsage, err)
		}
		return err
	}
	switch args[0] {
	case "serve":
		return serve(ctx, rest, stderr)
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
		return nil
	default:
		fmt.Fprintf(stderr, "ctl: unknown command %q\n%s", args[0], usage)
		return cli.Exit(cli.ExitUsage, nil)
	}
	if err != nil && cli.Code(err, -1) == -1 {
		return cli.Exit(cli.ExitUsage, err)
	}
	return err
}

// isServiceFlag reports whether arg starts a ctl -s command line.
func isServiceFlag(arg string) bool {
	name, _, _ := strings.Cut(strings.TrimPrefix(arg, "-"), "=")
	switch name {
	case "s", "socket", "timeout":
		return strings.HasPrefix(arg, "-")
	}
	return false
}
