// Command mdiobench measures mdiod's nose IPC with simulated PHYs against
// a bare line-echo server (the floor) in the same run:
//
//   - pipelined mdio_read per second on one connection (a window of
//     requests in flight), and the ratio to the echo server given the
//     same request lines;
//
//   - the same with 8 connections at once;
//
//   - mdiod's resident memory when idle, after start and after the load.
//
//     go run ./bench/mdiobench [-d 3s] [-quick]
//
// Both servers run as their own processes and clients use raw sockets.
// The machines are shared and noisy, so the two servers are measured in
// alternating rounds and the ratio is what to read. Targets: at least
// 200k reads/s pipelined, at least 50 % of the echo floor, idle RSS at
// most 12 MiB. -quick runs briefly and checks only that it works.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// The targets mdiobench checks its figures against.
const (
	targetReads = 200_000
	targetRatio = 0.5
	targetRSS   = 12 << 20
)

func main() {
	d := flag.Duration("d", 3*time.Second, "total duration of each measurement (split into rounds)")
	quick := flag.Bool("quick", false, "short run that checks the harness; no targets")
	role := flag.String("role", "", "internal: run as the echo server on -sock")
	sock := flag.String("sock", "", "internal: socket path for -role")
	flag.Parse()
	if *role != "" {
		serveRole(*role, *sock)
		return
	}
	if *quick {
		*d = 300 * time.Millisecond
	}
	rep, err := run(*d, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mdiobench:", err)
		os.Exit(1)
	}
	if !*quick && !rep.pass() {
		os.Exit(1)
	}
}

// report holds the measured figures.
type report struct {
	mdiodRate, echoRate, batchedRate    float64 // one connection, pipelined, per second
	mdiod8Rate, echo8Rate, batched8Rate float64 // 8 connections
	rssIdle, rssAfter                   int64   // bytes
}

// ratio is against the echo server that writes each line as it reads
// it, the simplest line-echo; the batched echo is reported alongside.
func (r report) ratio() float64  { return r.mdiodRate / r.echoRate }
func (r report) ratio8() float64 { return r.mdiod8Rate / r.echo8Rate }

