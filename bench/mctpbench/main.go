// Command mctpbench measures mctpd and prints each figure next to a
// baseline measured in the same run:
//
//   - demux loopback: mctpd with the null binding, clients sending to its
//     own EID, and the demux alone (services/mctpd/demux with its
//     loopback sender in a process of its own, no MCTP router), against
//     two floors, a bare seqpacket echo process and a relay shaped like
//     libmctp's demux daemon (pollfloor.go), with 64 B and 4 KiB
//     messages and 1 and 8 clients: streams of 32 in flight per client
//     (stream.go), with each server's CPU time per message and each
//     client's share, and ping-pong latency;
//   - serial: two mctpd (EIDs 8 and 9) on a socat pty pair, client to
//     client, at the baseline MTU and at -mtu 251 on both ends, against
//     raw bytes through another socat pair;
//   - framing only: two serial bindings in this process on a socat pty
//     pair (no router, reassembly, demux or daemons), 4 KiB of payload
//     per message split at the binding's MTU, against the same raw pair;
//   - serial cost (serialcost.go): bytes on the wire per message byte at
//     each MTU, and CPU time per KiB to frame and deframe, on amd64 and
//     on arm64 under qemu-aarch64, with the FCS by table and folded;
//   - mctpd's resident memory, idle, for the null and serial bindings.
//
// Usage:
//
//	go run ./bench/mctpbench [-rounds 3] [-duration 1s] [-quick] [-strict] [-only framing|demux|serial|serial-cpu]
//
// Measurements run in interleaved rounds so that the noise of a shared
// machine falls on the daemon and its baseline alike; read the ratios,
// not the absolute figures. Targets print PASS or FAIL; the exit status
// is 0 unless a measurement fails, or -strict is given and a target is
// missed. Message sizes are whole MCTP messages, type byte included.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
)

func main() {
	if name := os.Getenv(floorEnv); name != "" {
		os.Exit(floorMain(name))
	}
	if name := os.Getenv(demuxEnv); name != "" {
		os.Exit(demuxMain(name))
	}
	if name := os.Getenv(pollFloorEnv); name != "" {
		os.Exit(pollFloorMain(name))
	}
	if spec := os.Getenv(serialCPUEnv); spec != "" {
		os.Exit(serialCPUMain(spec))
	}
	cfg := defaultConfig()
	fs := flag.NewFlagSet("mctpbench", flag.ContinueOnError)
	fs.IntVar(&cfg.rounds, "rounds", cfg.rounds, "interleaved rounds; each measurement runs once per round")
	fs.DurationVar(&cfg.duration, "duration", cfg.duration, "time per measurement per round")
	quick := fs.Bool("quick", false, "one short round (a smoke test; the figures mean little)")
	fs.BoolVar(&cfg.strict, "strict", false, "exit with status 1 when a target is missed")
	only := fs.String("only", "", "measure only these rows: `framing` (the framing-only rows and their raw baselines; no daemons) demux (the demux loopback rows and mctpd's memory), serial (wire bytes and CPU per KiB, amd64 and arm64 under qemu-aarch64) or serial-cpu (CPU per KiB on this architecture)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the benchmark's clients to `FILE`")
	demuxProfile := fs.String("demuxprofile", "", "write a CPU profile of the demux-alone server to `FILE`")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if *quick {
		cfg = quickConfig(cfg.strict)
	}
	switch *only {
	case "":
	case "framing":
		cfg.framingOnly = true
	case "demux":
		cfg.demuxOnly = true
	case "serial", "serial-cpu":
	default:
		fmt.Fprintf(os.Stderr, "mctpbench: -only %q: want framing, demux, serial or serial-cpu\n", *only)
		os.Exit(2)
	}
	if cfg.rounds < 1 || cfg.duration <= 0 {
		fmt.Fprintln(os.Stderr, "mctpbench: -rounds must be at least 1 and -duration positive")
		os.Exit(2)
	}
	if *demuxProfile != "" {
		abs, err := filepath.Abs(*demuxProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mctpbench:", err)
			os.Exit(1)
		}
		// The demux-alone process inherits the environment.
		os.Setenv(demuxProfileEnv, abs)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mctpbench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
	}
	runner := run
	switch {
	case cfg.framingOnly:
		runner = runFraming
	case *only == "serial":
		runner = runSerialCost
	case *only == "serial-cpu":
		runner = runSerialCPU
	}
	rep, err := runner(context.Background(), cfg, os.Stderr)
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mctpbench:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout)
	if missed := rep.missed(); missed > 0 && cfg.strict {
		fmt.Fprintf(os.Stderr, "mctpbench: %d target(s) missed\n", missed)
		os.Exit(1)
	}
}

