package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/ctl/console"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// flags returns a flag set that reports errors as usage errors.
func (c *invocation) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// withTimeout returns c's context, ended by SIGINT/SIGTERM, also ended
// after timeout (0 = never).
func (c *invocation) withTimeout(timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return context.WithCancel(c.ctx)
	}
	return context.WithTimeout(c.ctx, timeout)
}

// kea: ctl kea [-service S] SOCKET COMMAND [ARGS-JSON]
func (c *invocation) kea(args []string) error {
	fs := c.flags("ctl kea", "ctl kea [-service NAME[,NAME]] [-timeout D] SOCKET COMMAND [ARGS-JSON]")
	service := fs.String("service", "", "add these services (comma-separated) as the request's service list: a hub, like Kea's Control Agent, routes by it; a daemon ignores it")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long (0 = never)")
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fs.Usage()
		return cli.Usage("kea: want SOCKET COMMAND [ARGS-JSON]")
	}
	var services []string
	if *service != "" {
		services = strings.Split(*service, ",")
	}
	return c.keaRequest("kea", fs.Arg(0), services, fs.Args()[1:], *timeout)
}

// hubSocketEnv names the hub's Kea socket for ctl -s, unless -socket
// does.
const hubSocketEnv = "CTL_SOCKET"

// defaultHubSocket is ctl serve's Kea socket.
const defaultHubSocket = "/run/ctl/control.sock"

// service: ctl [-socket PATH] [-timeout D] -s SERVICE[,SERVICE] COMMAND [ARGS-JSON]
// sends the command through the hub to the daemons named.
func (c *invocation) service(args []string) error {
	fs := c.flags("ctl -s", "ctl [-socket PATH] [-timeout D] -s SERVICE[,SERVICE] COMMAND [ARGS-JSON]")
	service := fs.String("s", "", "the services (comma-separated) the hub forwards the command to")
	sock := fs.String("socket", "", "the hub's Kea socket (default $"+hubSocketEnv+", else "+defaultHubSocket+")")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long (0 = never)")
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if *service == "" || fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return cli.Usage("-s: want -s SERVICE COMMAND [ARGS-JSON]")
	}
	path := *sock
	if path == "" {
		path = os.Getenv(hubSocketEnv)
	}
	if path == "" {
		path = defaultHubSocket
	}
	return c.keaRequest("-s", path, strings.Split(*service, ","), fs.Args(), *timeout)
}

// keaRequest sends {"command", "service", "arguments"} (cmd is COMMAND
// [ARGS-JSON]) to the Kea socket at path and prints the reply; the
// status is 1 when an answer's result is not 0.
func (c *invocation) keaRequest(what, path string, services []string, cmd []string, timeout time.Duration) error {
	req := map[string]any{"command": cmd[0]}
	if len(cmd) == 2 {
		var a any
		if err := json.Unmarshal([]byte(cmd[1]), &a); err != nil {
			return cli.Usage("%s: ARGS-JSON is not valid JSON: %v", what, err)
		}
		req["arguments"] = json.RawMessage(cmd[1])
	}
	if len(services) > 0 {
		req["service"] = services
	}
	body, err := json.Marshal(req)
	if err != nil {
		return cli.Usage("%s: %v", what, err)
	}
	ctx, cancel := c.withTimeout(timeout)
	defer cancel()
	reply, err := kea.Call(ctx, path, body)
	if err != nil {
		return connErr(err)
	}
	fmt.Fprintf(c.stdout, "%s\n", strings.TrimRight(string(reply), "\n"))
	ok, err := keaSucceeded(reply)
	if err != nil {
		return &cli.ExitError{Code: 1, Err: err}
	}
	if !ok {
		return errFailed
	}
	return nil
}

// keaSucceeded reports whether every answer in a Kea reply (a map, or a
// list of maps from a hub) has result 0.
func keaSucceeded(reply []byte) (bool, error) {
	type answer struct {
		Result *int `json:"result"`
	}
	var list []answer
	if err := json.Unmarshal(reply, &list); err != nil {
		var one answer
		if err := json.Unmarshal(reply, &one); err != nil {
			return false, fmt.Errorf("kea: reply is not JSON: %w", err)
		}
		list = []answer{one}
	}
	for _, a := range list {
		if a.Result == nil || *a.Result != 0 {
			return false, nil
		}
	}
	return true, nil
}

