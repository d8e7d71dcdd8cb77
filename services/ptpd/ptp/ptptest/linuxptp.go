package ptptest

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a background process with its output lines collected.
type Proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []Line
	done   chan struct{}
	onLine func(string)
}

// Line is one output line and when it was read.
type Line struct {
	At   time.Time
	Text string
}

func startProc(cmd *exec.Cmd, onLine func(string)) (*Proc, error) {
	p := &Proc{cmd: cmd, done: make(chan struct{}), onLine: onLine}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		_ = cmd.Wait()
		w.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			txt := sc.Text()
			p.mu.Lock()
			if len(p.lines) < 200000 {
				p.lines = append(p.lines, Line{time.Now(), txt})
			}
			p.mu.Unlock()
			if p.onLine != nil {
				p.onLine(txt)
			}
		}
	}()
	return p, nil
}

// Lines returns the output so far.
func (p *Proc) Lines() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop terminates the process and waits for its output to end.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill kills the process at once (a master that dies).
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Ptp4lConfig is what a ptp4l run needs.
type Ptp4lConfig struct {
	Iface string
	// Global options, one "key value" per entry, after the defaults
	// (free_running 1, uds_address in Dir).
	Options []string
	// Slave adds -s (slave only).
	Slave bool
	// Dir holds the config file and the UDS socket.
	Dir string
}

// MasterOptions configure a ptp4l grandmaster for the interop runs:
// Sync and Delay_Req sixteen a second, Announce four a second with a
// receipt timeout of three. Sixteen samples a second average the
// software-timestamp noise of a veth pair well below a microsecond while
// a servo still settles in seconds; fast Announces make failover quick.
func MasterOptions() []string {
	return []string{
		"priority1 1",
		"logSyncInterval -4",
		"logMinDelayReqInterval -4",
		"logAnnounceInterval -2",
		"announceReceiptTimeout 3",
	}
}

// FreeRunningSlaveOptions make a free-running ptp4l slave log one
// "master offset" line a second (with sixteen Syncs a second): a
// free-running ptp4l logs an offset once per frequency-estimation
// interval (freq_est_interval 0 is its minimum, one second), and
// summary_interval -4 keeps each as its own line instead of folding them
// into an "rms" summary.
func FreeRunningSlaveOptions() []string {
	return []string{"freq_est_interval 0", "summary_interval -4"}
}

// UDS is the management socket path of a ptp4l started with cfg.
func (c Ptp4lConfig) UDS() string { return filepath.Join(c.Dir, "ptp4l.uds") }

// StartPtp4l runs ptp4l with software timestamps in ns. Its clock runs
// free (free_running 1): it never adjusts the host clock.
func StartPtp4l(ns *NS, c Ptp4lConfig) (*Proc, error) {
	conf := "[global]\nfree_running 1\nuds_address " + c.UDS() + "\n" + strings.Join(c.Options, "\n") + "\n"
	path := filepath.Join(c.Dir, "ptp4l.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-f", path, "-i", c.Iface, "-S", "-m", "-q"}
	if c.Slave {
		args = append(args, "-s")
	}
	return startProc(ns.Command(bin("ptp4l"), args...), nil)
}

var offsetRE = regexp.MustCompile(`master offset\s+(-?\d+)\s+s(\d)`)

// Offset is one "master offset" line of ptp4l.
type Offset struct {
	At    time.Time
	NS    float64
	State int // servo state: 0 unlocked, 1 step, 2 locked
}

// Offsets parses ptp4l's "master offset" lines.
func Offsets(lines []Line) []Offset {
	var out []Offset
	for _, l := range lines {
		m := offsetRE.FindStringSubmatch(l.Text)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		s, _ := strconv.Atoi(m[2])
		out = append(out, Offset{l.At, v, s})
	}
	return out
}

// TrueErrors returns the true errors of the reports in the window that
// ends at the last report.
func TrueErrors(rs []Report, window time.Duration) []float64 {
	if len(rs) == 0 {
		return nil
	}
	end := rs[len(rs)-1].At
	var errs []float64
	for _, r := range rs {
		if r.At.After(end.Add(-window)) {
			errs = append(errs, r.TrueErr)
		}
	}
	return errs
}

// RMS returns the root mean square and the largest absolute value.
func RMS(v []float64) (rms, maxAbs float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN()
	}
	var sum float64
	for _, x := range v {
		sum += x * x
		maxAbs = math.Max(maxAbs, math.Abs(x))
	}
	return math.Sqrt(sum / float64(len(v))), maxAbs
}

// PMC runs pmc against a ptp4l's UDS socket and returns its output.
func PMC(ns *NS, uds, query string) (string, error) {
	out, err := ns.Command(bin("pmc"), "-u", "-b", "0", "-s", uds, query).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pmc %q: %w: %s", query, err, out)
	}
	return string(out), nil
}