func (r report) pass() bool {
	return r.mdiodRate >= targetReads && r.ratio() >= targetRatio && r.rssIdle <= targetRSS
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// request is the pipelined request line: a BMSR read of port A.
var request = []byte(`{"command":"mdio_read","phy":1,"address":1,"id":7}` + "\n")

// wantReply is mdiod's reply to request with a sim port without link.
var wantReply = []byte(`{"id":7,"result":31049,"success":true}`)

func run(d time.Duration, out io.Writer) (report, error) {
	var rep report
	dir, err := os.MkdirTemp("", "mdiobench")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "mdiod")
	build := exec.Command("go", "build", "-o", bin, "github.com/tickbox-fw/tickbox/services/mdiod/cmd/mdiod")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return rep, fmt.Errorf("build mdiod: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return rep, err
	}
	ipc, echo, batched := filepath.Join(dir, "m.socket"), filepath.Join(dir, "echo.sock"), filepath.Join(dir, "batched.sock")
	mdiod := exec.Command(bin, "--ipc-server", ipc, "-kea", "", "-console", "", "-hotplug", "",
		"-port", "A=sim:88e1512", "-port", "B=sim:generic100,link=up")
	var mlog testutil.LockedBuffer
	mdiod.Stderr = &mlog
	echoCmd := exec.Command(self, "-role", "echo", "-sock", echo)
	echoCmd.Stderr = os.Stderr
	batchedCmd := exec.Command(self, "-role", "echo-batched", "-sock", batched)
	batchedCmd.Stderr = os.Stderr
	for _, c := range []*exec.Cmd{mdiod, echoCmd, batchedCmd} {
		if err := c.Start(); err != nil {
			return rep, err
		}
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	for _, p := range []string{ipc, echo, batched} {
		if err := waitSocket(p, 10*time.Second); err != nil {
			return rep, fmt.Errorf("%w\nmdiod log:\n%s", err, mlog.String())
		}
	}
	time.Sleep(200 * time.Millisecond) // let start-up settle before the idle figure
	if rep.rssIdle, err = rss(mdiod.Process.Pid); err != nil {
		return rep, err
	}

	const rounds = 3
	round := d / rounds
	for range rounds {
		for _, m := range []struct {
			path  string
			check bool
			rate  *float64
			conns int
		}{
			{echo, false, &rep.echoRate, 1}, {batched, false, &rep.batchedRate, 1}, {ipc, true, &rep.mdiodRate, 1},
			{echo, false, &rep.echo8Rate, 8}, {batched, false, &rep.batched8Rate, 8}, {ipc, true, &rep.mdiod8Rate, 8},
		} {
			r, err := pipelined(m.path, m.conns, round, m.check)
			if err != nil {
				return rep, fmt.Errorf("%s: %w", m.path, err)
			}
			*m.rate += r / rounds
		}
	}
	if rep.rssAfter, err = rss(mdiod.Process.Pid); err != nil {
		return rep, err
	}

	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(out, "| measurement | mdiod | echo, write per line | ratio | echo, batched writes | ratio | target | verdict |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---|---|\n")
	fmt.Fprintf(out, "| pipelined mdio_read, 1 connection | %.0f/s | %.0f/s | %.2f | %.0f/s | %.2f | ≥ 200000/s, ≥ 0.50 of the per-line echo | %s |\n",
		rep.mdiodRate, rep.echoRate, rep.ratio(), rep.batchedRate, rep.mdiodRate/rep.batchedRate,
		verdict(rep.mdiodRate >= targetReads && rep.ratio() >= targetRatio))
	fmt.Fprintf(out, "| pipelined mdio_read, 8 connections | %.0f/s | %.0f/s | %.2f | %.0f/s | %.2f | | |\n",
		rep.mdiod8Rate, rep.echo8Rate, rep.ratio8(), rep.batched8Rate, rep.mdiod8Rate/rep.batched8Rate)
	fmt.Fprintf(out, "| RSS idle | %s | | | | | ≤ 12 MiB | %s |\n", mib(rep.rssIdle), verdict(rep.rssIdle <= targetRSS))
	fmt.Fprintf(out, "| RSS after the load | %s | | | | | | |\n", mib(rep.rssAfter))
	return rep, nil
}

// window is how many requests each connection keeps in flight.
const window = 256

// pipelined drives conns connections for d, each writing a window of
// requests and reading as many replies, and returns replies per second
// over all of them. With check, every reply must be mdiod's.
func pipelined(path string, conns int, d time.Duration, check bool) (float64, error) {
	batch := bytes.Repeat(request, window)
	var total int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		c, err := net.Dial("unix", path)
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(deadline.Add(10 * time.Second))
			br := bufio.NewReaderSize(c, 64<<10)
			n := int64(0)
			for time.Now().Before(deadline) {
				if _, err := c.Write(batch); err != nil {
					errs <- err
					return
				}
				for i := 0; i < window; {
					line, err := br.ReadSlice('\n')
					if err != nil {
						errs <- err
						return
					}
					if bytes.HasPrefix(line, []byte(`{"type":"log"`)) {
						continue // a link event
					}
					if check && !bytes.Equal(bytes.TrimSuffix(line, []byte("\n")), wantReply) {
						errs <- fmt.Errorf("unexpected reply %q", line)
						return
					}
					i++
				}
				n += window
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(total) / el.Seconds(), nil
}

// serveRole runs this program as one of the echo servers, in its own
// process like mdiod.
func serveRole(role, sock string) {
	if role != "echo" && role != "echo-batched" {
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		os.Exit(2)
	}
	if err := echoServer(sock, role == "echo-batched"); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// echoServer is the floor: it sends every line back with no parsing and
// no command. Without batch it writes each line as soon as it has read
// it, the plainest line server; with batch it gathers lines while more
// input is buffered, as mdiod's IPC does, which makes it little more
// than a memory copy.
func echoServer(path string, batch bool) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			br := bufio.NewReaderSize(c, 64<<10)
			bw := bufio.NewWriterSize(c, 64<<10)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if !batch {
					if _, err := c.Write(line); err != nil {
						return
					}
					continue
				}
				bw.Write(line)
				if br.Buffered() == 0 {
					if bw.Flush() != nil {
						return
					}
				}
			}
		}()
	}
}

func waitSocket(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come up: %w", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rss returns a process's resident set size from /proc.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
