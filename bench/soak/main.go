// Command soak runs every tickbox daemon for a while under mixed load
// and faults, and fails unless every one survives with every reply
// accounted for:
//
//	go run ./bench/soak [-d 60s] [-rotate 3s] [-hotplug 2s] [-pace 2ms] [-timeout 30s] [-outage 2s] [-payload 1000] [-keep]
//
// It needs root (network namespaces) and ip; linuxptp's ptp4l is used
// when installed. The daemons, built for the run, talk over unix
// sockets in a temporary directory, network namespaces and ptys:
//
//   - ptpd in a namespace of its own, its PTP instance the slave of a
//     free-running ptp4l across a veth pair (without ptp4l, a freerun
//     instance; the run says which), on a virtual clock: the host
//     clock is never touched;
//   - two mctpds (EIDs 8 and 9) whose serial bindings are joined by a
//     pty pair the soak relays itself, as `socat pty pty` would;
//   - mdiod on simulated PHYs; the appliance in ptpd's namespace, sending
//     hotplug datagrams to ptpd and mdiod; ctl serve as the hub fronting
//     all of them.
//
// The load, from several goroutines at once: Kea commands to each
// daemon directly and through the hub, nose IPC requests and console
// commands to mdiod (and through the hub's console), MCTP echo requests
// from mctpd 8's tagged demux to a responder on mctpd 9's with random
// payloads compared byte for byte, a logrotate datagram to ptpd every
// -rotate (the message log renamed first, then checked to be reopened),
// and a veth pair created or deleted in the appliance's namespace every
// -hotplug. Every reply is checked: one that does not parse or does not
// match is malformed, a request without a reply within -timeout is lost.
//
// Faults: at a third of the run the pty is pulled away in the middle of
// a frame (the relay passes on half a frame, the receiving mctpd reads
// it, both ptys hang up) and restored after 2 s; at half the run a
// demux client stops reading while messages are sent to it. Echo
// requests that failed while the line was away (sent before traffic was
// seen to flow again, failed after the pull) are reported apart and not
// counted; nothing else is excluded.
//
// It prints each daemon's RSS, goroutines and open descriptors at the
// start and the end, and fails (exit 1) if a daemon died or did not exit
// cleanly at the end, a reply was malformed or lost, a fault was not
// survived, or goroutines or descriptors grew by more than the bounds
// printed with the table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/ctxtime"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// Bounds on growth from the start of the run to its end, each daemon
// measured idle both times (before the load's clients connect, after
// they closed): a leak of one goroutine or descriptor per request, or
// per connection, would exceed them within seconds of load.
const (
	maxGoroutineGrowth = 5
	maxFDGrowth        = 3
	// The hub keeps up to 8 idle connections to each daemon it fronts
	// (services/ctl/hub's maxIdle), by design; the daemons close their
	// ends after kea.DefaultIdleTimeout, the hub finds them closed at
	// their next use. Its descriptors may grow by that many more.
	hubIdlePerDaemon = 8
	// The stuck client's queue is bounded at 4 MiB (512 messages of
	// 1 KiB here are half of that); mctpd's RSS may grow by that plus
	// the garbage collector's headroom, not without bound.
	maxStuckRSSGrowthKiB = 16 << 10
)

type config struct {
	dur        time.Duration
	rotate     time.Duration
	hotplug    time.Duration
	pace       time.Duration
	timeout    time.Duration
	outage     time.Duration
	maxPayload int
	keep       bool
}

