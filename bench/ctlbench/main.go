// Command ctlbench measures tickbox's control front ends. The Kea channel
// is compared, in the same run, with a bare Go accept-read-write-close
// server (the floor) and with Debian's kea-dhcp4 (2.2.0):
//
//	go run ./bench/ctlbench [-d 2s] [-clients 1,8,64] [-strict] [-json]
//	    [-kea-bin PATH] [-ctl-bin PATH] [-only kea] [-cpuprofile FILE]
//
// All three are sent the same command, list-commands, one connection per
// command as the Kea protocol has it (connect, write the command, read
// the reply until the server closes, close): sequentially, one connection
// at a time, and pipelined, N client workers each running that loop so
// that N connections are in flight at once (-clients; 1 is the sequential
// mode). The floor answers with the very bytes tickbox's channel answers,
// so the two differ only in the work between the read and the write.
// Then the IPC, the console and the datagram front end are measured.
//
// Every server runs as its own process; clients use raw sockets, so the
// figures include the full syscall path a real client pays. The servers
// are measured in interleaved rounds so that the noise of a shared machine
// falls on all alike: read the ratios, not the absolute figures. Targets
// print PASS or FAIL; the exit status is 0 unless a measurement fails, or
// -strict is given and a target is missed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables that turn this program (or its test binary) into
// the floor server: the socket path, and the file holding its reply.
const (
	floorEnv      = "CTLBENCH_FLOOR"
	floorReplyEnv = "CTLBENCH_FLOOR_REPLY"
)

// keaCommand is the request every Kea-channel server is sent. Both tickbox
// and Kea answer list-commands from a fixed list, without touching any
// other state.
var keaCommand = []byte(`{"command":"list-commands"}`)

// Targets of the Kea channel against the floor, sequentially.
const (
	targetSeqRatio = 0.90 // ops/s at least this share of the floor's
	targetP99Ratio = 1.20 // p99 at most this multiple of the floor's
)

// Names of the Kea-channel servers in the table.
const (
	serverKea   = "kea channel"
	serverFloor = "floor"
)

type result struct {
	Frontend string  `json:"frontend"`
	Mode     string  `json:"mode"`
	Ops      int     `json:"ops"`
	OpsPerS  float64 `json:"ops_per_s"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	// CPUus is the server process's CPU time per operation (every thread
	// of it, from /proc), where the server is a process of its own.
	CPUus float64 `json:"server_cpu_us,omitempty"`
	Note  string  `json:"note,omitempty"`
	// Lost counts the datagrams sent but not run.
	Lost int64 `json:"lost,omitempty"`
}

// ratio is one line of the verdict: a ratio or figure, with its target
// when it has one.
type ratio struct {
	Name   string  `json:"ratio"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target string  `json:"target,omitempty"`
	// Pass is set for a line with a target.
	Pass *bool `json:"pass,omitempty"`
}

func (r ratio) String() string {
	s := fmt.Sprintf("%s: %.2f%s", r.Name, r.Value, r.Unit)
	if r.Unit == "/s" {
		s = fmt.Sprintf("%s: %.0f%s", r.Name, r.Value, r.Unit)
	}
	if r.Target != "" {
		s += " (target " + r.Target + ")"
	}
	if r.Pass != nil {
		if *r.Pass {
			s += " PASS"
		} else {
			s += " FAIL"
		}
	}
	return s
}

type config struct {
	dur        time.Duration
	keaBin     string
	ctlBin     string
	asJSON     bool
	strict     bool
	clients    []int
	onlyKea    bool
	cpuProfile string
}

// keaKey names one Kea-channel measurement: a server and its number of
// concurrent clients.
type keaKey struct {
	server  string
	clients int
}

// report is what a run measured.
type report struct {
	results []result
	// keaVersion is kea-dhcp4's version, empty when it is not installed.
	keaVersion string
	kea        map[keaKey]result
	ratios     []ratio
}

// keaServer is the table name of Kea's own daemon.
func (r *report) keaServer() string { return "Kea " + r.keaVersion }

// missed counts the targets not met.
func (r *report) missed() int {
	n := 0
	for _, v := range r.ratios {
		if v.Pass != nil && !*v.Pass {
			n++
		}
	}
	return n
}

func modeName(clients int) string {
	if clients == 1 {
		return "sequential"
	}
	return fmt.Sprintf("pipelined(%d)", clients)
}

