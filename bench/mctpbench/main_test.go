package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
)

// TestMain lets the test binary serve as the floors and the demux-alone
// processes, as the benchmark's own binary does.
func TestMain(m *testing.M) {
	if name := os.Getenv(floorEnv); name != "" {
		os.Exit(floorMain(name))
	}
	if name := os.Getenv(demuxEnv); name != "" {
		os.Exit(demuxMain(name))
	}
	if name := os.Getenv(pollFloorEnv); name != "" {
		os.Exit(pollFloorMain(name))
	}
	os.Exit(m.Run())
}

// TestQuick runs the whole benchmark in its short mode, so that it keeps
// working: every measurement must move messages, lose none, and the
// report must judge every target.
func TestQuick(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	if _, err := exec.LookPath("go"); err != nil {
		testutil.Require(t, fmt.Sprintf("no go on PATH to build the daemons: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := run(ctx, quickConfig(false), &progress)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	checkDemuxRows(t, rep)
	for _, size := range sizes {
		for _, mtu := range serialMTUs {
			s := rep.serial[serialKey{size, mtu}]
			if s == nil || s.serial.msgs == 0 || s.serial.lost != 0 {
				t.Errorf("serial %d B MTU %d: %+v", size, mtu, s)
				continue
			}
			if s.raw.bytes != s.serial.bytes {
				t.Errorf("serial %d B MTU %d: raw moved %d bytes, serial %d; want the same volume", size, mtu, s.raw.bytes, s.serial.bytes)
			}
		}
	}
	for _, mtu := range serialMTUs {
		f := rep.framing[mtu]
		if f == nil || f.serial.msgs == 0 || f.serial.bytes != int64(f.serial.msgs)*framingMessage || f.raw.bytes != f.serial.bytes {
			t.Errorf("framing MTU %d: %+v", mtu, f)
		}
	}
	if len(rep.rss) != 1+2*len(serialMTUs) {
		t.Fatalf("RSS rows %+v", rep.rss)
	}
	for _, r := range rep.rss {
		if r.idle <= 0 || r.after <= 0 {
			t.Errorf("RSS %+v", r)
		}
	}
	if len(rep.drops) != 0 {
		t.Errorf("drops reported: %v", rep.drops)
	}

	var out bytes.Buffer
	rep.print(&out)
	text := out.String()
	for _, want := range []string{"Demux loopback", "| 4 KiB | 8 | echo |", "| 64 B | 1 | demux |", "pipelined / echo", "serial wire overhead, 4 KiB message", "Serial (DSP0253)", "| end to end | 4 KiB | 64 | 16 |", "| end to end | 4 KiB | 251 | 15 |", "| framing only | 4 KiB | 251 |", "Serial wire overhead", "| 4 KiB | random | 251 | 17 |", "FCS alone", "resident memory", "| target | measured | result |"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if got := len(regexp.MustCompile(`(?m)\| (PASS|FAIL) \|$`).FindAllString(text, -1)); got != len(rep.targetRows) || got < 3 {
		t.Errorf("%d judged targets, want the report's %d:\n%s", got, len(rep.targetRows), text)
	}
	if rep.missed() != len(slices.DeleteFunc(slices.Clone(rep.targetRows), func(r targetRow) bool { return r.pass })) {
		t.Error("missed() disagrees with the target rows")
	}
}

// TestQuickFramingOnly runs -only framing in its short mode: the
// framing rows alone, each against its raw baseline, and no target.
func TestQuickFramingOnly(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := quickConfig(false)
	cfg.framingOnly = true
	var progress bytes.Buffer
	rep, err := runFraming(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("runFraming: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.demux) != 0 || len(rep.serial) != 0 || len(rep.rss) != 0 {
		t.Errorf("framing-only run measured more: demux %d, serial %d, rss %d", len(rep.demux), len(rep.serial), len(rep.rss))
	}
	for _, mtu := range serialMTUs {
		f := rep.framing[mtu]
		if f == nil || f.serial.msgs == 0 || f.serial.bytes != int64(f.serial.msgs)*framingMessage || f.raw.bytes != f.serial.bytes {
			t.Errorf("framing MTU %d: %+v", mtu, f)
		}
	}
	var out bytes.Buffer
	rep.print(&out)
	text := out.String()
	for _, want := range []string{"| framing only | 4 KiB | 64 |", "| framing only | 4 KiB | 251 |"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	for _, unwanted := range []string{"Demux loopback", "resident memory", "| end to end |", "Serial wire overhead"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("report has %q:\n%s", unwanted, text)
		}
	}
	// The framing rows over a pty measure CPU and scheduling, not the
	// line: they are no longer judged.
	if got := len(regexp.MustCompile(`(?m)\| (PASS|FAIL) \|$`).FindAllString(text, -1)); got != 0 {
		t.Errorf("%d judged targets, want none:\n%s", got, text)
	}
}

// checkDemuxRows checks every demux row of a report: each server and
// client count moved messages, lost none, counted every lane and timed
// its ping-pongs.
func checkDemuxRows(t *testing.T, rep *report) {
	t.Helper()
	for _, size := range sizes {
		for _, n := range clientCount {
			for _, srv := range demuxServers {
				d := rep.demux[demuxKey{size, n, srv}]
				if d == nil || d.pipe.msgs == 0 || d.pipe.rate() <= 0 || d.pong.msgs == 0 || len(d.pong.lat) != d.pong.msgs ||
					len(d.pipe.perLane) != n || d.cpu < 0 {
					t.Errorf("demux %s %d B %d clients: %+v", srv, size, n, d)
					continue
				}
				if d.pipe.lost != 0 || d.pipe.bytes != int64(d.pipe.msgs)*int64(size) {
					t.Errorf("demux %s %d B %d clients: lost %d, %d bytes for %d messages", srv, size, n, d.pipe.lost, d.pipe.bytes, d.pipe.msgs)
				}
			}
		}
	}
}

// TestQuickDemuxOnly runs the demux rows alone (-only demux): every
// server and client count is measured with the shares and CPU figures,
// no serial daemon or pty pair is set up, and the report prints the
// headline ratio lines and judges the demux targets.
func TestQuickDemuxOnly(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		testutil.Require(t, fmt.Sprintf("no go on PATH to build the daemons: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := quickConfig(false)
	cfg.demuxOnly = true
	var progress bytes.Buffer
	rep, err := run(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.serial) != 0 || len(rep.framing) != 0 || len(rep.rss) != 1 {
		t.Errorf("demux-only run measured more: serial %d, framing %d, rss rows %d", len(rep.serial), len(rep.framing), len(rep.rss))
	}
	checkDemuxRows(t, rep)
	var out bytes.Buffer
	rep.print(&out)
	text := out.String()
	for _, want := range []string{
		"mctpd 64 B stream / libmctp-shaped floor: ", "demux 64 B stream / libmctp-shaped floor: ",
		"mctpd 4 KiB stream / echo floor: ", "| 64 B | 8 | libmctp-shaped |", "server CPU µs/msg",
		"libmctp-shaped floor >= 1.0x", "echo floor >= 0.9x", "no client under 0.5 of an equal share",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	for _, unwanted := range []string{"| end to end |", "| framing only |"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("report has %q:\n%s", unwanted, text)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		lat  []time.Duration
		p    float64
		want float64 // µs
	}{
		{"empty", nil, 99, 0},
		{"one", ms(3), 50, 3000},
		{"median of unsorted", ms(5, 1, 3, 2, 4), 50, 3000},
		{"all equal", ms(slices.Repeat([]int{1}, 98)...), 99, 1000},
		{"p99 picks the tail", append(ms(slices.Repeat([]int{1}, 99)...), 50*time.Millisecond), 99, 50000},
		{"p100 stays in range", ms(1, 2), 100, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sample{lat: slices.Clone(tc.lat)}
			if got := s.percentile(tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %v µs, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestSampleRates(t *testing.T) {
	var s sample
	s.add(sample{msgs: 100, bytes: 6400, elapsed: 500 * time.Millisecond, lost: 1})
	s.add(sample{msgs: 300, bytes: 19200, elapsed: 1500 * time.Millisecond})
	if s.rate() != 200 || s.mbps() != 25600.0/2/1e6 || s.lost != 1 {
		t.Errorf("rate %v, MB/s %v, lost %d", s.rate(), s.mbps(), s.lost)
	}
	if (sample{msgs: 5}).rate() != 0 {
		t.Error("a sample without elapsed time has a rate")
	}
}

func TestSerialWindow(t *testing.T) {
	for _, tc := range []struct{ size, mtu, want int }{
		{1, 64, 64}, {64, 64, 64}, {65, 64, 64}, {1024, 64, 64}, {4096, 64, 16}, {8192, 64, 8}, {65536, 64, 1},
		{1, 251, 64}, {4096, 251, 15}, {65536, 251, 1},
	} {
		if got := serialWindow(tc.size, tc.mtu); got != tc.want {
			t.Errorf("serialWindow(%d, %d) = %d, want %d", tc.size, tc.mtu, got, tc.want)
		}
		// The window never holds more than a quarter of the binding's
		// queue of frames.
		if frames := serialWindow(tc.size, tc.mtu) * ((tc.size + tc.mtu - 1) / tc.mtu); frames > serialQueueQuarter(tc.mtu) {
			t.Errorf("size %d MTU %d: %d frames in flight", tc.size, tc.mtu, frames)
		}
	}
}

func TestFramingPackets(t *testing.T) {
	for _, mtu := range serialMTUs {
		pkts := framingPackets(mtu)
		total := 0
		for i, p := range pkts {
			total += len(p) - 4
			som, eom, seq := p[3]&0x80 != 0, p[3]&0x40 != 0, int(p[3]>>4&3)
			if som != (i == 0) || eom != (i == len(pkts)-1) || seq != i%4 || len(p)-4 > mtu {
				t.Errorf("MTU %d packet %d: % x", mtu, i, p[:4])
			}
			if i < len(pkts)-1 && len(p)-4 != mtu {
				t.Errorf("MTU %d packet %d: %d payload bytes, want %d", mtu, i, len(p)-4, mtu)
			}
		}
		if total != framingMessage {
			t.Errorf("MTU %d: %d payload bytes, want %d", mtu, total, framingMessage)
		}
	}
}

func TestDropsIn(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   map[string]any
		want []string
	}{
		{"clean", map[string]any{
			"mctp": map[string]any{
				"drops":    map[string]any{},
				"bindings": map[string]any{"serial:/dev/x": map[string]any{"rx_frames": 5.0, "tx_bytes": 9.0, "tx_queue_full": 0.0}},
			},
			"demux": map[string]any{"in": 7.0, "out": 7.0, "drop-route": 0.0},
		}, nil},
		{"every kind", map[string]any{
			"mctp": map[string]any{
				"drops":    map[string]any{"sequence": 2.0},
				"bindings": map[string]any{"serial:/dev/x": map[string]any{"rx_frames": 5.0, "tx_queue_full": 3.0}},
			},
			"demux": map[string]any{"in": 7.0, "drop-overflow": 4.0, "overflows": 1.0},
		}, []string{"d demux drop-overflow=4", "d demux overflows=1", "d mctp sequence=2", "d serial:/dev/x tx_queue_full=3"}},
		{"odd shapes are ignored", map[string]any{"mctp": "x", "demux": 3.0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dropsIn("d", tc.st); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRSS(t *testing.T) {
	kib, err := rssKiB(os.Getpid())
	if err != nil || kib <= 0 {
		t.Fatalf("own RSS %d KiB, %v", kib, err)
	}
	if _, err := rssKiB(-1); err == nil {
		t.Error("no error for a missing process")
	}
}

// relay serves one abstract seqpacket name like the floor, but lets the
// test change what goes back: nil drops a message.
func relay(t *testing.T, name string, reply func(i int, m []byte) []byte) {
	t.Helper()
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: "@" + name, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				if _, err := c.Read(buf); err != nil {
					return
				}
				for i := 0; ; i++ {
					n, err := c.Read(buf)
					if err != nil || n == 0 {
						return
					}
					if m := reply(i, buf[:n]); m != nil {
						if _, err := c.Write(m); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
}

// TestPipelinedAccounting checks that the pipelined measurement counts
// what arrives, reports what is lost instead of hanging, and fails on a
// wrong message.
func TestPipelinedAccounting(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reply    func(i int, m []byte) []byte
		wantLost bool
		wantErr  bool
	}{
		{"echo", func(_ int, m []byte) []byte { return m }, false, false},
		{"every tenth lost", func(i int, m []byte) []byte {
			if i%10 == 9 {
				return nil
			}
			return m
		}, true, false},
		{"wrong type", func(_ int, m []byte) []byte { m[1]++; return m }, false, true},
		{"short", func(_ int, m []byte) []byte { return m[:len(m)-1] }, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("mctpbench-test-%d-%s", os.Getpid(), strings.ReplaceAll(tc.name, " ", "-"))
			relay(t, name, tc.reply)
			c, err := demux.Dial(name, baseType)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l := lane{tx: c, rx: c, dest: localEID, src: localEID, typ: baseType}
			s, err := pipelined([]lane{l}, 64, 8, 50*time.Millisecond, 300*time.Millisecond)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if s.msgs == 0 || (s.lost > 0) != tc.wantLost {
				t.Errorf("%d received, %d lost; want lost %v", s.msgs, s.lost, tc.wantLost)
			}
			if tc.wantLost && s.lost > 8 {
				t.Errorf("%d lost with a window of 8", s.lost)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int
		ok       bool
	}{
		{"status file", "Name:\tmctpd\nVmHWM:\t    9000 kB\nVmRSS:\t    6452 kB\nThreads:\t7\n", 6452, true},
		{"first VmRSS wins", "VmRSS: 1 kB\nVmRSS: 2 kB\n", 1, true},
		{"zero", "VmRSS:\t0 kB", 0, true},
		{"missing", "Name:\tx\n", 0, false},
		{"no unit", "VmRSS:\t6452\n", 0, false},
		{"other unit", "VmRSS:\t6 MB\n", 0, false},
		{"negative", "VmRSS:\t-5 kB\n", 0, false},
		{"not a number", "VmRSS:\tx kB\n", 0, false},
		{"empty", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmRSS(strings.NewReader(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseVmRSS = %d, %v; want %d, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

// FuzzVmRSS: the parser never panics, never returns a negative size,
// returns 0 with every error, and finds a well-formed line it is given
// after the input.
func FuzzVmRSS(f *testing.F) {
	f.Add("Name:\tmctpd\nVmRSS:\t    6452 kB\n")
	f.Add("VmRSS:")
	f.Add("VmRSS: 1 2 kB\n")
	f.Fuzz(func(t *testing.T, in string) {
		n, err := parseVmRSS(strings.NewReader(in))
		if n < 0 || (err != nil && n != 0) {
			t.Fatalf("parseVmRSS(%q) = %d, %v", in, n, err)
		}
		if strings.Contains(in, "VmRSS:") || len(in) > 60000 {
			return
		}
		n, err = parseVmRSS(strings.NewReader(in + "\nVmRSS:\t 77 kB\n"))
		if err != nil || n != 77 {
			t.Fatalf("with a VmRSS line appended to %q: %d, %v", in, n, err)
		}
	})
}