func main() {
	var c config
	flag.DurationVar(&c.dur, "d", 60*time.Second, "how long the load runs")
	flag.DurationVar(&c.rotate, "rotate", 3*time.Second, "interval of ptpd's logrotate")
	flag.DurationVar(&c.hotplug, "hotplug", 2*time.Second, "interval of veth creation and deletion in the appliance's namespace")
	flag.DurationVar(&c.pace, "pace", 2*time.Millisecond, "pause of each load goroutine between requests")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Second, "a request without a reply within this long is lost")
	flag.DurationVar(&c.outage, "outage", 2*time.Second, "how long the pty stays pulled")
	flag.IntVar(&c.maxPayload, "payload", 1000, "largest random part of an MCTP echo payload, bytes")
	flag.BoolVar(&c.keep, "keep", false, "keep the directory with the daemons' logs")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "soak: needs root (network namespaces for ptpd and the appliance)")
		os.Exit(2)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fmt.Fprintln(os.Stderr, "soak: ip not installed (apt-get install iproute2)")
		os.Exit(2)
	}
	if c.dur < 10*time.Second {
		fmt.Fprintln(os.Stderr, "soak: -d must be at least 10s (the faults run at a third and a half of it)")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "soak: FAIL: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	s, err := newSetup(c)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		if s != nil {
			s.keep = true
		}
		return fmt.Errorf("setting up: %w", err)
	}
	fmt.Printf("soak: %v of mixed load; ptpd: %s; directory %s\n", c.dur, s.ptpMode, s.dir)

	start := map[string]sample{}
	for _, n := range daemonOrder {
		if start[n], err = s.daemons[n].measure(3, 500*time.Millisecond); err != nil {
			return err
		}
	}
	base, err := s.counters()
	if err != nil {
		return fmt.Errorf("datagram counts at the start: %w", err)
	}

	// SIGINT or SIGTERM ends the load early; the namespaces and the
	// daemons are still cleaned up.
	sigCtx, stopSig := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSig()
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	// A daemon that dies ends the run.
	var died atomic.Pointer[error]
	for _, n := range daemonOrder {
		d := s.daemons[n]
		go func() {
			<-d.done
			d.mu.Lock()
			stopping := d.stopping
			d.mu.Unlock()
			if !stopping {
				err := fmt.Errorf("%w\n%s", d.exited(), d.logTail(30))
				died.CompareAndSwap(nil, &err)
				cancel()
			}
		}()
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { keaWorker(loadCtx, s, false) })
		wg.Go(func() { keaWorker(loadCtx, s, true) })
	}
	wg.Go(func() { ipcWorker(loadCtx, s) })
	wg.Go(func() { consoleWorker(loadCtx, s) })
	for id := range 2 {
		wg.Go(func() { echoRequester(loadCtx, s, byte(id)) })
	}
	var rot rotations
	wg.Go(func() { s.rotateLoop(loadCtx, &rot) })
	var hp hotplugs
	wg.Go(func() { s.hotplugLoop(loadCtx, &hp) })

	// Every daemon's RSS, every second, for its peak.
	peak := map[string]int{}
	var peakMu sync.Mutex
	wg.Go(func() {
		for ctxtime.Sleep(loadCtx, time.Second) {
			for _, n := range daemonOrder {
				if kib, err := rssKiB(s.daemons[n].pid); err == nil {
					peakMu.Lock()
					peak[n] = max(peak[n], kib)
					peakMu.Unlock()
				}
			}
		}
	})

	began := time.Now()
	var pf *ptyFault
	var sf *stuckFault
	var faults sync.WaitGroup
	faults.Go(func() {
		if !ctxtime.Sleep(loadCtx, c.dur/3) {
			return
		}
		fmt.Printf("soak: +%v pulling the pty between the mctpds mid-frame\n", time.Since(began).Round(time.Second))
		pf = s.pullPTY(c.outage)
	})
	faults.Go(func() {
		if !ctxtime.Sleep(loadCtx, c.dur/2) {
			return
		}
		fmt.Printf("soak: +%v a demux client stops reading\n", time.Since(began).Round(time.Second))
		sf = s.stuckClient(loadCtx)
	})
	ctxtime.Sleep(loadCtx, c.dur)
	// The faults run to their end (each is bounded), so that the load
	// goes on around them.
	faults.Wait()
	stopLoad()
	wg.Wait()
	elapsed := time.Since(began)
	if e := died.Load(); e != nil {
		return fmt.Errorf("a daemon died: %w", *e)
	}
	if sigCtx.Err() != nil {
		return errors.New("interrupted")
	}

	var fails []error
	hpErr := s.hotplugCleanup(&hp)
	if hpErr != nil {
		fails = append(fails, hpErr)
	}
	// Let the appliance deliver the last hotplug datagrams.
	if err := waitCond(c.timeout, func() bool { p, err := s.appliancePending(); return err == nil && p == 0 }); err != nil {
		fails = append(fails, fmt.Errorf("appliance still has datagrams pending: %w", err))
	}
	// The daemons close the hub's kept-open connections once idle for
	// the Kea channel's idle timeout: measure after it.
	time.Sleep(kea.DefaultIdleTimeout + 2*time.Second)
	end := map[string]sample{}
	for _, n := range daemonOrder {
		if end[n], err = s.daemons[n].measure(3, 500*time.Millisecond); err != nil {
			return err
		}
	}
	// The echo responder was connected at the start measurement too.
	s.stopResponder()
	last, err := s.counters()
	if err != nil {
		return fmt.Errorf("datagram counts at the end: %w", err)
	}

	// The report.
	fmt.Printf("\nsoak: %v of load, the faults within it\n\n", elapsed.Round(time.Second))
	fmt.Printf("%-11s %7s %9s %9s %9s %6s %6s %5s %5s\n", "daemon", "pid", "RSS start", "RSS peak", "RSS end", "gor.", "gor.", "fds", "fds")
	fmt.Printf("%-11s %7s %9s %9s %9s %6s %6s %5s %5s\n", "", "", "MiB", "MiB", "MiB", "start", "end", "start", "end")
	for _, n := range daemonOrder {
		a, b := start[n], end[n]
		fmt.Printf("%-11s %7d %9.1f %9.1f %9.1f %6d %6d %5d %5d\n", n, s.daemons[n].pid, float64(a.RSSKiB)/1024, float64(peak[n])/1024, float64(b.RSSKiB)/1024, a.Goroutines, b.Goroutines, a.FDs, b.FDs)
		if b.Goroutines > a.Goroutines+maxGoroutineGrowth {
			fails = append(fails, fmt.Errorf("%s: goroutines %d -> %d, more than +%d", n, a.Goroutines, b.Goroutines, maxGoroutineGrowth))
		}
		fdBound := maxFDGrowth
		if n == "hub" {
			fdBound += hubIdlePerDaemon * (len(daemonOrder) - 1)
		}
		if b.FDs > a.FDs+fdBound {
			fails = append(fails, fmt.Errorf("%s: open fds %d -> %d, more than +%d", n, a.FDs, b.FDs, fdBound))
		}
	}
	fmt.Printf("bounds: goroutines end <= start + %d; fds end <= start + %d, the hub's + %d more (its idle connections to the %d daemons);\n"+
		"each the smallest of three readings 0.5 s apart, idle (the end ones %v after the load)\n\n",
		maxGoroutineGrowth, maxFDGrowth, hubIdlePerDaemon*(len(daemonOrder)-1), len(daemonOrder)-1, kea.DefaultIdleTimeout+2*time.Second)

	var faultFrom, faultTo time.Time
	if pf != nil && !pf.recovered.IsZero() {
		faultFrom, faultTo = pf.from, pf.recovered
	}
	sum := s.tally.summarize(faultFrom, faultTo)
	fmt.Printf("%-20s %9s %8s %10s %6s\n", "requests", "ok", "per s", "malformed", "lost")
	totalBad := 0
	for _, k := range sum.kinds {
		fmt.Printf("%-20s %9d %8.0f %10d %6d\n", k, sum.ok[k], float64(sum.ok[k])/elapsed.Seconds(), sum.malformed[k], sum.lost[k])
		totalBad += sum.malformed[k] + sum.lost[k]
	}
	fmt.Printf("%-20s %9d %8s %10d %6d\n", "logrotate (ptpd)", rot.ok, "", 0, rot.failed)
	totalBad += rot.failed
	fmt.Printf("late echo replies (after their request's timeout, skipped): %d\n", s.late.Load())
	for _, e := range sum.examples {
		fmt.Printf("  %s\n", e)
	}
	for _, e := range rot.errs {
		fmt.Printf("  logrotate: %s\n", e)
	}
	if totalBad > 0 {
		fails = append(fails, fmt.Errorf("%d malformed or lost replies", totalBad))
	}

	// Datagrams have no reply: each daemon's count of them must match
	// what was sent.
	fmt.Println()
	if err := s.checkDatagrams(base, last, rot.sent, &hp); err != nil {
		fails = append(fails, err)
	}

	fmt.Println()
	if pf == nil {
		fails = append(fails, errors.New("the pty fault did not run"))
	} else {
		fmt.Printf("fault: pty pulled mid-frame (%d bytes of a frame's chunk passed on, %d held back), away %v\n", pf.cut.Passed, pf.cut.Held, c.outage)
		if !pf.recovered.IsZero() {
			fmt.Printf("  echo traffic back %v after restoring the ptys (probes: %d); window from the pull to then: %v\n",
				pf.recovered.Sub(pf.restored).Round(time.Millisecond), pf.probes, pf.recovered.Sub(pf.from).Round(time.Millisecond))
			fmt.Printf("  echo requests failed in that window (not counted above): %d malformed, %d lost\n", sum.faultMalformed, sum.faultLost)
			for _, e := range sum.faultExamples {
				fmt.Printf("    %s\n", e)
			}
			for _, n := range []string{"mctpd", "mctpd-peer"} {
				fmt.Printf("  %s serial: %s\n", n, counterDelta(pf.before[n], pf.after[n], "outages", "reconnects", "read_errors", "open_errors", "rx_bad_fcs", "rx_bad_length", "rx_truncated", "rx_garbage_bytes", "tx_errors"))
			}
		}
		if pf.err != nil {
			fails = append(fails, fmt.Errorf("pty fault: %w", pf.err))
		}
	}
	if sf == nil {
		fails = append(fails, errors.New("the stuck-client fault did not run"))
	} else {
		fmt.Printf("fault: stuck demux client on mctpd: %d messages of 1 KiB sent towards it; disconnected after %v (overflows %d -> %d); %d queued messages read after, then EOF\n",
			sf.sent, sf.took.Round(time.Millisecond), sf.overflowsFrom, sf.overflowsTo, sf.drained)
		fmt.Printf("  mctpd RSS %.1f MiB before, %.1f MiB at most meanwhile, read every 10 ms (bound: +%d MiB)\n", float64(sf.rssBeforeKiB)/1024, float64(sf.rssPeakKiB)/1024, maxStuckRSSGrowthKiB>>10)
		if sf.rssPeakKiB > sf.rssBeforeKiB+maxStuckRSSGrowthKiB {
			fails = append(fails, fmt.Errorf("mctpd's RSS grew by %d KiB with a stuck client", sf.rssPeakKiB-sf.rssBeforeKiB))
		}
		if sf.err != nil {
			fails = append(fails, fmt.Errorf("stuck client: %w", sf.err))
		}
	}

	// ptpd's instance is still (or again) what it was at the start.
	if err := waitCond(c.timeout, func() bool { st, err := s.ptpState(); return err == nil && st.ok() }); err != nil {
		st, e := s.ptpState()
		fails = append(fails, fmt.Errorf("ptpd's %s at the end: %+v, %v: %w", s.ptpInstance, st, e, err))
	} else {
		st, _ := s.ptpState()
		fmt.Printf("ptpd: %s %s, selected %v at the end\n", st.Name, st.State, st.Selected)
	}

	// Every daemon must exit cleanly.
	for i := len(daemonOrder) - 1; i >= 0; i-- {
		if err := s.daemons[daemonOrder[i]].stop(20 * time.Second); err != nil {
			fails = append(fails, fmt.Errorf("%w\n%s", err, s.daemons[daemonOrder[i]].logTail(20)))
		}
	}
	if len(fails) > 0 {
		s.keep = true
		return fmt.Errorf("%d check(s) failed (logs kept in %s):\n%w", len(fails), s.dir, errors.Join(fails...))
	}
	fmt.Println("\nsoak: PASS: every daemon survived, no malformed or lost reply, growth within bounds")
	return nil
}

func counterDelta(a, b map[string]uint64, keys ...string) string {
	var out string
	for _, k := range keys {
		if d := b[k] - a[k]; d != 0 {
			out += fmt.Sprintf("%s +%d ", k, d)
		}
	}
	if out == "" {
		return "no change"
	}
	return out
}