func main() {
	if path := os.Getenv(floorEnv); path != "" {
		os.Exit(floorMain(path, os.Getenv(floorReplyEnv)))
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "ctlbench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ctlbench: %v\n", err)
		os.Exit(1)
	}
	if n := rep.missed(); n > 0 && cfg.strict {
		fmt.Fprintf(os.Stderr, "ctlbench: %d target(s) missed\n", n)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("ctlbench", flag.ContinueOnError)
	fs.DurationVar(&cfg.dur, "d", 2*time.Second, "duration of each measurement")
	fs.StringVar(&cfg.keaBin, "kea-bin", "", "kea-dhcp4 binary (default: search PATH and /usr/sbin)")
	fs.StringVar(&cfg.ctlBin, "ctl-bin", "", "a ctl binary to measure instead of building this checkout's")
	fs.BoolVar(&cfg.asJSON, "json", false, "print results and ratios as JSON lines as well")
	fs.BoolVar(&cfg.strict, "strict", false, "exit with status 1 when a target is missed")
	clients := fs.String("clients", "1,8,64", "Kea-channel modes: concurrent client connections (1 is the sequential mode)")
	only := fs.String("only", "", "measure only the `kea` channel rows (the IPC, console and datagram rows are left out)")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "have ctl serve write a CPU profile of itself to `FILE` (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.dur <= 0 {
		return cfg, fmt.Errorf("-d %v: want a positive duration", cfg.dur)
	}
	for _, f := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("-clients %q: want positive counts separated by commas", *clients)
		}
		if !slices.Contains(cfg.clients, n) {
			cfg.clients = append(cfg.clients, n)
		}
	}
	switch *only {
	case "":
	case "kea":
		cfg.onlyKea = true
	default:
		return cfg, fmt.Errorf("-only %q: the only choice is kea", *only)
	}
	if cfg.ctlBin != "" {
		// A file name, not a command to look up in PATH.
		p, err := filepath.Abs(cfg.ctlBin)
		if err != nil {
			return cfg, fmt.Errorf("-ctl-bin: %w", err)
		}
		cfg.ctlBin = p
	}
	if cfg.cpuProfile != "" {
		p, err := filepath.Abs(cfg.cpuProfile)
		if err != nil {
			return cfg, fmt.Errorf("-cpuprofile: %w", err)
		}
		cfg.cpuProfile = p
	}
	return cfg, nil
}

