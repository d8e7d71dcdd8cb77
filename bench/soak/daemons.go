package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// daemon is one of the processes under soak, with its output in a log
// file and its Kea socket.
type daemon struct {
	name    string
	kea     string // its Kea socket
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // the Wait result, once done is closed
	pid     int
	version string // version-get's text at start
	// stopping is set before the soak ends the daemon, so that its end
	// is not reported as a death.
	mu       sync.Mutex
	stopping bool
}

func startDaemon(dir, name, keaPath string, argv ...string) (*daemon, error) {
	d := &daemon{name: name, kea: keaPath, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	// The daemons die with the soak, however it ends.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	return d, nil
}

// exited returns the daemon's exit error when it has ended, else nil.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		if d.err == nil {
			return fmt.Errorf("%s exited with status 0", d.name)
		}
		return fmt.Errorf("%s exited: %w", d.name, d.err)
	default:
		return nil
	}
}

// stop ends the daemon with SIGTERM and returns an error unless it
// exits with status 0 within the timeout.
func (d *daemon) stop(timeout time.Duration) error {
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	if err := d.exited(); err != nil {
		return err
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.err != nil {
			return fmt.Errorf("%s after SIGTERM: %w", d.name, d.err)
		}
		return nil
	case <-time.After(timeout):
		d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM", d.name, timeout)
	}
}

func (d *daemon) kill() {
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	select {
	case <-d.done:
	default:
		d.cmd.Process.Kill()
		<-d.done
	}
}

// logTail returns the last lines of the daemon's output.
func (d *daemon) logTail(n int) string {
	b, _ := os.ReadFile(d.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- %s (%s), last lines:\n  %s", d.name, d.logPath, strings.Join(lines, "\n  "))
}

// keaReply is a Kea channel answer.
type keaReply struct {
	Result    *int            `json:"result"`
	Text      string          `json:"text"`
	Arguments json.RawMessage `json:"arguments"`
}

// call sends one command on the daemon's Kea socket and decodes a
// result-0 answer.
func (d *daemon) call(ctx context.Context, req string) (keaReply, error) {
	b, err := kea.Call(ctx, d.kea, []byte(req))
	if err != nil {
		return keaReply{}, err
	}
	var r keaReply
	if err := json.Unmarshal(b, &r); err != nil {
		return keaReply{}, fmt.Errorf("%s: %w: %s", req, err, b)
	}
	if r.Result == nil || *r.Result != 0 {
		return keaReply{}, fmt.Errorf("%s: %s", req, b)
	}
	return r, nil
}

// waitUp waits until the daemon answers status-get and records its pid
// (the status-get one, which must be the process started: ip netns exec
// execs the daemon) and version.
func (d *daemon) waitUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := d.exited(); err != nil {
			return fmt.Errorf("%w\n%s", err, d.logTail(20))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := d.call(ctx, `{"command":"status-get"}`)
		cancel()
		if err == nil {
			var st struct{ Pid int }
			if err := json.Unmarshal(r.Arguments, &st); err != nil {
				return fmt.Errorf("%s status-get: %w", d.name, err)
			}
			if st.Pid != d.cmd.Process.Pid {
				return fmt.Errorf("%s status-get reports pid %d, started %d", d.name, st.Pid, d.cmd.Process.Pid)
			}
			d.pid = st.Pid
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v, err := d.call(ctx, `{"command":"version-get"}`)
			cancel()
			if err != nil {
				return fmt.Errorf("%s version-get: %w", d.name, err)
			}
			d.version = v.Text
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering on %s within %v: %w\n%s", d.name, d.kea, timeout, err, d.logTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sample is a daemon's footprint at one moment.
type sample struct {
	RSSKiB     int
	Goroutines int
	FDs        int
}

// measure reads the daemon's footprint: RSS from /proc/PID/status,
// open descriptors from /proc/PID/fd, goroutines from status-get. It
// takes readings readings apart by gap and keeps the smallest
// goroutine and descriptor counts (a reading's own status-get
// connection, and a client's connection still closing, are transient)
// and the last RSS.
func (d *daemon) measure(readings int, gap time.Duration) (sample, error) {
	var s sample
	for i := range readings {
		if i > 0 {
			time.Sleep(gap)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := d.call(ctx, `{"command":"status-get"}`)
		cancel()
		if err != nil {
			return s, fmt.Errorf("%s status-get: %w", d.name, err)
		}
		var st struct {
			Pid        int
			Goroutines *int
		}
		if err := json.Unmarshal(r.Arguments, &st); err != nil || st.Goroutines == nil {
			return s, fmt.Errorf("%s status-get without goroutines: %s", d.name, r.Arguments)
		}
		if st.Pid != d.pid {
			return s, fmt.Errorf("%s: status-get pid %d, was %d", d.name, st.Pid, d.pid)
		}
		rss, err := rssKiB(d.pid)
		if err != nil {
			return s, err
		}
		fds, err := countFDs(d.pid)
		if err != nil {
			return s, err
		}
		if i == 0 || *st.Goroutines < s.Goroutines {
			s.Goroutines = *st.Goroutines
		}
		if i == 0 || fds < s.FDs {
			s.FDs = fds
		}
		s.RSSKiB = rss
	}
	return s, nil
}

func rssKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	kib, err := statusKiB(f, "VmRSS")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return kib, nil
}

// statusKiB finds the "KEY:  N kB" line of a /proc/PID/status file.
func statusKiB(r io.Reader, key string) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("odd %s line %q", key, sc.Text())
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("odd %s line %q", key, sc.Text())
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s line", key)
}

func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// ipCmd runs ip with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var errStopped = errors.New("stopped")
