// Command sfptpdctl sends control commands to ptpd (or sfptpd) over the
// sfptpd datagram socket, one datagram per argument, exactly as
// sfptpd's own sfptpdctl does, error texts included.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// DefaultSocket is the control socket sfptpd's configuration defaults
// to and ptpd listens on unless control_path says otherwise.
const DefaultSocket = "/var/run/sfptpd/control-v1.sock"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `syntax: sfptpdctl [OPTIONS] COMMAND-STRING*

  COMMAND-STRING
    exit                 cause sfptpd to exit
    logrotate            cause the log files to be closed and reopened
    stepclocks           cause the clocks to be stepped
    selectinstance=NAME  select specific sync instance
    dumptables           dump some internal state to message log
    pid_adjust=[KP[,[KI][,[KD][,local|ptp|pps|reset]*]]]
                         set PID coefficients with optional reset per servo type, or all by default
    block_clock=<1|0>[,CLOCK]*
                         block or unblock a list of clocks
    interfaceinsert=IF   an interface appeared (hotplug_detection_mode manual)
    interfaceremove=IF   an interface went away (hotplug_detection_mode manual)

  OPTIONS
    -h, --help           Show usage
    -s, --socket         Set control socket (default: %s)
`, DefaultSocket)
}

// run parses the arguments as getopt_long does (options may follow
// commands; "--" ends them) and sends the commands.
func run(args []string, stdout, stderr io.Writer) int {
	socket := DefaultSocket
	var cmds []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			cmds = append(cmds, args[i+1:]...)
			i = len(args)
		case a == "-h" || a == "--help":
			usage(stdout)
			return 0
		case a == "-s" || a == "--socket":
			if i+1 >= len(args) {
				fmt.Fprintf(stderr, "sfptpdctl: option requires an argument -- '%s'\n", strings.TrimLeft(a, "-"))
				usage(stderr)
				return 1
			}
			i++
			socket = args[i]
		case strings.HasPrefix(a, "--socket="):
			socket = strings.TrimPrefix(a, "--socket=")
		case strings.HasPrefix(a, "-s") && !strings.HasPrefix(a, "--"):
			socket = a[2:]
		case len(a) > 1 && a[0] == '-':
			fmt.Fprintf(stderr, "unexpected option: %s\n", a)
			usage(stderr)
			return 1
		default:
			cmds = append(cmds, a)
		}
	}
	if len(cmds) == 0 {
		usage(stderr)
		return 1
	}
	if err := ctl.SendDgram(socket, cmds...); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
