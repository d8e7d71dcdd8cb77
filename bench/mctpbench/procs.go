package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/procstat"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
)

// floorEnv names the environment variable that turns this program (or
// its test binary) into the floor server on the abstract name it holds.
const floorEnv = "MCTPBENCH_FLOOR"

// floorMain is the baseline server: a bare seqpacket echo on an abstract
// name. Like the demux it reads a client's registration byte first, then
// writes every datagram straight back to the same client: the syscalls
// and scheduling of a relay, with no MCTP work. It returns the exit
// status.
func floorMain(name string) int {
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: "@" + name, Net: "unixpacket"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor: accept:", err)
			return 1
		}
		go floorEcho(c)
	}
}

func floorEcho(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, 64<<10+2)
	if n, err := c.Read(buf); err != nil || n == 0 {
		return
	}
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

// demuxEnv names the environment variable that turns this program (or
// its test binary) into the demux alone on the abstract name it holds.
const demuxEnv = "MCTPBENCH_DEMUX"

// demuxProfileEnv, when set, names the file the demux-alone process
// writes its CPU profile to (-demuxprofile).
const demuxProfileEnv = "MCTPBENCH_DEMUX_CPUPROFILE"

// demuxMain serves the demux (services/mctpd/demux) with its loopback
// sender at localEID: what mctpd's demux costs without the MCTP router.
// It runs until SIGTERM and returns the exit status.
func demuxMain(name string) int {
	if path := os.Getenv(demuxProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demux:", err)
			return 1
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	dm, err := demux.New([]string{name}, demux.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demux:", err)
		return 1
	}
	if err := dm.Serve(demux.Loopback(dm, localEID)); err != nil {
		fmt.Fprintln(os.Stderr, "demux:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dm.Close(cctx)
	return 0
}

// proc is a server process started for the benchmark, its output in a
// log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits, killing the process if it lingers.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last lines of the process's output, for errors.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return fmt.Sprintf("%s log (%s):\n  %s", p.name, p.log, strings.Join(lines, "\n  "))
}

// cpuTime reads the process's CPU time, user and system, from
// /proc/PID/stat.
func (p *proc) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	d, err := procstat.CPU(string(b))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.name, err)
	}
	return d, nil
}

// rssKiB reads VmRSS from /proc/PID/status.
func (p *proc) rssKiB() (int, error) {
	return rssKiB(p.cmd.Process.Pid)
}

func rssKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	kib, err := parseVmRSS(f)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return kib, nil
}

// parseVmRSS finds the "VmRSS:  N kB" line of a /proc status file.
func parseVmRSS(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("odd VmRSS line %q", sc.Text())
		}
		n, err := strconv.Atoi(fields[0])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("odd VmRSS line %q", sc.Text())
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line")
}

// waitFor polls cond until it holds, p exits or the timeout passes.
func waitFor(what string, timeout time.Duration, p *proc, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited while waiting for %s\n%s", p.name, what, p.logTail())
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("%s not ready within %v", what, timeout)
			if p != nil {
				err = fmt.Errorf("%w\n%s", err, p.logTail())
			}
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func exists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// buildMctpd builds the daemon into dir, as it is deployed: no race
// detector, whatever the caller was built with.
func buildMctpd(dir string) (string, error) {
	bin := filepath.Join(dir, "mctpd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tickbox-fw/tickbox/services/mctpd/cmd/mctpd")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build mctpd: %w\n%s", err, out.String())
	}
	return bin, nil
}

// startSocat starts a socat pty pair linked at a and b: two serial
// ports wired back to back, as the mctpd tests use.
func startSocat(dir, name, a, b string) (*proc, error) {
	if _, err := exec.LookPath("socat"); err != nil {
		return nil, errors.New("socat not installed (apt-get install socat)")
	}
	p, err := startProc(dir, name, nil, "socat", "-d", "-d",
		"pty,raw,echo=0,link="+a, "pty,raw,echo=0,link="+b)
	if err != nil {
		return nil, err
	}
	if err := waitFor("pty links "+a+", "+b, 10*time.Second, p, func() bool { return exists(a)() && exists(b)() }); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// loadAvg returns the 1, 5 and 15 minute load averages as Linux prints
// them.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