// run starts the servers, measures them, and prints the table and the
// verdict to out and its progress to progress.
func run(ctx context.Context, cfg config, out, progress io.Writer) (*report, error) {
	dir, err := os.MkdirTemp("", "ctlbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	ctlBin := cfg.ctlBin
	if ctlBin == "" {
		ctlBin = filepath.Join(dir, "ctl")
		build := exec.CommandContext(ctx, "go", "build", "-o", ctlBin, "github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build ctl: %w\n%s", err, out)
		}
	}

	paths := struct{ kea, dgram, ipc, console, floor, floorReply, keaRef string }{
		filepath.Join(dir, "kea.sock"), filepath.Join(dir, "dgram.sock"), filepath.Join(dir, "ipc.socket"),
		filepath.Join(dir, "console.sock"), filepath.Join(dir, "floor.sock"), filepath.Join(dir, "floor.reply"),
		filepath.Join(dir, "kea-ref.sock"),
	}

	// tickbox's ctl, serving every front end.
	args := []string{"serve", "-kea", paths.kea, "-dgram", paths.dgram, "-ipc", paths.ipc,
		"-console", paths.console, "-max-conns", "4096", "-http", ""}
	if cfg.cpuProfile != "" {
		args = append(args, "-cpuprofile", cfg.cpuProfile)
	}
	tb := exec.Command(ctlBin, args...)
	var tbLog lockedBuffer
	tb.Stderr = &tbLog
	if err := tb.Start(); err != nil {
		return nil, fmt.Errorf("start ctl serve: %w", err)
	}
	defer stopProc(tb)
	for _, p := range []string{paths.kea, paths.dgram, paths.ipc, paths.console} {
		if err := waitSocket(p, 10*time.Second); err != nil {
			return nil, fmt.Errorf("%w\nctl serve log:\n%s", err, tbLog.String())
		}
	}

	// The floor: the least a Go server can do per connection, answering
	// with ctl's own reply.
	reply, err := keaExchange(paths.kea, keaCommand)
	if err != nil {
		return nil, fmt.Errorf("kea channel: %w", err)
	}
	if err := os.WriteFile(paths.floorReply, reply, 0o644); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program for the floor: %w", err)
	}
	floor := exec.Command(self)
	floor.Env = append(os.Environ(), floorEnv+"="+paths.floor, floorReplyEnv+"="+paths.floorReply)
	var floorLog lockedBuffer
	floor.Stderr = &floorLog
	if err := floor.Start(); err != nil {
		return nil, fmt.Errorf("start floor server: %w", err)
	}
	defer stopProc(floor)
	if err := waitSocket(paths.floor, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%w\nfloor server log:\n%s", err, floorLog.String())
	}

	rep := &report{kea: map[keaKey]result{}}
	// Kea itself, when installed.
	keaBin := cfg.keaBin
	if keaBin == "" {
		keaBin = findKea()
	}
	keaPid := 0
	if keaBin != "" {
		keaProc, version, err := startKea(keaBin, dir, paths.keaRef)
		if err != nil {
			return nil, fmt.Errorf("start Kea: %w", err)
		}
		defer stopProc(keaProc)
		rep.keaVersion = version
		keaPid = keaProc.Process.Pid
	}

	add := func(r result) {
		rep.results = append(rep.results, r)
		fmt.Fprintf(progress, "  %-12s %-26s %10.0f ops/s  p50 %7.1fµs  p99 %7.1fµs  server CPU %5.1fµs/op %s\n", r.Frontend, r.Mode, r.OpsPerS, r.P50us, r.P99us, r.CPUus, r.Note)
	}
	fmt.Fprintf(progress, "ctlbench: %s, %d CPUs, %v per measurement, %s for each Kea-channel server\n",
		runtime.Version(), runtime.NumCPU(), cfg.dur, keaCommand)

	type keaServer struct {
		name, path string
		pid        int
	}
	servers := []keaServer{{serverKea, paths.kea, tb.Process.Pid}, {serverFloor, paths.floor, floor.Process.Pid}}
	if rep.keaVersion != "" {
		servers = append(servers, keaServer{rep.keaServer(), paths.keaRef, keaPid})
	}
	for _, n := range cfg.clients {
		ops := make([]func() error, len(servers))
		pids := make([]int, len(servers))
		for i, s := range servers {
			ops[i] = func() error { return keaOnce(s.path, keaCommand) }
			pids[i] = s.pid
		}
		rs, err := measureInterleaved(ctx, cfg.dur, n, ops, pids)
		if err != nil {
			return nil, fmt.Errorf("kea channel, %s: %w", modeName(n), err)
		}
		for i, s := range servers {
			r := rs[i]
			r.Frontend, r.Mode = s.name, modeName(n)
			rep.kea[keaKey{s.name, n}] = r
			add(r)
		}
	}

	if !cfg.onlyKea {
		// IPC: request/reply on one connection, 8 connections, and
		// pipelined.
		ipcRes, err := benchIPC(ctx, paths.ipc, cfg.dur)
		if err != nil {
			return nil, fmt.Errorf("ipc: %w", err)
		}
		for _, r := range ipcRes {
			add(r)
		}
		// Console: a line in, its output out.
		conRes, err := benchConsole(ctx, paths.console, cfg.dur)
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		for _, r := range conRes {
			add(r)
		}
		// Datagram: blocking sends from one client, then count what ran.
		dgRes, err := benchDgram(ctx, paths.dgram, paths.kea, cfg.dur)
		if err != nil {
			return nil, fmt.Errorf("dgram: %w", err)
		}
		for _, r := range dgRes {
			add(r)
		}
	}

	rep.judge(cfg)
	rep.print(out, cfg.asJSON)
	return rep, nil
}