// config is one run's shape.
type config struct {
	rounds   int
	duration time.Duration
	// idle is how long the daemons sit without traffic before their
	// memory is read.
	idle time.Duration
	// stall ends a measurement that makes no progress for this long.
	stall  time.Duration
	strict bool
	// framingOnly measures the framing-only rows alone (-only framing).
	framingOnly bool
	// demuxOnly measures the demux rows alone (-only demux): no serial
	// daemons or pty pairs.
	demuxOnly bool
}

func defaultConfig() config {
	return config{rounds: 3, duration: time.Second, idle: time.Second, stall: 3 * time.Second}
}

func quickConfig(strict bool) config {
	return config{rounds: 1, duration: 60 * time.Millisecond, idle: 200 * time.Millisecond, stall: 3 * time.Second, strict: strict}
}

// Message sizes (whole MCTP messages), client counts and windows.
var (
	sizes       = []int{64, 4096}
	clientCount = []int{1, 8}
)

const (
	// demuxWindow is what each demux client keeps in flight: well
	// under the demux's per-client queue of 512 messages.
	demuxWindow = 32
	// baseType is the first message type the benchmark registers;
	// clients use baseType..baseType+7.
	baseType = 0x70
	localEID = 8
	farEID   = 9
)

// serialMTUs are the serial binding's MTUs measured: the baseline (the
// default, libmctp's wire bytes) and the largest, set on both ends.
var serialMTUs = []int{64, 251}

// serialQueueQuarter is a quarter of the serial binding's send queue, in
// frames, at mtu: the queue holds four 64 KiB messages' worth.
func serialQueueQuarter(mtu int) int { return 64<<10/mtu + 1 }

// serialWindow keeps at most a quarter of the serial binding's send
// queue in flight (1025 frames at the baseline MTU), which refuses
// (drops) packets when full rather than block the demux.
func serialWindow(size, mtu int) int {
	return max(1, min(64, serialQueueQuarter(mtu)/((size+mtu-1)/mtu)))
}

// Target thresholds.
const (
	// targetStream is the 64 B, 1 client stream through mctpd against
	// the libmctp-shaped floor; targetStreamMin the least that passes
	// (the goal is printed beside it).
	targetStream    = 1.2
	targetStreamMin = 1.0
	// targetBulk is the 4 KiB, 1 client stream through mctpd against
	// the echo floor.
	targetBulk = 0.9
	// targetShare is the least share of an equal split any of 8
	// clients may get: below it a client is starved.
	targetShare  = 0.5
	targetRSSKiB = 12 << 10
	mctpdServer  = "mctpd"
	demuxServer  = "demux"
	floorServer  = "echo"
	pollServer   = "libmctp-shaped"
)

// demuxServers are the servers of the demux loopback rows, in the order
// the report lists them.
var demuxServers = []string{mctpdServer, demuxServer, floorServer, pollServer}

type demuxKey struct {
	size, clients int
	server        string
}

type demuxResult struct {
	pipe, pong sample
	pipeRates  []float64
	// cpu is the server process's CPU time (user and system) over the
	// streams: a cost per message that noise on a shared machine moves
	// far less than it moves the rates.
	cpu time.Duration
}

// cpuPerMsg is the server's CPU time per streamed message in µs.
func (r *demuxResult) cpuPerMsg() float64 {
	if r.pipe.msgs == 0 {
		return 0
	}
	return float64(r.cpu) / 1e3 / float64(r.pipe.msgs)
}

type serialKey struct{ size, mtu int }

type serialResult struct {
	serial, raw sample
	ratios      []float64
}

type rssRow struct {
	name        string
	idle, after int // KiB
}

// report is everything one run measured.
type report struct {
	cfg       config
	goVersion string
	cpus      int
	loadStart string
	loadEnd   string
	demux     map[demuxKey]*demuxResult
	serial    map[serialKey]*serialResult
	// framing is the framing-only rows by MTU, 4 KiB messages.
	framing map[int]*serialResult
	// framingOnly marks a run of the framing rows alone (-only framing).
	framingOnly bool
	rss         []rssRow
	drops       []string
	// cost is the serial cost measures (serialcost.go); costOnly marks
	// a run of them alone (-only serial or serial-cpu).
	cost       *serialCost
	costOnly   bool
	targetRows []targetRow
}

type targetRow struct {
	name, measured string
	pass           bool
}

// env is the running setup: daemons, pty pairs and client lanes.
type env struct {
	dir   string
	procs []*proc
	null  *proc
	floor *proc
	// poll is the libmctp-shaped floor.
	poll *proc
	// demuxOnly is the demux alone, with its loopback sender.
	demuxOnly *proc
	// serial daemons, EIDs 8 and 9, and their Kea sockets, by MTU
	s8, s9     map[int]*proc
	keaNull    string
	keaS8      map[int]string
	keaS9      map[int]string
	lanes      map[string][]lane // by server: demuxWindow lanes of distinct types
	serialLane map[int]lane
	framing    map[int]*framingPair
	rawW, rawR *os.File
	conns      []*demux.Conn
}

