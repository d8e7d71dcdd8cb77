package main

// The serial binding's costs as a real UART sees them. A pty pair has
// no line rate, so a serial row against raw bytes over a pty measures
// CPU and scheduling, not the line. These measures replace it:
//
//   - wire bytes per message byte at each MTU: real messages fragmented
//     by the MCTP core, sent through serial.Binding over a pty, and the
//     bytes counted as they arrive at the far end (and checked against
//     the binding's tx_bytes), for random payloads and for a worst case
//     made only of bytes that need escaping;
//   - CPU time per KiB of payload to frame and deframe 4 KiB messages
//     split at each MTU, in process with no pty, by getrusage; on amd64
//     and, through qemu-aarch64, on arm64 (the same benchmark built for
//     arm64, run as a child that reports JSON);
//   - the FCS alone, by table and folded (PCLMULQDQ, PMULL), per KiB.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
	"github.com/tickbox-fw/tickbox/services/mctpd/serial"
)

// costMTUs are the MTUs the wire and CPU tables cover: the baseline,
// one between and the largest DSP0253 allows.
var costMTUs = []int{64, 128, serial.MaxMTU}

// Payload kinds of the wire table.
const (
	payloadRandom = "random"
	payloadWorst  = "all 7E/7D"
)

var costPayloads = []string{payloadRandom, payloadWorst}

// wireTargetMTU and wireTarget: the serial target, restated for a line
// with a rate: at most 10 % more bytes on the wire than the 4 KiB
// message, at the largest MTU, for random payloads.
const (
	wireTargetMTU = serial.MaxMTU
	wireTarget    = 0.10
)

// serialCPUEnv makes the benchmark's binary the CPU child: it measures
// the CPU rows on its own architecture and prints them as JSON. Its
// value is "ROUNDS/DURATION".
const serialCPUEnv = "MCTPBENCH_SERIAL_CPU"

// costMessage returns a whole MCTP message of size bytes of the payload
// kind: random bytes after type 0x01 (2 in 256 bytes need escaping on
// average), or every byte a flag or an escape, each of which goes on the
// wire as two.
func costMessage(size int, kind string) []byte {
	msg := make([]byte, size)
	switch kind {
	case payloadWorst:
		for i := range msg {
			msg[i] = []byte{0x7e, 0x7d}[i%2]
		}
	default:
		rng := rand.New(rand.NewPCG(uint64(size), 253))
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		msg[0] = 0x01
	}
	return msg
}

// costPackets fragments msg at mtu as the router does (request, tag 0,
// EID 8 to 9).
func costPackets(msg []byte, mtu int) [][]byte {
	return mctp.Fragment(farEID, localEID, true, 0, msg, mtu)
}

// wireRow is one message's bytes on the wire.
type wireRow struct {
	size, mtu int
	payload   string
	packets   int
	wire      int64 // bytes on the wire for one message
}

func (w wireRow) perByte() float64 { return float64(w.wire) / float64(w.size) }

// cpuRow is one CPU figure: total CPU time over the payload handled,
// and the per-round figures.
type cpuRow struct {
	What   string    `json:"what"` // "frame+deframe" or "fcs"
	Path   string    `json:"path"` // the FCS path: "table", "PCLMULQDQ", "PMULL"
	MTU    int       `json:"mtu"`
	Bytes  int64     `json:"bytes"`  // payload bytes handled
	CPUNs  int64     `json:"cpu_ns"` // process CPU time, user + system
	Rounds []float64 `json:"rounds"` // CPU-µs per KiB, each round
}

func (c cpuRow) usPerKiB() float64 {
	if c.Bytes == 0 {
		return 0
	}
	return float64(c.CPUNs) / 1e3 / (float64(c.Bytes) / 1024)
}

// cpuReport is one architecture's CPU rows; the child prints it as
// JSON.
type cpuReport struct {
	Arch      string   `json:"arch"`
	Go        string   `json:"go"`
	FCSPath   string   `json:"fcs_path"`
	UnderQemu bool     `json:"under_qemu"`
	Rows      []cpuRow `json:"rows"`
}

// serialCost is what the serial cost measures found.
type serialCost struct {
	wire []wireRow
	cpu  []cpuReport
	// arm64Missing says why arm64 was not measured, if it was not.
	arm64Missing string
}