// judge computes the ratios and checks the targets.
func (r *report) judge(cfg config) {
	add := func(name string, v float64, unit string) {
		r.ratios = append(r.ratios, ratio{Name: name, Value: v, Unit: unit})
	}
	target := func(name string, v float64, unit, target string, pass bool) {
		r.ratios = append(r.ratios, ratio{Name: name, Value: v, Unit: unit, Target: target, Pass: &pass})
	}
	kc, okK := r.kea[keaKey{serverKea, 1}]
	fl, okF := r.kea[keaKey{serverFloor, 1}]
	if okK && okF {
		v := kc.OpsPerS / fl.OpsPerS
		target("kea channel sequential / floor", v, "x", fmt.Sprintf(">= %.2fx", targetSeqRatio), v >= targetSeqRatio)
		p := kc.P99us / fl.P99us
		target("kea channel p99 / floor p99", p, "x", fmt.Sprintf("<= %.2fx", targetP99Ratio), p <= targetP99Ratio)
	}
	if okK && okF {
		add("kea channel sequential server CPU / floor's", kc.CPUus/fl.CPUus, "x")
	}
	for _, n := range cfg.clients {
		if n == 1 {
			continue
		}
		kc, fl := r.kea[keaKey{serverKea, n}], r.kea[keaKey{serverFloor, n}]
		add(fmt.Sprintf("kea channel %s / floor", modeName(n)), kc.OpsPerS/fl.OpsPerS, "x")
		add(fmt.Sprintf("kea channel %s p99 / floor p99", modeName(n)), kc.P99us/fl.P99us, "x")
		add(fmt.Sprintf("kea channel %s server CPU / floor's", modeName(n)), kc.CPUus/fl.CPUus, "x")
	}
	if r.keaVersion != "" {
		ref := r.keaServer()
		for _, n := range cfg.clients {
			k := r.kea[keaKey{ref, n}]
			add(fmt.Sprintf("kea channel %s / %s", modeName(n), ref), r.kea[keaKey{serverKea, n}].OpsPerS/k.OpsPerS, "x")
		}
		for _, n := range cfg.clients {
			k := r.kea[keaKey{ref, n}]
			add(fmt.Sprintf("floor %s / %s", modeName(n), ref), r.kea[keaKey{serverFloor, n}].OpsPerS/k.OpsPerS, "x")
		}
	}
	for _, res := range r.results {
		switch {
		case res.Frontend == "ipc" && res.Mode == "pipelined echo":
			target("IPC pipelined echo", res.OpsPerS, "/s", ">= 200000/s", res.OpsPerS >= 200000)
		case res.Frontend == "dgram":
			target("datagram ("+res.Note+")", res.OpsPerS, "/s", ">= 100000/s, none lost", res.OpsPerS >= 100000 && res.Lost == 0)
		}
	}
}

// print writes the table and the verdict.
func (r *report) print(out io.Writer, asJSON bool) {
	fmt.Fprintln(out, "| front end | mode | ops/s | p50 µs | p99 µs | server CPU µs/op | note |")
	fmt.Fprintln(out, "|---|---|---:|---:|---:|---:|---|")
	for _, res := range r.results {
		// Pipelined IPC and datagrams have no per-operation latency.
		p50, p99, cpu := "–", "–", "–"
		if res.P50us > 0 {
			p50, p99 = fmt.Sprintf("%.1f", res.P50us), fmt.Sprintf("%.1f", res.P99us)
		}
		if res.CPUus > 0 {
			cpu = fmt.Sprintf("%.1f", res.CPUus)
		}
		fmt.Fprintf(out, "| %s | %s | %.0f | %s | %s | %s | %s |\n", res.Frontend, res.Mode, res.OpsPerS, p50, p99, cpu, res.Note)
	}
	fmt.Fprintln(out)
	for _, v := range r.ratios {
		fmt.Fprintln(out, v)
	}
	if r.keaVersion == "" {
		fmt.Fprintln(out, "Kea not installed (apt-get install kea-dhcp4-server): no Kea rows or ratios")
	}
	if asJSON {
		enc := json.NewEncoder(out)
		for _, res := range r.results {
			enc.Encode(res)
		}
		for _, v := range r.ratios {
			enc.Encode(v)
		}
	}
}

// interleaveSlice is how long one server is measured before the next
// takes its turn, when servers are compared: alternating them in short
// slices spreads the noise of a shared machine over all of them instead
// of favouring one. A measurement has at least minRounds slices.
const (
	interleaveSlice = 50 * time.Millisecond
	minRounds       = 10
)

// measureInterleaved measures each op for about d in total, alternating
// between them in short rounds (each round starting with the next op, so
// that none always follows the same one), and returns one result per op.
// pids[i] is the process serving ops[i]: the CPU time it spends while its
// op is measured is reported per operation.
func measureInterleaved(ctx context.Context, d time.Duration, conc int, ops []func() error, pids []int) ([]result, error) {
	lat := make([][]time.Duration, len(ops))
	busy := make([]time.Duration, len(ops))
	cpu := make([]time.Duration, len(ops))
	rounds := max(minRounds, int(d/interleaveSlice))
	for round := 0; round < rounds; round++ {
		for k := range ops {
			i := (round + k) % len(ops)
			c0, err := procCPU(pids[i])
			if err != nil {
				return nil, err
			}
			l, el, err := run1(ctx, d/time.Duration(rounds), conc, ops[i], round == 0)
			if err != nil {
				return nil, err
			}
			c1, err := procCPU(pids[i])
			if err != nil {
				return nil, err
			}
			lat[i] = append(lat[i], l...)
			busy[i] += el
			cpu[i] += c1 - c0
		}
	}
	out := make([]result, len(ops))
	for i := range ops {
		out[i] = summarize(lat[i], busy[i])
		if out[i].Ops > 0 {
			out[i].CPUus = float64(cpu[i]) / 1e3 / float64(out[i].Ops)
		}
	}
	return out, nil
}