// ipcMarker is the request ctl ipc sends after a text-form line; every
// daemon has list-commands, and its reply, which is not printed, starts
// with ipcMarkerReply.
const (
	ipcMarker      = `{"command":"list-commands","id":-424242}`
	ipcMarkerReply = `{"id":-424242,`
)

// ipc: ctl ipc [-follow] NAME|PATH LINE...
func (c *invocation) ipc(args []string) error {
	fs := c.flags("ctl ipc", "ctl ipc [-follow] [-timeout D] NAME|PATH LINE...")
	follow := fs.Bool("follow", false, "after the replies, keep printing events until interrupted or the daemon closes")
	timeout := fs.Duration("timeout", 30*time.Second, "give up waiting for replies after this long (0 = never; not applied to -follow)")
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() < 1 || (fs.NArg() < 2 && !*follow) {
		fs.Usage()
		return cli.Usage("ipc: want NAME|PATH and at least one LINE (or -follow)")
	}
	cl, err := ipc.Dial(ipc.Addr(fs.Arg(0)))
	if err != nil {
		return connErr(err)
	}
	defer cl.Close()
	ctx, cancel := c.withTimeout(0)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { cl.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if *timeout > 0 {
		cl.SetDeadline(time.Now().Add(*timeout))
	}
	failed := false
	for _, line := range fs.Args()[1:] {
		// A text-form line, as in nose, gets log events and no reply:
		// a marker request after it shows where its output ends, and
		// an "error: " event is its failure. (The marker, being the next
		// line, also ends a streaming command: stream with JSON lines.)
		text := !strings.HasPrefix(strings.TrimLeft(line, " \t"), "{")
		if err := cl.Send(line); err != nil {
			return connErr(err)
		}
		if text {
			if err := cl.Send(ipcMarker); err != nil {
				return connErr(err)
			}
		}
		// Print every line until this request's reply: events may come
		// first.
		for {
			l, err := cl.ReadLine()
			if err != nil {
				return connErr(err)
			}
			if text && bytes.HasPrefix(l, []byte(ipcMarkerReply)) {
				break
			}
			fmt.Fprintf(c.stdout, "%s\n", l)
			if msg, isEvent := ipc.Event(l); isEvent {
				if text && strings.HasPrefix(msg, "error: ") {
					failed = true
				}
				continue
			}
			var rep struct {
				Success *bool `json:"success"`
			}
			if json.Unmarshal(l, &rep) == nil && rep.Success != nil && !*rep.Success {
				failed = true
			}
			if !text {
				break
			}
		}
	}
	if *follow {
		cl.SetDeadline(time.Time{})
		for {
			l, err := cl.ReadLine()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, io.EOF) {
					break
				}
				return connErr(err)
			}
			fmt.Fprintf(c.stdout, "%s\n", l)
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// dgram: ctl dgram SOCKET CMD...
func (c *invocation) dgram(args []string) error {
	fs := c.flags("ctl dgram", "ctl dgram SOCKET CMD...")
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return cli.Usage("dgram: want SOCKET and at least one CMD")
	}
	if err := dgram.Send(fs.Arg(0), fs.Args()[1:]...); err != nil {
		return connErr(err)
	}
	return nil
}

// console: ctl console SOCKET
func (c *invocation) console(args []string) error {
	fs := c.flags("ctl console", "ctl console SOCKET")
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cli.Usage("console: want SOCKET")
	}
	conn, err := console.Dial(fs.Arg(0))
	if err != nil {
		return connErr(err)
	}
	defer conn.Close()
	ctx, cancel := c.withTimeout(0)
	defer cancel()
	if err := console.Pipe(ctx, conn, c.stdin, c.stdout); err != nil && ctx.Err() == nil {
		return connErr(err)
	}
	return nil
}