// measureWire sends each message through a serial.Binding over a socat
// pty pair per MTU and counts what arrives at the far end, raw.
func measureWire(ctx context.Context, dir string, stall time.Duration) ([]wireRow, error) {
	var rows []wireRow
	for _, mtu := range costMTUs {
		r, err := measureWireMTU(ctx, dir, mtu, stall)
		if err != nil {
			return nil, fmt.Errorf("wire bytes at MTU %d: %w", mtu, err)
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func measureWireMTU(ctx context.Context, dir string, mtu int, stall time.Duration) ([]wireRow, error) {
	name := fmt.Sprintf("wire-%d", mtu)
	a, b := filepath.Join(dir, name+"-A"), filepath.Join(dir, name+"-B")
	sp, err := startSocat(dir, "socat-"+name, a, b)
	if err != nil {
		return nil, err
	}
	defer sp.stop()
	tx, err := serial.NewMTU(a, 0, mtu, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	rx, err := ptyPort(b)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	txDone := make(chan struct{})
	go func() {
		defer close(txDone)
		tx.Run(ctx, func([]byte) {})
	}()
	var read atomic.Int64
	pkts := make(chan []byte, 1024)
	rxDone := make(chan error, 1)
	go func() {
		d := serial.NewDeframer(serial.MaxMTU)
		buf := make([]byte, 4096)
		for {
			n, err := rx.Read(buf)
			read.Add(int64(n))
			d.Feed(buf[:n], func(p []byte) { pkts <- p })
			if err != nil {
				rxDone <- err
				return
			}
		}
	}()
	defer func() {
		cancel()
		rx.Close()
		<-rxDone
		<-txDone
	}()

	var rows []wireRow
	for _, size := range sizes {
		for _, kind := range costPayloads {
			msg := costMessage(size, kind)
			want := costPackets(msg, mtu)
			// Twice: the count must be the same each time.
			var wire [2]int64
			for i := range wire {
				before, txBefore := read.Load(), tx.Stats()["tx_bytes"]
				if err := sendAll(ctx, tx, want, stall); err != nil {
					return nil, err
				}
				for j, w := range want {
					select {
					case p := <-pkts:
						if !bytes.Equal(p, w) {
							return nil, fmt.Errorf("%d B %s: packet %d arrived as % x, want % x", size, kind, j, p, w)
						}
					case <-time.After(stall):
						return nil, fmt.Errorf("%d B %s: %d of %d packets arrived", size, kind, j, len(want))
					}
				}
				wire[i] = read.Load() - before
				// The binding counts a write after it returns: wait for
				// its tx_bytes to catch up with what arrived.
				deadline := time.Now().Add(stall)
				for tx.Stats()["tx_bytes"]-txBefore != uint64(wire[i]) {
					if time.Now().After(deadline) {
						return nil, fmt.Errorf("%d B %s: %d bytes arrived, the binding wrote %d", size, kind, wire[i], tx.Stats()["tx_bytes"]-txBefore)
					}
					time.Sleep(time.Millisecond)
				}
			}
			if wire[0] != wire[1] {
				return nil, fmt.Errorf("%d B %s: %d then %d bytes on the wire for the same message", size, kind, wire[0], wire[1])
			}
			rows = append(rows, wireRow{size: size, mtu: mtu, payload: kind, packets: len(want), wire: wire[0]})
		}
	}
	if s := tx.Stats(); s["tx_errors"]+s["tx_queue_full"] != 0 {
		return nil, fmt.Errorf("binding errors: %v", s)
	}
	return rows, nil
}

// sendAll queues a message's packets, retrying while the port opens.
func sendAll(ctx context.Context, tx *serial.Binding, pkts [][]byte, stall time.Duration) error {
	deadline := time.Now().Add(stall + 5*time.Second)
	for {
		err := tx.SendBatch(pkts)
		if err == nil {
			return nil
		}
		if !errors.Is(err, serial.ErrLinkDown) && !errors.Is(err, serial.ErrQueueFull) {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("send: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processCPU is the process's user plus system time.
func processCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// cpuLoop runs step (which handles bytesPerStep payload bytes) for about
// d and returns the payload handled and the process CPU time it took.
func cpuLoop(d time.Duration, bytesPerStep int, step func() error) (int64, time.Duration, error) {
	start, err := processCPU()
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for t0 := time.Now(); time.Since(t0) < d; {
		for range 16 {
			if err := step(); err != nil {
				return 0, 0, err
			}
			n += int64(bytesPerStep)
		}
	}
	end, err := processCPU()
	if err != nil {
		return 0, 0, err
	}
	return n, end - start, nil
}

// measureCPU measures this architecture's CPU rows: framing plus
// deframing of a 4 KiB random message at each MTU (AppendFrame into a
// reused buffer, as SendBatch does, then Deframer.Feed, every packet
// checked by length and count), and the FCS alone over packets of each
// MTU, by table and by the path FCS takes here.
func measureCPU(rounds int, d time.Duration, underQemu bool) (cpuReport, error) {
	rep := cpuReport{Arch: runtime.GOARCH, Go: runtime.Version(), FCSPath: serial.FCSPath(), UnderQemu: underQemu}
	msg := costMessage(framingMessage, payloadRandom)
	type job struct {
		row  cpuRow
		size int
		step func() error
	}
	var jobs []*job
	for _, mtu := range costMTUs {
		pkts := costPackets(msg, mtu)
		dec := serial.NewDeframer(mtu)
		var wire []byte
		var got int
		var bad error
		emit := func(p []byte) {
			if want := pkts[got%len(pkts)]; len(p) != len(want) && bad == nil {
				bad = fmt.Errorf("MTU %d: packet of %d bytes, want %d", mtu, len(p), len(want))
			}
			got++
		}
		jobs = append(jobs, &job{row: cpuRow{What: "frame+deframe", Path: rep.FCSPath, MTU: mtu}, size: len(msg),
			step: func() error {
				wire = wire[:0]
				for _, p := range pkts {
					wire = serial.AppendFrame(wire, p)
				}
				got = 0
				dec.Feed(wire, emit)
				if got != len(pkts) {
					return fmt.Errorf("MTU %d: %d packets deframed, want %d", mtu, got, len(pkts))
				}
				return bad
			}})
	}
	for _, mtu := range costMTUs {
		pkt := costPackets(msg, mtu)[0] // a full packet: MTU+4 bytes
		paths := []struct {
			name string
			f    func([]byte) uint16
		}{{"table", serial.FCSByTable}}
		if rep.FCSPath != "table" {
			paths = append(paths, struct {
				name string
				f    func([]byte) uint16
			}{rep.FCSPath, serial.FCS})
		}
		want := serial.FCSByTable(pkt)
		for _, p := range paths {
			f := p.f
			jobs = append(jobs, &job{row: cpuRow{What: "fcs", Path: p.name, MTU: mtu}, size: len(pkt),
				step: func() error {
					if got := f(pkt); got != want {
						return fmt.Errorf("FCS of %d bytes: %#04x, table %#04x", len(pkt), got, want)
					}
					return nil
				}})
		}
	}
	for range rounds {
		for _, j := range jobs {
			n, cpu, err := cpuLoop(d, j.size, j.step)
			if err != nil {
				return rep, err
			}
			j.row.Bytes += n
			j.row.CPUNs += cpu.Nanoseconds()
			j.row.Rounds = append(j.row.Rounds, float64(cpu.Nanoseconds())/1e3/(float64(n)/1024))
		}
	}
	for _, j := range jobs {
		rep.Rows = append(rep.Rows, j.row)
	}
	return rep, nil
}

// serialCPUMain is the CPU child (serialCPUEnv set): it prints its
// architecture's cpuReport as JSON on stdout.
func serialCPUMain(spec string) int {
	r, d, ok := strings.Cut(spec, "/")
	rounds, err1 := strconv.Atoi(r)
	dur, err2 := time.ParseDuration(d)
	if !ok || err1 != nil || err2 != nil || rounds < 1 || dur <= 0 {
		fmt.Fprintf(os.Stderr, "mctpbench: %s=%q: want ROUNDS/DURATION\n", serialCPUEnv, spec)
		return 2
	}
	rep, err := measureCPU(rounds, dur, os.Getenv(serialCPUEnv+"_QEMU") != "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mctpbench:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "mctpbench:", err)
		return 1
	}
	return 0
}

// measureArm64 builds this benchmark for arm64 and runs its CPU rows
// under qemu-aarch64 (user mode, -cpu max: it has PMULL). It returns
// an empty report and why when that cannot be done here.
func measureArm64(ctx context.Context, dir string, rounds int, d time.Duration) (cpuReport, string, error) {
	if runtime.GOARCH != "amd64" {
		return cpuReport{}, fmt.Sprintf("the host is %s, not amd64", runtime.GOARCH), nil
	}
	qemu, err := exec.LookPath("qemu-aarch64")
	if err != nil {
		return cpuReport{}, "qemu-aarch64 not installed (apt-get install qemu-user)", nil
	}
	bin := filepath.Join(dir, "mctpbench-arm64")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tickbox-fw/tickbox/bench/mctpbench")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		return cpuReport{}, "", fmt.Errorf("go build mctpbench for arm64: %w\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, qemu, "-cpu", "max", bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d/%v", serialCPUEnv, rounds, d), serialCPUEnv+"_QEMU=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return cpuReport{}, "", fmt.Errorf("mctpbench arm64 under qemu-aarch64: %w\n%s", err, stderr.String())
	}
	var rep cpuReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return cpuReport{}, "", fmt.Errorf("arm64 CPU report %q: %w", out, err)
	}
	if rep.Arch != "arm64" || len(rep.Rows) == 0 {
		return cpuReport{}, "", fmt.Errorf("arm64 CPU report from a %q run with %d rows", rep.Arch, len(rep.Rows))
	}
	return rep, "", nil
}

// measureSerialCost takes every serial cost measure: the wire table and
// the CPU rows, here and (from amd64, with qemu-aarch64) on arm64.
func measureSerialCost(ctx context.Context, cfg config, progress io.Writer) (*serialCost, error) {
	dir, err := os.MkdirTemp("", "mctpbench-cost")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c := &serialCost{}
	fmt.Fprintln(progress, "mctpbench: serial wire bytes per MTU")
	if c.wire, err = measureWire(ctx, dir, cfg.stall); err != nil {
		return nil, err
	}
	d := costDuration(cfg)
	fmt.Fprintf(progress, "mctpbench: serial CPU on %s, %d rounds of %v per row\n", runtime.GOARCH, cfg.rounds, d)
	native, err := measureCPU(cfg.rounds, d, false)
	if err != nil {
		return nil, err
	}
	c.cpu = append(c.cpu, native)
	fmt.Fprintln(progress, "mctpbench: serial CPU on arm64 under qemu-aarch64")
	arm, why, err := measureArm64(ctx, dir, cfg.rounds, d)
	if err != nil {
		return nil, err
	}
	if why != "" {
		c.arm64Missing = why
	} else {
		c.cpu = append(c.cpu, arm)
	}
	return c, nil
}

// costDuration is each CPU row's time per round: a third of a
// measurement's, since there are many rows and CPU time needs no long
// window to settle.
func costDuration(cfg config) time.Duration { return max(cfg.duration/3, 20*time.Millisecond) }

// runSerialCost is -only serial: the serial cost measures alone, no
// daemons and no pty rows but the wire table's.
func runSerialCost(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	rep := &report{cfg: cfg, goVersion: runtime.Version(), cpus: runtime.NumCPU(), loadStart: loadAvg()}
	c, err := measureSerialCost(ctx, cfg, progress)
	if err != nil {
		return nil, err
	}
	rep.cost, rep.costOnly = c, true
	rep.loadEnd = loadAvg()
	rep.targetRows = []targetRow{rep.wireTargetRow()}
	return rep, nil
}

// runSerialCPU is -only serial-cpu: this architecture's CPU rows alone
// (run it under qemu-aarch64 by hand, or natively on an arm64 board).
func runSerialCPU(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	rep := &report{cfg: cfg, goVersion: runtime.Version(), cpus: runtime.NumCPU(), loadStart: loadAvg()}
	cpu, err := measureCPU(cfg.rounds, costDuration(cfg), false)
	if err != nil {
		return nil, err
	}
	rep.cost = &serialCost{cpu: []cpuReport{cpu}, arm64Missing: "-only serial-cpu measures this architecture only"}
	rep.costOnly = true
	rep.loadEnd = loadAvg()
	return rep, nil
}

// wireTargetRow judges the serial target on the wire table.
func (r *report) wireTargetRow() targetRow {
	name := fmt.Sprintf("serial wire overhead, 4 KiB message, random payload, <= %.0f %% at -mtu %d (bytes on the line per message byte, through serial.Binding)",
		100*wireTarget, wireTargetMTU)
	var at, base *wireRow
	for i, w := range r.cost.wire {
		if w.size == 4096 && w.payload == payloadRandom {
			switch w.mtu {
			case wireTargetMTU:
				at = &r.cost.wire[i]
			case costMTUs[0]:
				base = &r.cost.wire[i]
			}
		}
	}
	if at == nil || base == nil {
		return targetRow{name: name, measured: "not measured"}
	}
	oh := at.perByte() - 1
	return targetRow{name: name,
		measured: fmt.Sprintf("%.1f %% (%d bytes for 4096); at the baseline MTU %d: %.1f %%, which no DSP0253 peer at the baseline can beat",
			100*oh, at.wire, costMTUs[0], 100*(base.perByte()-1)),
		pass: oh <= wireTarget}
}

// printSerialCost writes the wire and CPU tables.
func (r *report) printSerialCost(w io.Writer) {
	c := r.cost
	if c == nil {
		return
	}
	if len(c.wire) > 0 {
		fmt.Fprintln(w, "\nSerial wire overhead: bytes on the line per message byte (MCTP headers and DSP0253 framing, escapes, FCS), counted at the far end")
		fmt.Fprintln(w, "of a pty as serial.Binding sent each message (and equal to the binding's tx_bytes); what a real UART carries")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| message | payload | MTU | packets | wire bytes | wire / message byte | overhead |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|")
		for _, x := range c.wire {
			fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %.3f | %.1f %% |\n",
				sizeName(x.size), x.payload, x.mtu, x.packets, x.wire, x.perByte(), 100*(x.perByte()-1))
		}
	}
	fmt.Fprintf(w, "\nSerial CPU: process CPU time (getrusage) per KiB of payload to frame (AppendFrame) and deframe (Deframer.Feed) 4 KiB random messages split at each MTU, in process, no pty\n")
	fmt.Fprintln(w, "arm64 runs under qemu-aarch64 (user mode, -cpu max) on the amd64 host: its figures compare with each other (table against PMULL), not with amd64 or real arm64 hardware")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| arch | FCS path | MTU | CPU-µs per KiB | per round |")
	fmt.Fprintln(w, "|---|---|---:|---:|---|")
	us := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for _, rep := range c.cpu {
		for _, row := range rep.Rows {
			if row.What == "frame+deframe" {
				fmt.Fprintf(w, "| %s | %s | %d | %.2f | %s |\n", archName(rep), row.Path, row.MTU, row.usPerKiB(), span(row.Rounds, us))
			}
		}
	}
	fmt.Fprintln(w, "\nFCS alone over one full packet (MTU + 4 bytes), CPU-µs per KiB: by table and folded by carry-less multiplication")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| arch | packet | table | folded | path | table / folded |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|")
	for _, rep := range c.cpu {
		for _, mtu := range costMTUs {
			var table, folded *cpuRow
			for i, row := range rep.Rows {
				if row.What == "fcs" && row.MTU == mtu {
					if row.Path == "table" {
						table = &rep.Rows[i]
					} else {
						folded = &rep.Rows[i]
					}
				}
			}
			if table == nil {
				continue
			}
			if folded == nil {
				fmt.Fprintf(w, "| %s | %d B | %.3f | – | none on this CPU | – |\n", archName(rep), mtu+4, table.usPerKiB())
				continue
			}
			fmt.Fprintf(w, "| %s | %d B | %.3f | %.3f | %s | %.2f |\n", archName(rep), mtu+4, table.usPerKiB(), folded.usPerKiB(),
				folded.Path, table.usPerKiB()/folded.usPerKiB())
		}
	}
	if c.arm64Missing != "" {
		fmt.Fprintf(w, "\narm64 not measured: %s\n", c.arm64Missing)
	}
}

func archName(rep cpuReport) string {
	if rep.UnderQemu {
		return rep.Arch + " (qemu-user, relative only)"
	}
	return rep.Arch
}