// procCPU is the CPU time every thread of process pid has run, from the
// scheduler's statistics (nanoseconds, unlike the clock ticks of
// /proc/PID/stat). The warm-up's share is counted too, a few hundred
// operations in many thousands.
func procCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("server CPU time: %w", err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread ended
			}
			return 0, fmt.Errorf("server CPU time: %w", err)
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, fmt.Errorf("server CPU time: %s: %q", t.Name(), b)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("server CPU time: %s: %w", t.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// measure runs op from conc goroutines for about d and returns the
// throughput and latency percentiles.
func measure(ctx context.Context, d time.Duration, conc int, op func() error) (result, error) {
	lat, el, err := run1(ctx, d, conc, op, true)
	if err != nil {
		return result{}, err
	}
	return summarize(lat, el), nil
}

// run1 runs op from conc goroutines for about d, after a warm-up when
// asked, and returns every latency and the elapsed time.
func run1(ctx context.Context, d time.Duration, conc int, op func() error, warm bool) ([]time.Duration, time.Duration, error) {
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
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && ctx.Err() == nil {
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
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return lat, elapsed, nil
}

func summarize(lat []time.Duration, elapsed time.Duration) result {
	slices.Sort(lat)
	r := result{Ops: len(lat), OpsPerS: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		r.P50us = float64(lat[len(lat)/2]) / 1e3
		r.P99us = float64(lat[len(lat)*99/100]) / 1e3
	}
	return r
}

// keaSuccess is in every successful Kea-channel reply.
var keaSuccess = []byte(`"result": 0`)

// keaOnce is one Kea-channel exchange: connect, send, read to EOF; the
// reply must report success.
func keaOnce(path string, req []byte) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		return err
	}
	var buf [8192]byte
	total := 0
	for {
		n, err := c.Read(buf[total:])
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if total == len(buf) {
			return fmt.Errorf("%s: reply longer than %d bytes", path, len(buf))
		}
	}
	if !bytes.Contains(buf[:total], keaSuccess) {
		return fmt.Errorf("%s: reply without %s: %q", path, keaSuccess, buf[:total])
	}
	return nil
}

// keaExchange sends req on a connection of its own and returns the whole
// reply.
func keaExchange(path string, req []byte) ([]byte, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, keaSuccess) {
		return nil, fmt.Errorf("%s: reply without %s: %q", path, keaSuccess, b)
	}
	return b, nil
}

// floorMain is the baseline server: accept, read once, write a fixed
// reply, close; a goroutine per connection, as any Go server has. No
// framing, no parsing, no command, no deadline. It returns the exit
// status.
func floorMain(path, replyFile string) int {
	reply, err := os.ReadFile(replyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
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
	out, err := exec.Command(bin, "-v").Output()
	if err != nil {
		return nil, "", fmt.Errorf("%s -v: %w", bin, err)
	}
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
	var logb lockedBuffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	if err := waitSocket(sock, 15*time.Second); err != nil {
		stopProc(cmd)
		return nil, "", fmt.Errorf("%w\nKea log:\n%s", err, logb.String())
	}
	// The control socket must answer the benchmark's command.
	if _, err := keaExchange(sock, keaCommand); err != nil {
		stopProc(cmd)
		return nil, "", fmt.Errorf("kea-dhcp4 control socket: %w\nKea log:\n%s", err, logb.String())
	}
	return cmd, version, nil
}

// lockedBuffer is a bytes.Buffer a child process may write while the
// benchmark reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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

func benchIPC(ctx context.Context, path string, d time.Duration) ([]result, error) {
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
		r, err := measure(ctx, d, conc, op)
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
	for time.Now().Before(deadline) && ctx.Err() == nil {
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

func benchConsole(ctx context.Context, path string, d time.Duration) ([]result, error) {
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
	r, err := measure(ctx, d, 1, op)
	if err != nil {
		return nil, err
	}
	r.Frontend, r.Mode = "console", "line/reply echo"
	return []result{r}, nil
}

// benchDgram sends datagrams as fast as blocking writes allow, then asks
// status-get over the Kea channel how many ran.
func benchDgram(ctx context.Context, path, keaPath string, d time.Duration) ([]result, error) {
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
	for time.Now().Before(deadline) && ctx.Err() == nil {
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
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	ran := after - before
	note := fmt.Sprintf("sent %d, ran %d, lost %d", sent, ran, int64(sent)-ran)
	return []result{{Frontend: "dgram", Mode: "blocking sends, 1 client", Ops: int(ran), OpsPerS: float64(ran) / el.Seconds(), Note: note, Lost: int64(sent) - ran}}, nil
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
