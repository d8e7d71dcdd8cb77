// Command sfptpdctl sends control commands to ptpd (or sfptpd) over the
// sfptpd datagram socket, one datagram per argument, exactly as
// sfptpd's own sfptpdctl does: the same usage text, getopt_long's
// option handling and messages, the same error texts and exit codes.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
)

// DefaultSocket is the control socket sfptpdctl sends to without -s,
// sfptpd's default control_path.
const DefaultSocket = "/run/sfptpd/control-v1.sock"

// sunPathMax is the size of sockaddr_un's sun_path, NUL included.
const sunPathMax = 108

func main() {
	os.Exit(runAs(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}

// usage prints sfptpdctl's usage; prog is the program's short name.
func usage(w io.Writer, prog string) {
	fmt.Fprintf(w, `syntax: %s [OPTIONS] COMMAND-STRING*

  COMMAND-STRING
    exit                 cause sfptpd to exit
    logrotate            cause the log files to be closed and reopened
    stepclocks           cause the clocks to be stepped
    testmode=MODE[,ARG]* select test mode (see sfptpd source)
    selectinstance=NAME  select specific sync instance
    dumptables           dump some internal state to message log
    pid_adjust=[KP[,[KI][,[KD][,local|ptp|pps|reset]*]]]
                         set PID coefficients with optional reset per servo type, or all by default
    block_clock=<1|0>[,CLOCK]*
                         block or unblock a list of clocks

  OPTIONS
    -h, --help           Show usage
    -s, --socket         Set control socket (default: %s)
`, prog, DefaultSocket)
}

// run is runAs under the name sfptpdctl.
func run(args []string, stdout, stderr io.Writer) int {
	return runAs("sfptpdctl", args, stdout, stderr)
}

var longOpts = []string{"help", "socket"}

// runAs parses args as glibc's getopt_long does with "hs:" and the long
// options help and socket (options may follow commands, "--" ends
// them, long names may be abbreviated), then sends the commands. On an
// option error getopt's own message comes first, then sfptpdctl's
// "unexpected option: " naming the argument getopt would look at next
// ("(null)" when there is none), then the usage.
func runAs(argv0 string, args []string, stdout, stderr io.Writer) int {
	prog := filepath.Base(argv0)
	socket := DefaultSocket
	var cmds []string
	// next is argv[optind] once getopt has stepped past element i.
	next := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return "(null)"
	}
	fail := func(nextArg string) int {
		fmt.Fprintf(stderr, "unexpected option: %s\n", nextArg)
		usage(stderr, prog)
		return 1
	}
	for i := 0; i < len(args); {
		a := args[i]
		switch {
		case a == "--":
			cmds = append(cmds, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			var found []string
			for _, o := range longOpts {
				if o == name {
					found = []string{o}
					break
				}
				if strings.HasPrefix(o, name) {
					found = append(found, o)
				}
			}
			switch {
			case len(found) == 0:
				fmt.Fprintf(stderr, "%s: unrecognized option '%s'\n", argv0, a)
				return fail(next(i + 1))
			case len(found) > 1:
				fmt.Fprintf(stderr, "%s: option '%s' is ambiguous; possibilities: '--help' '--socket'\n", argv0, "--"+name)
				return fail(next(i + 1))
			case found[0] == "help":
				if hasVal {
					fmt.Fprintf(stderr, "%s: option '--help' doesn't allow an argument\n", argv0)
					return fail(next(i + 1))
				}
				usage(stdout, prog)
				return 0
			case hasVal:
				socket = val
				i++
			case i+1 < len(args):
				socket = args[i+1]
				i += 2
			default:
				fmt.Fprintf(stderr, "%s: option '--socket' requires an argument\n", argv0)
				return fail(next(len(args)))
			}
		case len(a) > 1 && a[0] == '-':
			i++
		cluster:
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'h':
					usage(stdout, prog)
					return 0
				case 's':
					switch {
					case j+1 < len(a):
						socket = a[j+1:]
					case i < len(args):
						socket = args[i]
						i++
					default:
						fmt.Fprintf(stderr, "%s: option requires an argument -- 's'\n", argv0)
						return fail(next(len(args)))
					}
					break cluster
				default:
					fmt.Fprintf(stderr, "%s: invalid option -- '%c'\n", argv0, a[j])
					if j+1 < len(a) {
						// getopt is still inside this element.
						return fail(a)
					}
					return fail(next(i))
				}
			}
		default:
			cmds = append(cmds, a)
			i++
		}
	}
	if len(cmds) == 0 {
		usage(stderr, prog)
		return 1
	}
	if len(socket) >= sunPathMax {
		fmt.Fprintf(stderr, "address too long: %s\n", socket)
		return 1
	}
	if err := dgram.Send(socket, cmds...); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
