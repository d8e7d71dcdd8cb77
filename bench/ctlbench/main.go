// Command ctlbench measures tickbox's control front ends and compares the
// Kea channel with Debian's kea-dhcp4-server and with a bare Go
// accept-read-write-close server (the floor), all in the same run.
//
//	go run ./bench/ctlbench [-d 2s] [-kea-bin PATH] [-json]
//
// Every server runs as its own process; clients use raw sockets, so the
// figures include the full syscall path a real client pays. Because the
// machines are shared and noisy, read the ratios, not the absolute
// numbers.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type result struct {
	Frontend string  `json:"frontend"`
	Mode     string  `json:"mode"`
	Ops      int     `json:"ops"`
	OpsPerS  float64 `json:"ops_per_s"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	Note     string  `json:"note,omitempty"`
}

func main() {
	dur := flag.Duration("d", 2*time.Second, "duration of each measurement")
	keaBin := flag.String("kea-bin", "", "kea-dhcp4 binary (default: search PATH and /usr/sbin)")
	asJSON := flag.Bool("json", false, "print results as JSON lines as well")
	role := flag.String("role", "", "internal: run as the floor server on -sock")
	sock := flag.String("sock", "", "internal: socket path for -role")
	flag.Parse()
	if *role == "floor" {
		floorServer(*sock)
		return
	}
	if err := run(*dur, *keaBin, *asJSON); err != nil {
		fmt.Fprintf(os.Stderr, "ctlbench: %v\n", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, keaBin string, asJSON bool) error {
	dir, err := os.MkdirTemp("", "ctlbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ctlBin := filepath.Join(dir, "ctl")
	build := exec.Command("go", "build", "-o", ctlBin, "github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build ctl: %w", err)
	}

	paths := struct{ kea, dgram, ipc, console, floor, keaRef string }{
		filepath.Join(dir, "kea.sock"), filepath.Join(dir, "dgram.sock"), filepath.Join(dir, "ipc.socket"),
		filepath.Join(dir, "console.sock"), filepath.Join(dir, "floor.sock"), filepath.Join(dir, "kea-ref.sock"),
	}

	// tickbox's ctl hub.
	tb := exec.Command(ctlBin, "serve", "-kea", paths.kea, "-dgram", paths.dgram, "-ipc", paths.ipc,
		"-console", paths.console, "-max-conns", "4096", "-http", "")
	var tbLog bytes.Buffer
	tb.Stderr = &tbLog
	if err := tb.Start(); err != nil {
		return fmt.Errorf("start ctl serve: %w", err)
	}
	defer stopProc(tb)

	// The floor: the least a Go server can do per connection.
	self, _ := os.Executable()
	floor := exec.Command(self, "-role", "floor", "-sock", paths.floor)
	floor.Stderr = os.Stderr
	if err := floor.Start(); err != nil {
		return fmt.Errorf("start floor server: %w", err)
	}
	defer stopProc(floor)

	for _, p := range []string{paths.kea, paths.dgram, paths.ipc, paths.console, paths.floor} {
		if err := waitSocket(p, 10*time.Second); err != nil {
			return fmt.Errorf("%w\nctl serve log:\n%s", err, tbLog.String())
		}
	}

	// Kea itself, when installed.
	keaVersion := ""
	if keaBin == "" {
		keaBin = findKea()
	}
	var keaProc *exec.Cmd
	if keaBin != "" {
		keaProc, keaVersion, err = startKea(keaBin, dir, paths.keaRef)
		if err != nil {
			return fmt.Errorf("start Kea: %w", err)
		}
		defer stopProc(keaProc)
	}

	var results []result
	add := func(r result) {
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "  %-8s %-26s %10.0f ops/s  p50 %7.1fµs  p99 %7.1fµs %s\n", r.Frontend, r.Mode, r.OpsPerS, r.P50us, r.P99us, r.Note)
	}
	keaReq := []byte(`{"command":"list-commands"}`)
	fmt.Fprintf(os.Stderr, "ctlbench: %s, %d CPUs, %v per measurement\n", runtime.Version(), runtime.NumCPU(), dur)

	type keaCase struct {
		name, path string
	}
	cases := []keaCase{{"kea", paths.kea}, {"floor", paths.floor}}
	if keaProc != nil {
		cases = append(cases, keaCase{"Kea " + keaVersion, paths.keaRef})
	}
	keaRes := map[string]result{}
	keaRes8 := map[string]result{}
	for _, conc := range []int{1, 8} {
		ops := make([]func() error, len(cases))
		for i, c := range cases {
			ops[i] = func() error { return keaOnce(c.path, keaReq) }
		}
		rs, err := measureInterleaved(dur, conc, ops)
		if err != nil {
			return fmt.Errorf("kea channel: %w", err)
		}
		for i, c := range cases {
			r := rs[i]
			r.Frontend, r.Mode = c.name, "sequential"
			if conc > 1 {
				r.Mode = fmt.Sprintf("%d clients", conc)
				keaRes8[c.name] = r
			} else {
				keaRes[c.name] = r
			}
			add(r)
		}
	}

	// IPC: request/reply on one connection, 8 connections, and pipelined.
	ipcRes, err := benchIPC(paths.ipc, dur)
	if err != nil {
		return fmt.Errorf("ipc: %w", err)
	}
	for _, r := range ipcRes {
		add(r)
	}
	// Console: a line in, its output out.
	conRes, err := benchConsole(paths.console, dur)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	for _, r := range conRes {
		add(r)
	}
	// Datagram: blocking sends from one client, then count what ran.
	dgRes, err := benchDgram(paths.dgram, paths.kea, dur)
	if err != nil {
		return fmt.Errorf("dgram: %w", err)
	}
	for _, r := range dgRes {
		add(r)
	}

	// The table and the ratios.
	fmt.Println("| front end | mode | ops/s | p50 µs | p99 µs | note |")
	fmt.Println("|---|---|---:|---:|---:|---|")
	for _, r := range results {
		// Pipelined modes have no per-operation latency.
		p50, p99 := "–", "–"
		if r.P50us > 0 {
			p50, p99 = fmt.Sprintf("%.1f", r.P50us), fmt.Sprintf("%.1f", r.P99us)
		}
		fmt.Printf("| %s | %s | %.0f | %s | %s | %s |\n", r.Frontend, r.Mode, r.OpsPerS, p50, p99, r.Note)
	}
	fmt.Println()
	tk := keaRes["kea"]
	fl := keaRes["floor"]
	fmt.Printf("Kea channel / floor, sequential: %.2f (target >= 0.80)\n", tk.OpsPerS/fl.OpsPerS)
	fmt.Printf("Kea channel / floor, 8 clients:  %.2f\n", keaRes8["kea"].OpsPerS/keaRes8["floor"].OpsPerS)
	if keaProc != nil {
		ref := keaRes["Kea "+keaVersion]
		fmt.Printf("Kea channel / Kea %s, sequential: %.1fx (target >= 5x)\n", keaVersion, tk.OpsPerS/ref.OpsPerS)
		fmt.Printf("Kea channel / Kea %s, 8 clients:  %.1fx\n", keaVersion, keaRes8["kea"].OpsPerS/keaRes8["Kea "+keaVersion].OpsPerS)
	} else {
		fmt.Println("Kea not installed (apt-get install kea-dhcp4-server): no Kea ratio")
	}
	fmt.Printf("Kea channel p99, sequential: %.1f µs (target <= 60)\n", tk.P99us)
	for _, r := range results {
		switch {
		case r.Frontend == "ipc" && r.Mode == "pipelined echo":
			fmt.Printf("IPC pipelined echo: %.0f/s (target >= 200000)\n", r.OpsPerS)
		case r.Frontend == "dgram":
			fmt.Printf("datagram: %.0f/s, %s (target >= 100000, none lost)\n", r.OpsPerS, r.Note)
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, r := range results {
			enc.Encode(r)
		}
	}
	return nil
}

// interleaveRounds is how many slices each server's measurement is cut
// into when servers are compared: alternating them spreads the noise of
// a shared machine over all of them instead of favouring one.
const interleaveRounds = 10

// measureInterleaved measures each op for about d in total, alternating
// between them in short rounds, and returns one result per op.
func measureInterleaved(d time.Duration, conc int, ops []func() error) ([]result, error) {
	lat := make([][]time.Duration, len(ops))
	busy := make([]time.Duration, len(ops))
	for round := 0; round < interleaveRounds; round++ {
		for i, op := range ops {
			l, el, err := run1(d/interleaveRounds, conc, op, round == 0)
			if err != nil {
				return nil, err
			}
			lat[i] = append(lat[i], l...)
			busy[i] += el
		}
	}
	out := make([]result, len(ops))
	for i := range ops {
		out[i] = summarize(lat[i], busy[i])
	}
	return out, nil
}

// measure runs op from conc goroutines for about d and returns the
// throughput and latency percentiles.
func measure(d time.Duration, conc int, op func() error) (result, error) {
	lat, el, err := run1(d, conc, op, true)
	if err != nil {
		return result{}, err
	}
	return summarize(lat, el), nil
}

// run1 runs op from conc goroutines for about d, after a warm-up when
// asked, and returns every latency and the elapsed time.
func run1(d time.Duration, conc int, op func() error, warm bool) ([]time.Duration, time.Duration, error) {
	// Warm up: connections, caches, goroutine pools.
	for i := 0; warm && i < 200; i++ {
		if err := op(); err != nil {
			return nil, 0, err
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return lat, elapsed, nil
}

func summarize(lat []time.Duration, elapsed time.Duration) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := result{Ops: len(lat), OpsPerS: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		r.P50us = float64(lat[len(lat)/2]) / 1e3
		r.P99us = float64(lat[len(lat)*99/100]) / 1e3
	}
	return r
}

// keaOnce is one Kea-channel exchange: connect, send, read to EOF.
func keaOnce(path string, req []byte) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		return err
	}
	var buf [4096]byte
	total := 0
	for {
		n, err := c.Read(buf[:])
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if total == 0 {
		return errors.New("empty reply")
	}
	return nil
}

// floorServer is the baseline: accept, read one request, write a fixed
// reply, close. No framing, no parsing, no command.
func floorServer(path string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	reply := []byte(`{ "arguments": [ "list-commands" ], "result": 0 }`)
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err == nil {
				c.Write(reply)
			}
			c.Close()
		}()
	}
}

func findKea() string {
	if p, err := exec.LookPath("kea-dhcp4"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/kea-dhcp4"); err == nil {
		return "/usr/sbin/kea-dhcp4"
	}
	return ""
}

// startKea runs kea-dhcp4 with no interfaces and only a control socket.
// Like ctl serve, it logs at its default severity (INFO), to a file.
func startKea(bin, dir, sock string) (*exec.Cmd, string, error) {
	out, _ := exec.Command(bin, "-v").Output()
	version := strings.TrimSpace(string(out))
	cfg := fmt.Sprintf(`{"Dhcp4":{
  "interfaces-config":{"interfaces":[]},
  "control-socket":{"socket-type":"unix","socket-name":%q},
  "lease-database":{"type":"memfile","persist":false},
  "loggers":[{"name":"kea-dhcp4","severity":"INFO","output_options":[{"output":%q}]}]
}}`, sock, filepath.Join(dir, "kea.log"))
	cfgPath := filepath.Join(dir, "kea-dhcp4.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-c", cfgPath)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir, "KEA_LOG_CHECK_VERBOSE=0")
	var logb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	if err := waitSocket(sock, 15*time.Second); err != nil {
		stopProc(cmd)
		return nil, "", fmt.Errorf("%w\nKea log:\n%s", err, logb.String())
	}
	return cmd, version, nil
}

func waitSocket(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("socket %s did not appear within %v", path, d)
}

func stopProc(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		c.Process.Kill()
		<-done
	}
}

// lineConn is a connection read line by line.
type lineConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialLines(path string) (*lineConn, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return &lineConn{c: c, br: bufio.NewReaderSize(c, 64<<10)}, nil
}

// ipcReply reads lines until a reply (a line with "success"), skipping
// log events.
func (l *lineConn) ipcReply() ([]byte, error) {
	for {
		line, err := l.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if bytes.Contains(line, []byte(`"success"`)) {
			if !bytes.Contains(line, []byte(`"success":true`)) {
				return nil, fmt.Errorf("failure reply: %s", line)
			}
			return line, nil
		}
	}
}

func benchIPC(path string, d time.Duration) ([]result, error) {
	var out []result
	req := []byte(`{"command":"echo","id":1,"x":"y"}` + "\n")
	for _, conc := range []int{1, 8} {
		conns := make(chan *lineConn, conc)
		for i := 0; i < conc; i++ {
			lc, err := dialLines(path)
			if err != nil {
				return nil, err
			}
			defer lc.c.Close()
			conns <- lc
		}
		op := func() error {
			lc := <-conns
			defer func() { conns <- lc }()
			if _, err := lc.c.Write(req); err != nil {
				return err
			}
			_, err := lc.ipcReply()
			return err
		}
		r, err := measure(d, conc, op)
		if err != nil {
			return nil, err
		}
		r.Frontend = "ipc"
		r.Mode = "request/reply echo"
		if conc > 1 {
			r.Mode = fmt.Sprintf("request/reply echo, %d conns", conc)
		}
		out = append(out, r)
	}

	// Pipelined: a writer keeps up to 256 requests in flight on one
	// connection; the reader counts replies.
	lc, err := dialLines(path)
	if err != nil {
		return nil, err
	}
	defer lc.c.Close()
	const window = 256
	var batch bytes.Buffer
	for i := 0; i < window; i++ {
		batch.Write(req)
	}
	start := time.Now()
	deadline := start.Add(d)
	n := 0
	for time.Now().Before(deadline) {
		if _, err := lc.c.Write(batch.Bytes()); err != nil {
			return nil, err
		}
		for i := 0; i < window; i++ {
			if _, err := lc.ipcReply(); err != nil {
				return nil, err
			}
		}
		n += window
	}
	el := time.Since(start)
	out = append(out, result{Frontend: "ipc", Mode: "pipelined echo", Ops: n, OpsPerS: float64(n) / el.Seconds(), Note: fmt.Sprintf("window %d", window)})
	return out, nil
}

func benchConsole(path string, d time.Duration) ([]result, error) {
	lc, err := dialLines(path)
	if err != nil {
		return nil, err
	}
	defer lc.c.Close()
	// "echo x" prints its text first; read until the line that is "x".
	op := func() error {
		if _, err := lc.c.Write([]byte("echo benchline\n")); err != nil {
			return err
		}
		for {
			line, err := lc.br.ReadSlice('\n')
			if err != nil {
				return err
			}
			if string(bytes.TrimSpace(line)) == "benchline" {
				return nil
			}
		}
	}
	r, err := measure(d, 1, op)
	if err != nil {
		return nil, err
	}
	r.Frontend, r.Mode = "console", "line/reply echo"
	return []result{r}, nil
}

// benchDgram sends datagrams as fast as blocking writes allow, then asks
// status-get over the Kea channel how many ran.
func benchDgram(path, keaPath string, d time.Duration) ([]result, error) {
	before, err := dgramRun(keaPath)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg := []byte("echo=a,b")
	start := time.Now()
	deadline := start.Add(d)
	sent := 0
	for time.Now().Before(deadline) {
		for i := 0; i < 64; i++ {
			if _, err := c.Write(msg); err != nil {
				return nil, err
			}
		}
		sent += 64
	}
	// Wait for the daemon to run what is queued.
	var after int64
	waitUntil := time.Now().Add(30 * time.Second)
	for {
		after, err = dgramRun(keaPath)
		if err != nil {
			return nil, err
		}
		if after-before >= int64(sent) || time.Now().After(waitUntil) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	ran := after - before
	note := fmt.Sprintf("sent %d, ran %d, lost %d", sent, ran, int64(sent)-ran)
	return []result{{Frontend: "dgram", Mode: "blocking sends, 1 client", Ops: int(ran), OpsPerS: float64(ran) / el.Seconds(), Note: note}}, nil
}

// dgramRun reads the datagram front end's "run" counter from status-get.
func dgramRun(keaPath string) (int64, error) {
	c, err := net.Dial("unix", keaPath)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.Write([]byte(`{"command":"status-get"}`))
	b, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	var rep struct {
		Arguments struct {
			Dgram map[string]int64 `json:"dgram"`
		} `json:"arguments"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return 0, fmt.Errorf("status-get reply %q: %w", b, err)
	}
	n, ok := rep.Arguments.Dgram["run"]
	if !ok {
		return 0, fmt.Errorf("status-get has no dgram.run counter: %s", b)
	}
	return n, nil
}
