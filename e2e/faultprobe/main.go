// Command faultprobe is the end-to-end fault test's client load: copied
// into the VM and run there, it keeps one client per socket sending real
// requests (over the Kea channel, the nose IPC, the console, sfptpd
// datagrams and the MCTP demux), each again as soon as the last is
// answered, and logs each request with its start and end on the VM's
// boot clock (the clock of /proc/uptime and of a process's start time in
// /proc/PID/stat):
//
//	faultprobe -version V -log FILE -run FILE PROBE...
//
// PROBE is KIND=ADDR: kea=SOCKET, ipc=NAME|PATH, console=SOCKET,
// dgram=SOCKET,DATAGRAM or demux=NAME (a get-eid for EID 8, the VM's
// mctpd). Each line is "START END PROBE RESULT": RESULT is ok (the right
// answer), down (no socket, refused, or a connection ended without a
// reply: the daemon is not there) or bad:TEXT (a wrong or malformed
// answer, a timeout, any other error). While the -run file exists the
// clients go on; then each logs "end PROBE" and the program exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/ctl/console"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// requestTimeout bounds one request; a daemon that accepts and never
// answers is a failure (bad), not an outage.
const requestTimeout = 10 * time.Second

// pause is the gap between two requests of one client, so that a
// refusing socket is not hammered.
const pause = 20 * time.Millisecond

func main() {
	version := flag.String("version", "", "the version every daemon reports")
	logPath := flag.String("log", "", "file the results are appended to")
	runPath := flag.String("run", "", "keep going while this file exists")
	flag.Parse()
	if *version == "" || *logPath == "" || *runPath == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: faultprobe -version V -log FILE -run FILE KIND=ADDR...")
		os.Exit(2)
	}
	out, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultprobe:", err)
		os.Exit(1)
	}
	defer out.Close()
	var mu sync.Mutex
	logf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format, a...)
	}
	var wg sync.WaitGroup
	for _, p := range flag.Args() {
		kind, addr, _ := strings.Cut(p, "=")
		wg.Go(func() {
			defer logf("end %s\n", p)
			for {
				if _, err := os.Stat(*runPath); err != nil {
					return
				}
				start := uptime()
				r := probe(kind, addr, *version)
				logf("%.3f %.3f %s %s\n", start, uptime(), p, r)
				time.Sleep(pause)
			}
		})
	}
	wg.Wait()
}

// uptime is CLOCK_BOOTTIME in seconds, the clock of /proc/uptime.
func uptime() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic(err)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// probe sends one request and classifies the outcome.
func probe(kind, addr, version string) string {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var err error
	switch kind {
	case "kea":
		err = probeKea(ctx, addr, version)
	case "ipc":
		err = probeIPC(addr, version)
	case "console":
		err = probeConsole(addr, version)
	case "dgram":
		sock, msg, _ := strings.Cut(addr, ",")
		err = dgram.Send(sock, msg)
	case "demux":
		err = probeDemux(addr)
	default:
		err = fmt.Errorf("unknown probe kind %q", kind)
	}
	return classify(err)
}

// errDown marks a connection that ended before any reply: the daemon
// died under it.
var errDown = errors.New("connection ended without a reply")

func classify(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, kea.ErrNoReply), errors.Is(err, errDown):
		return "down"
	}
	return "bad:" + strings.ReplaceAll(err.Error(), "\n", " ")
}

func probeKea(ctx context.Context, sock, version string) error {
	reply, err := kea.Call(ctx, sock, []byte(`{"command":"version-get"}`))
	if err != nil {
		return err
	}
	var r struct {
		Result *int   `json:"result"`
		Text   string `json:"text"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return fmt.Errorf("reply %q: %w", reply, err)
	}
	if r.Result == nil || *r.Result != 0 || r.Text != version {
		return fmt.Errorf("reply %s", reply)
	}
	return nil
}

func probeIPC(name, version string) error {
	c, err := ipc.Dial(ipc.Addr(name))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(requestTimeout))
	line, err := c.Do(`{"command":"version-get","id":7}`, nil)
	if errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "inside a line") {
		return errDown // a cut line is a malformed reply, not an outage
	}
	if err != nil {
		return err
	}
	var r struct {
		ID       *int   `json:"id"`
		Success  *bool  `json:"success"`
		Extended string `json:"extended"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("reply %q: %w", line, err)
	}
	// The extended text starts "NAME VERSION".
	if r.ID == nil || *r.ID != 7 || r.Success == nil || !*r.Success || !strings.Contains(r.Extended, " "+version+"\n") {
		return fmt.Errorf("reply %s", line)
	}
	return nil
}

func probeConsole(sock, version string) error {
	c, err := console.Dial(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := c.Write([]byte("version-get\n")); err != nil {
		return err
	}
	c.CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil && !(errors.Is(err, syscall.ECONNRESET) && len(b) > 0) {
		return err
	}
	if len(b) == 0 {
		return errDown
	}
	if string(b) != version+"\n" {
		return fmt.Errorf("output %q", b)
	}
	return nil
}

// probeDemux asks mctpd, through its demux, for the EID of endpoint 8:
// the VM's mctpd answers for itself.
func probeDemux(name string) error {
	const eid = 8
	c, err := demux.Dial(name, mctp.TypeControlReplies)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(requestTimeout))
	inst := byte(os.Getpid()) & 0x1f
	if err := c.SendType(eid, mctp.TypeControl, []byte{0x80 | inst, mctp.CmdGetEID}); err != nil {
		return err
	}
	for {
		src, _, body, err := c.Recv()
		if errors.Is(err, io.EOF) {
			return errDown
		}
		if err != nil {
			return err
		}
		// Other control traffic reaches the demux too: take our reply.
		if src != eid || len(body) < 3 || body[0] != inst || body[1] != mctp.CmdGetEID {
			continue
		}
		if body[2] != mctp.CCSuccess || len(body) < 6 || body[3] != eid {
			return fmt.Errorf("get-eid reply % x", body)
		}
		return nil
	}
}