// server returns the process of a demux loopback server.
func (e *env) server(name string) *proc {
	return map[string]*proc{mctpdServer: e.null, demuxServer: e.demuxOnly, floorServer: e.floor, pollServer: e.poll}[name]
}

func (e *env) close() {
	for _, f := range e.framing {
		f.close()
	}
	for _, c := range e.conns {
		c.Close()
	}
	if e.rawW != nil {
		e.rawW.Close()
	}
	if e.rawR != nil {
		e.rawR.Close()
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop()
	}
	os.RemoveAll(e.dir)
}

func (e *env) start(dir, name string, extraEnv []string, bin string, args ...string) (*proc, error) {
	p, err := startProc(dir, name, extraEnv, bin, args...)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// setup builds mctpd and starts every process and client.
func setup(progress io.Writer, demuxOnly bool) (*env, error) {
	dir, err := os.MkdirTemp("", "mctpbench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, lanes: map[string][]lane{},
		s8: map[int]*proc{}, s9: map[int]*proc{}, keaS8: map[int]string{}, keaS9: map[int]string{},
		serialLane: map[int]lane{}, framing: map[int]*framingPair{}}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	fmt.Fprintln(progress, "mctpbench: building mctpd")
	bin, err := buildMctpd(dir)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("mctpbench-%d", os.Getpid())
	names := map[string]string{mctpdServer: tag + "-null", demuxServer: tag + "-demux", floorServer: tag + "-floor", pollServer: tag + "-poll"}

	mctpd := func(name string, eid int, kea, demux string, binding ...string) (*proc, error) {
		state := filepath.Join(dir, "state-"+name)
		args := append([]string{"-e", fmt.Sprint(eid), "-kea", kea, "-state", state, "-demux", demux}, binding...)
		p, err := e.start(dir, name, nil, bin, args...)
		if err != nil {
			return nil, err
		}
		return p, waitFor(name+" control socket", 10*time.Second, p, exists(kea))
	}
	e.keaNull = filepath.Join(dir, "null.sock")
	if e.null, err = mctpd("mctpd-null", localEID, e.keaNull, names[mctpdServer], "null"); err != nil {
		return nil, err
	}
	if e.floor, err = e.start(dir, "floor", []string{floorEnv + "=" + names[floorServer]}, self); err != nil {
		return nil, err
	}
	if e.demuxOnly, err = e.start(dir, "demux", []string{demuxEnv + "=" + names[demuxServer]}, self); err != nil {
		return nil, err
	}
	if e.poll, err = e.start(dir, "poll-floor", []string{pollFloorEnv + "=" + names[pollServer]}, self); err != nil {
		return nil, err
	}

	// Serial: two daemons on a pty pair per MTU; the framing-only
	// bindings on a pair per MTU; raw bytes on another.
	mtus := serialMTUs
	if demuxOnly {
		mtus = nil
	}
	for _, mtu := range mtus {
		a, b, err := e.socat(fmt.Sprintf("serial-%d", mtu))
		if err != nil {
			return nil, err
		}
		e.keaS8[mtu] = filepath.Join(dir, fmt.Sprintf("s8-%d.sock", mtu))
		e.keaS9[mtu] = filepath.Join(dir, fmt.Sprintf("s9-%d.sock", mtu))
		m := fmt.Sprint(mtu)
		if e.s8[mtu], err = mctpd("mctpd-serial-8-mtu"+m, localEID, e.keaS8[mtu], tag+"-s8-"+m, "serial", a, "-mtu", m); err != nil {
			return nil, err
		}
		if e.s9[mtu], err = mctpd("mctpd-serial-9-mtu"+m, farEID, e.keaS9[mtu], tag+"-s9-"+m, "serial", b, "-mtu", m); err != nil {
			return nil, err
		}
	}
	if !demuxOnly {
		if err := e.startFramingRows(); err != nil {
			return nil, err
		}
	}

	dial := func(name string, typ byte, p *proc) (*demux.Conn, error) {
		var conn *demux.Conn
		var derr error
		err := waitFor("demux @"+name, 10*time.Second, p, func() bool {
			conn, derr = demux.Dial(name, typ)
			return derr == nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", err, derr)
		}
		e.conns = append(e.conns, conn)
		return conn, nil
	}
	for _, srv := range demuxServers {
		p := e.server(srv)
		for i := range slices.Max(clientCount) {
			conn, err := dial(names[srv], byte(baseType+i), p)
			if err != nil {
				return nil, err
			}
			e.lanes[srv] = append(e.lanes[srv], lane{tx: conn, rx: conn, dest: localEID, src: localEID, typ: byte(baseType + i)})
		}
	}
	for _, mtu := range mtus {
		m := fmt.Sprint(mtu)
		tx, err := dial(tag+"-s8-"+m, baseType, e.s8[mtu])
		if err != nil {
			return nil, err
		}
		rx, err := dial(tag+"-s9-"+m, baseType, e.s9[mtu])
		if err != nil {
			return nil, err
		}
		e.serialLane[mtu] = lane{tx: tx, rx: rx, dest: farEID, src: localEID, typ: baseType}
	}
	ok = true
	return e, nil
}

// socat starts a socat pty pair for name and returns the paths of its
// two ends.
func (e *env) socat(name string) (string, string, error) {
	a, b := filepath.Join(e.dir, name+"-A"), filepath.Join(e.dir, name+"-B")
	p, err := startSocat(e.dir, "socat-"+name, a, b)
	if err != nil {
		return "", "", err
	}
	e.procs = append(e.procs, p)
	return a, b, nil
}

// startFramingRows starts the framing-only bindings, a pty pair per MTU,
// and the raw pair every serial row is compared with.
func (e *env) startFramingRows() error {
	for _, mtu := range serialMTUs {
		a, b, err := e.socat(fmt.Sprintf("framing-%d", mtu))
		if err != nil {
			return err
		}
		if e.framing[mtu], err = startFraming(a, b, mtu); err != nil {
			return err
		}
	}
	c, d, err := e.socat("raw")
	if err != nil {
		return err
	}
	if e.rawW, err = ptyPort(c); err != nil {
		return err
	}
	e.rawR, err = ptyPort(d)
	return err
}

// warm serves a few requests of each size on the lane, retrying while
// the far side comes up (a serial port opens after the control socket),
// then discards anything left over so that no stray message reaches a
// measurement.
func warm(l lane, stall time.Duration) error {
	deadline := time.Now().Add(stall + 5*time.Second)
	for _, size := range sizes {
		payload := body(size)
		for n := 0; n < 5; {
			if time.Now().After(deadline) {
				return fmt.Errorf("lane type %#x to EID %d: no %d-byte message came through", l.typ, l.dest, size)
			}
			if err := l.tx.Send(l.dest, payload); err != nil {
				return err
			}
			l.rx.SetDeadline(time.Now().Add(300 * time.Millisecond))
			addr, typ, b, err := l.rx.Recv()
			if err != nil {
				continue
			}
			if l.check(addr, typ, b, size) == nil {
				n++
			}
		}
	}
	for {
		l.rx.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, _, err := l.rx.Recv(); err != nil {
			break
		}
	}
	l.rx.SetDeadline(time.Time{})
	return nil
}

// keaStats asks a daemon for stats-get and returns its arguments.
func keaStats(path string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := kea.Call(ctx, path, []byte(`{"command":"stats-get"}`))
	if err != nil {
		return nil, err
	}
	var rep struct {
		Result    int            `json:"result"`
		Text      string         `json:"text"`
		Arguments map[string]any `json:"arguments"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("stats-get reply %q: %w", b, err)
	}
	if rep.Result != 0 {
		return nil, fmt.Errorf("stats-get: result %d: %s", rep.Result, rep.Text)
	}
	return rep.Arguments, nil
}

// dropsIn lists every non-zero drop or error counter in a stats-get
// reply: the MCTP core's drops, the bindings' error counters and the
// demux's drops and overflows.
func dropsIn(name string, st map[string]any) []string {
	var out []string
	add := func(where string, m map[string]any, want func(string) bool) {
		for k, v := range m {
			if n, ok := v.(float64); ok && n > 0 && want(k) {
				out = append(out, fmt.Sprintf("%s %s %s=%.0f", name, where, k, n))
			}
		}
	}
	all := func(string) bool { return true }
	if m, ok := st["mctp"].(map[string]any); ok {
		if d, ok := m["drops"].(map[string]any); ok {
			add("mctp", d, all)
		}
		if bs, ok := m["bindings"].(map[string]any); ok {
			for bn, bv := range bs {
				if bm, ok := bv.(map[string]any); ok {
					add(bn, bm, func(k string) bool {
						return k != "rx_frames" && k != "rx_bytes" && k != "tx_frames" && k != "tx_bytes"
					})
				}
			}
		}
	}
	if d, ok := st["demux"].(map[string]any); ok {
		add("demux", d, func(k string) bool { return strings.HasPrefix(k, "drop-") || k == "overflows" })
	}
	slices.Sort(out)
	return out
}

// run sets everything up, measures and returns the report.
func run(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	rep := &report{
		cfg: cfg, goVersion: runtime.Version(), cpus: runtime.NumCPU(), loadStart: loadAvg(),
		demux: map[demuxKey]*demuxResult{}, serial: map[serialKey]*serialResult{}, framing: map[int]*serialResult{},
	}
	e, err := setup(progress, cfg.demuxOnly)
	if err != nil {
		return nil, err
	}
	defer e.close()
	mtus := serialMTUs
	if cfg.demuxOnly {
		mtus = nil
	}

	// A few requests on every daemon, then idle: the resting memory.
	var warmLanes []lane
	for _, srv := range demuxServers {
		warmLanes = append(warmLanes, e.lanes[srv][0])
	}
	keas := []struct{ name, path string }{{"null", e.keaNull}}
	daemons := []struct {
		name string
		p    *proc
	}{{"null (EID 8)", e.null}}
	for _, mtu := range mtus {
		warmLanes = append(warmLanes, e.serialLane[mtu])
		keas = append(keas, struct{ name, path string }{fmt.Sprintf("serial-8-mtu%d", mtu), e.keaS8[mtu]},
			struct{ name, path string }{fmt.Sprintf("serial-9-mtu%d", mtu), e.keaS9[mtu]})
		daemons = append(daemons, struct {
			name string
			p    *proc
		}{fmt.Sprintf("serial EID 8, MTU %d", mtu), e.s8[mtu]}, struct {
			name string
			p    *proc
		}{fmt.Sprintf("serial EID 9, MTU %d", mtu), e.s9[mtu]})
	}
	for _, l := range warmLanes {
		if err := warm(l, cfg.stall); err != nil {
			return nil, err
		}
	}
	for _, mtu := range mtus {
		if err := e.framing[mtu].warm(cfg.stall); err != nil {
			return nil, err
		}
	}
	for _, k := range keas {
		if _, err := keaStats(k.path); err != nil {
			return nil, err
		}
	}
	readRSS := func(after bool) error {
		time.Sleep(cfg.idle)
		for i, d := range daemons {
			kib, err := d.p.rssKiB()
			if err != nil {
				return err
			}
			if !after {
				rep.rss = append(rep.rss, rssRow{name: d.name, idle: kib})
			} else {
				rep.rss[i].after = kib
			}
		}
		return nil
	}
	if err := readRSS(false); err != nil {
		return nil, err
	}

	fmt.Fprintf(progress, "mctpbench: %s, %d CPUs, %d rounds of %v per measurement, load %s\n",
		rep.goVersion, rep.cpus, cfg.rounds, cfg.duration, rep.loadStart)
	for round := range cfg.rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Rotate which server goes first, so none always runs right
		// after another's load.
		k := round % len(demuxServers)
		servers := append(slices.Clone(demuxServers[k:]), demuxServers[:k]...)
		for _, size := range sizes {
			for _, n := range clientCount {
				for _, srv := range servers {
					lanes := e.lanes[srv][:n]
					p := e.server(srv)
					cpu0, err := p.cpuTime()
					if err != nil {
						return nil, err
					}
					pipe, err := stream(lanes, size, demuxWindow, cfg.duration, cfg.stall)
					if err != nil {
						return nil, fmt.Errorf("demux %s %d B %d clients pipelined: %w", srv, size, n, err)
					}
					if pipe.lost > 0 {
						return nil, fmt.Errorf("demux %s %d B %d clients: %d messages lost", srv, size, n, pipe.lost)
					}
					cpu1, err := p.cpuTime()
					if err != nil {
						return nil, err
					}
					pong, err := pingPong(lanes, size, cfg.duration, cfg.stall)
					if err != nil {
						return nil, fmt.Errorf("demux %s %d B %d clients ping-pong: %w", srv, size, n, err)
					}
					k := demuxKey{size, n, srv}
					r := rep.demux[k]
					if r == nil {
						r = &demuxResult{}
						rep.demux[k] = r
					}
					r.pipe.add(pipe)
					r.pong.add(pong)
					r.cpu += cpu1 - cpu0
					r.pipeRates = append(r.pipeRates, pipe.rate())
					fmt.Fprintf(progress, "  round %d demux %-5s %4d B %d clients: %8.0f msgs/s pipelined, %7.0f ping-pong/s\n",
						round+1, srv, size, n, pipe.rate(), pong.rate())
				}
			}
		}
		for _, mtu := range mtus {
			for _, size := range sizes {
				l := e.serialLane[mtu]
				s, err := pipelined([]lane{l}, size, serialWindow(size, mtu), cfg.duration, cfg.stall)
				if err != nil {
					return nil, fmt.Errorf("serial %d B MTU %d: %w", size, mtu, err)
				}
				if s.lost > 0 {
					// A lost message may still arrive and be counted in
					// the next measurement: discard what is in flight.
					warm(l, cfg.stall)
				}
				if s.bytes == 0 {
					return nil, fmt.Errorf("serial %d B MTU %d: no message came through", size, mtu)
				}
				raw, err := rawPty(e.rawW, e.rawR, s.bytes, size, cfg.stall)
				if err != nil {
					return nil, err
				}
				k := serialKey{size, mtu}
				r := rep.serial[k]
				if r == nil {
					r = &serialResult{}
					rep.serial[k] = r
				}
				r.add(s, raw)
				fmt.Fprintf(progress, "  round %d serial %4d B MTU %3d: %7.0f msgs/s, %6.2f MB/s; raw %6.2f MB/s; lost %d\n",
					round+1, size, mtu, s.rate(), s.mbps(), raw.mbps(), s.lost)
			}
		}
		if cfg.demuxOnly {
			continue
		}
		if err := e.framingRound(rep, cfg, round, progress); err != nil {
			return nil, err
		}
	}
	if !cfg.demuxOnly {
		if rep.cost, err = measureSerialCost(ctx, cfg, progress); err != nil {
			return nil, err
		}
	}
	if err := readRSS(true); err != nil {
		return nil, err
	}
	for _, k := range keas {
		st, err := keaStats(k.path)
		if err != nil {
			return nil, err
		}
		rep.drops = append(rep.drops, dropsIn(k.name, st)...)
	}
	for _, p := range e.procs {
		if p.exited() {
			return nil, fmt.Errorf("%s exited during the run\n%s", p.name, p.logTail())
		}
	}
	rep.loadEnd = loadAvg()
	rep.judge()
	return rep, nil
}

// framingRound measures each framing-only row once, each right before
// its raw baseline.
func (e *env) framingRound(rep *report, cfg config, round int, progress io.Writer) error {
	for _, mtu := range serialMTUs {
		f, err := e.framing[mtu].measure(cfg.duration, cfg.stall)
		if err != nil {
			return err
		}
		raw, err := rawPty(e.rawW, e.rawR, f.bytes, framingMessage, cfg.stall)
		if err != nil {
			return err
		}
		r := rep.framing[mtu]
		if r == nil {
			r = &serialResult{}
			rep.framing[mtu] = r
		}
		r.add(f, raw)
		fmt.Fprintf(progress, "  round %d framing only 4 KiB MTU %3d: %6.2f MB/s; raw %6.2f MB/s\n",
			round+1, mtu, f.mbps(), raw.mbps())
	}
	return nil
}

// runFraming measures only the framing-only rows and their raw
// baselines (-only framing): no daemons are built or started, so a run
// takes seconds, for trying changes to the serial binding.
func runFraming(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	rep := &report{cfg: cfg, goVersion: runtime.Version(), cpus: runtime.NumCPU(), loadStart: loadAvg(),
		framing: map[int]*serialResult{}, framingOnly: true}
	dir, err := os.MkdirTemp("", "mctpbench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, framing: map[int]*framingPair{}}
	defer e.close()
	if err := e.startFramingRows(); err != nil {
		return nil, err
	}
	for _, mtu := range serialMTUs {
		if err := e.framing[mtu].warm(cfg.stall); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "mctpbench: framing rows only, %s, %d CPUs, %d rounds of %v per measurement, load %s\n",
		rep.goVersion, rep.cpus, cfg.rounds, cfg.duration, rep.loadStart)
	for round := range cfg.rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := e.framingRound(rep, cfg, round, progress); err != nil {
			return nil, err
		}
	}
	for _, p := range e.procs {
		if p.exited() {
			return nil, fmt.Errorf("%s exited during the run\n%s", p.name, p.logTail())
		}
	}
	rep.loadEnd = loadAvg()
	return rep, nil
}

// judge fills in the targets.
func (r *report) judge() {
	r.targetRows = nil
	stream := r.pipeRatio(64, 1, mctpdServer, pollServer)
	r.targetRows = append(r.targetRows, targetRow{
		name: fmt.Sprintf("mctpd 64 B stream, window %d, 1 client / libmctp-shaped floor >= %.1fx (goal %.1fx)",
			demuxWindow, targetStreamMin, targetStream),
		measured: fmt.Sprintf("%.2fx", stream),
		pass:     stream >= targetStreamMin,
	})
	bulk := r.pipeRatio(4096, 1, mctpdServer, floorServer)
	r.targetRows = append(r.targetRows, targetRow{
		name:     fmt.Sprintf("mctpd 4 KiB stream, window %d, 1 client / echo floor >= %.1fx", demuxWindow, targetBulk),
		measured: fmt.Sprintf("%.2fx", bulk),
		pass:     bulk >= targetBulk,
	})
	for _, srv := range []string{mctpdServer, demuxServer} {
		for _, size := range sizes {
			lo, hi := r.demux[demuxKey{size, slices.Max(clientCount), srv}].pipe.shares()
			r.targetRows = append(r.targetRows, targetRow{
				name: fmt.Sprintf("%s %s stream, %d clients: no client under %.1f of an equal share",
					srv, sizeName(size), slices.Max(clientCount), targetShare),
				measured: fmt.Sprintf("min %.2f, max %.2f", lo, hi),
				pass:     lo >= targetShare,
			})
		}
	}
	if !r.cfg.demuxOnly {
		r.targetRows = append(r.targetRows, r.wireTargetRow())
	}
	worst := 0
	for _, row := range r.rss {
		worst = max(worst, row.idle)
	}
	r.targetRows = append(r.targetRows, targetRow{
		name:     fmt.Sprintf("idle RSS <= %d MiB (null and serial)", targetRSSKiB>>10),
		measured: fmt.Sprintf("%.1f MiB (largest)", mib(worst)),
		pass:     worst <= targetRSSKiB,
	})
}

// pipeRatio is the pipelined rate of server a over server b.
func (r *report) pipeRatio(size, clients int, a, b string) float64 {
	x, y := r.demux[demuxKey{size, clients, a}], r.demux[demuxKey{size, clients, b}]
	if x == nil || y == nil || y.pipe.rate() == 0 {
		return 0
	}
	return x.pipe.rate() / y.pipe.rate()
}

// add merges one round: the measurement and its raw baseline.
func (s *serialResult) add(m, raw sample) {
	s.serial.add(m)
	s.raw.add(raw)
	s.ratios = append(s.ratios, m.mbps()/raw.mbps())
}

// overhead is 1 - serial/raw over all rounds.
func (s *serialResult) overhead() float64 {
	if s.raw.mbps() == 0 {
		return 1
	}
	return 1 - s.serial.mbps()/s.raw.mbps()
}

func (r *report) missed() int {
	n := 0
	for _, t := range r.targetRows {
		if !t.pass {
			n++
		}
	}
	return n
}

func mib(kib int) float64 { return float64(kib) / 1024 }

func sizeName(size int) string {
	if size >= 1024 && size%1024 == 0 {
		return fmt.Sprintf("%d KiB", size/1024)
	}
	return fmt.Sprintf("%d B", size)
}

// span prints the smallest and largest per-round figure.
func span(v []float64, f func(float64) string) string {
	if len(v) < 2 {
		return "–"
	}
	return f(slices.Min(v)) + "–" + f(slices.Max(v))
}

func kilo(v float64) string { return fmt.Sprintf("%.0fk", v/1000) }

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// print writes the tables as markdown.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "mctpbench: %s, %d CPUs, %d round(s) of %v per measurement; load average %s at start, %s at end\n\n",
		r.goVersion, r.cpus, r.cfg.rounds, r.cfg.duration, r.loadStart, r.loadEnd)
	if r.framingOnly {
		r.printFraming(w)
		return
	}
	if r.costOnly {
		r.printSerialCost(w)
		r.printTargets(w)
		return
	}

	r.printDemux(w)
	if r.cfg.demuxOnly {
		r.printRSS(w)
		r.printTargets(w)
		return
	}

	fmt.Fprintf(w, "\nSerial (DSP0253) over socat pty pairs against raw bytes over another pair (same bytes, message-sized writes, 4 KiB reads)\n")
	fmt.Fprintf(w, "end to end: demux client -> mctpd EID %d -> pty -> mctpd EID %d -> demux client, -mtu on both daemons;\n", localEID, farEID)
	fmt.Fprintln(w, "framing only: serial.Binding to serial.Binding in one process, 4 KiB of payload per message in packets of MTU bytes (no router, reassembly, demux or daemons)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| row | message | MTU | window | msgs/s | payload MB/s | raw MB/s | serial/raw | per round | overhead | lost |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
	ratios := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for _, mtu := range serialMTUs {
		for _, size := range sizes {
			s := r.serial[serialKey{size, mtu}]
			fmt.Fprintf(w, "| end to end | %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %s | %.1f %% | %d |\n",
				sizeName(size), mtu, serialWindow(size, mtu), s.serial.rate(), s.serial.mbps(), s.raw.mbps(),
				1-s.overhead(), span(s.ratios, ratios), 100*s.overhead(), s.serial.lost)
		}
	}
	r.printFramingRows(w)
	r.printSerialCost(w)

	r.printRSS(w)
	r.printTargets(w)
}

// printRSS writes mctpd's memory and the drop counters.
func (r *report) printRSS(w io.Writer) {
	fmt.Fprintf(w, "\nmctpd resident memory (VmRSS), after %v idle\n\n", r.cfg.idle)
	fmt.Fprintln(w, "| mctpd | after a few requests | after the benchmark |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, row := range r.rss {
		fmt.Fprintf(w, "| %s | %.1f MiB | %.1f MiB |\n", row.name, mib(row.idle), mib(row.after))
	}
	if len(r.drops) == 0 {
		fmt.Fprintln(w, "\nDrops and errors (stats-get): none")
	} else {
		fmt.Fprintf(w, "\nDrops and errors (stats-get): %s\n", strings.Join(r.drops, ", "))
	}

}

// printDemux writes the demux loopback rows, their ratios to both
// floors, and the headline ratios each on a line of its own.
func (r *report) printDemux(w io.Writer) {
	fmt.Fprintf(w, "Demux loopback, window %d per client: mctpd (null binding, EID %d) and the demux alone (loopback sender, no router)\n", demuxWindow, localEID)
	fmt.Fprintln(w, "against two floors: echo (a bare Go seqpacket echo, a goroutine per client) and libmctp-shaped (one thread, poll, read one")
	fmt.Fprintln(w, "datagram, write it to each client of its type; raw system calls)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| message | clients | server | pipelined msgs/s | MB/s | per round | client share min–max | server CPU µs/msg | ping-pong/s | p50 µs | p99 µs |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---|---|---:|---:|---:|---:|")
	for _, size := range sizes {
		for _, n := range clientCount {
			for _, srv := range demuxServers {
				d := r.demux[demuxKey{size, n, srv}]
				share := "–"
				if n > 1 {
					lo, hi := d.pipe.shares()
					share = fmt.Sprintf("%.2f–%.2f", lo, hi)
				}
				fmt.Fprintf(w, "| %s | %d | %s | %.0f | %.1f | %s | %s | %.2f | %.0f | %.1f | %.1f |\n",
					sizeName(size), n, srv, d.pipe.rate(), d.pipe.mbps(), span(d.pipeRates, kilo), share,
					d.cpuPerMsg(), d.pong.rate(), d.pong.percentile(50), d.pong.percentile(99))
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| message | clients | server | pipelined / echo | pipelined / libmctp-shaped | CPU per msg / libmctp-shaped | ping-pong / echo | ping-pong / libmctp-shaped | p99 / libmctp-shaped |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|")
	for _, size := range sizes {
		for _, n := range clientCount {
			e, l := r.demux[demuxKey{size, n, floorServer}], r.demux[demuxKey{size, n, pollServer}]
			for _, srv := range []string{mctpdServer, demuxServer} {
				m := r.demux[demuxKey{size, n, srv}]
				fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", sizeName(size), n, srv,
					ratio(m.pipe.rate(), e.pipe.rate()), ratio(m.pipe.rate(), l.pipe.rate()), ratio(m.cpuPerMsg(), l.cpuPerMsg()),
					ratio(m.pong.rate(), e.pong.rate()), ratio(m.pong.rate(), l.pong.rate()),
					ratio(m.pong.percentile(99), l.pong.percentile(99)))
			}
		}
	}
	fmt.Fprintln(w)
	for _, srv := range []string{mctpdServer, demuxServer} {
		fmt.Fprintf(w, "%s 64 B stream / libmctp-shaped floor: %.2fx\n", srv, r.pipeRatio(64, 1, srv, pollServer))
	}
	for _, srv := range []string{mctpdServer, demuxServer} {
		fmt.Fprintf(w, "%s 4 KiB stream / echo floor: %.2fx\n", srv, r.pipeRatio(4096, 1, srv, floorServer))
	}
}

// printFraming writes the framing-only rows alone, with their header.
func (r *report) printFraming(w io.Writer) {
	fmt.Fprintln(w, "Framing only: serial.Binding to serial.Binding in one process over a socat pty pair, 4 KiB of payload per message in packets of MTU bytes,")
	fmt.Fprintln(w, "against raw bytes over another pair (same payload bytes, message-sized writes, 4 KiB reads)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| row | message | MTU | window | msgs/s | payload MB/s | raw MB/s | serial/raw | per round | overhead | lost |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
	r.printFramingRows(w)
}

func (r *report) printFramingRows(w io.Writer) {
	ratios := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for _, mtu := range serialMTUs {
		f := r.framing[mtu]
		fmt.Fprintf(w, "| framing only | %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %s | %.1f %% | 0 |\n",
			sizeName(framingMessage), mtu, framingWindow(mtu), f.serial.rate(), f.serial.mbps(), f.raw.mbps(),
			1-f.overhead(), span(f.ratios, ratios), 100*f.overhead())
	}
}

func (r *report) printTargets(w io.Writer) {
	fmt.Fprintln(w, "\n| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, t := range r.targetRows {
		res := "PASS"
		if !t.pass {
			res = "FAIL"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.name, t.measured, res)
	}
}
