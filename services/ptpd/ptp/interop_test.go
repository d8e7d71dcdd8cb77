package ptp_test

import (
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

func TestMain(m *testing.M) {
	if ptptest.IsHelper() {
		os.Exit(ptptest.HelperMain())
	}
	os.Exit(m.Run())
}

// TestHelperPort is what the interop tests re-exec in a namespace; run
// directly it does nothing (TestMain intercepts the helper run).
func TestHelperPort(t *testing.T) {
	if !ptptest.IsHelper() {
		t.Skip("only runs as the interop helper")
	}
}

var helperArgs = []string{"-test.run=^TestHelperPort$"}

// window is the measurement window; PTP_INTEROP_WINDOW shortens it when
// iterating by hand.
func window() time.Duration {
	if v, err := time.ParseDuration(os.Getenv("PTP_INTEROP_WINDOW")); err == nil {
		return v
	}
	return 60 * time.Second
}

func needInterop(t *testing.T) {
	t.Helper()
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, why)
	}
}

// hostClock is the host clock's frequency and status, which no test may
// change.
func hostClock(t *testing.T) (int64, int32) {
	t.Helper()
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		t.Fatal(err)
	}
	return tx.Freq, tx.Status
}

func guardHostClock(t *testing.T) {
	f0, s0 := hostClock(t)
	t.Cleanup(func() {
		f1, s1 := hostClock(t)
		if f0 != f1 || s0 != s1 {
			t.Errorf("host clock changed: freq %d→%d status %#x→%#x", f0, f1, s0, s1)
		}
	})
}

func newNS(t *testing.T, prefix string) *ptptest.NS {
	t.Helper()
	ns, err := ptptest.NewNS(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func slaveConfig(iface string) ptp.Config { return ptptest.PortConfig(iface, ptp.ModeSlave) }

func startPort(t *testing.T, ns *ptptest.NS, spec ptptest.HelperSpec) *ptptest.PortProc {
	t.Helper()
	exe, err := ptptest.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pp, err := ptptest.StartPort(ns, exe, helperArgs, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pp.Stop()
		if t.Failed() {
			t.Logf("port log:\n%s", pp.Log())
		}
	})
	return pp
}

func startPtp4l(t *testing.T, ns *ptptest.NS, c ptptest.Ptp4lConfig) *ptptest.Proc {
	t.Helper()
	p, err := ptptest.StartPtp4l(ns, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			var b strings.Builder
			for _, l := range p.Lines() {
				b.WriteString(l.Text + "\n")
			}
			t.Logf("ptp4l (%s) log:\n%s", c.Iface, b.String())
		}
	})
	return p
}

// slaveOfPtp4l starts a ptp4l master and our port as its slave, on a
// virtual clock that starts 500 µs and 30 ppm off, in two namespaces
// joined by a veth pair on 169.254.subnet.0/24. It returns ptp4l, the
// port and when the port started.
func slaveOfPtp4l(t *testing.T, prefix string, subnet int) (*ptptest.Proc, *ptptest.PortProc, time.Time) {
	t.Helper()
	guardHostClock(t)
	nsM, nsS := newNS(t, prefix+"m"), newNS(t, prefix+"s")
	addr := func(host int) string { return fmt.Sprintf("169.254.%d.%d/24", subnet, host) }
	if err := ptptest.Veth(nsM, "vm", addr(1), nsS, "vs", addr(2)); err != nil {
		t.Fatal(err)
	}
	master := startPtp4l(t, nsM, ptptest.Ptp4lConfig{Iface: "vm", Dir: testutil.ShortDir(t), Options: ptptest.MasterOptions()})
	pp := startPort(t, nsS, ptptest.HelperSpec{
		Config: slaveConfig("vs"), VirtualOffset: 500 * time.Microsecond, VirtualPPM: 30,
		Report: 100 * time.Millisecond,
	})
	return master, pp, time.Now()
}

// checkSlave checks the bounds every slave-of-ptp4l test holds: one step
// (the start-up one), and over the last window a true error RMS under
// 2 µs and largest under 5 µs.
func checkSlave(t *testing.T, pp *ptptest.PortProc, res slaveResult, window time.Duration) {
	t.Helper()
	if res.steps != 1 {
		t.Errorf("steps %d, want exactly 1", res.steps)
	}
	if res.rms >= 2000 || res.max >= 5000 {
		t.Errorf("true error RMS %.0f ns (want < 2000), max %.0f ns (want < 5000)", res.rms, res.max)
		logAroundWorst(t, pp.Reports(), window)
	}
}

// TestInteropSlave: our port, slave of ptp4l, on a virtual clock that
// starts 500 µs and 30 ppm off.
func TestInteropSlave(t *testing.T) {
	needInterop(t)
	t.Parallel()
	_, pp, start := slaveOfPtp4l(t, "tbp", 10)
	w := window()
	res := measureSlave(t, pp, start, 15*time.Second, w)
	t.Logf("locked after %v; last %v: true error RMS %.0f ns, max %.0f ns; freq %.3f ppm; steps %d; outliers discarded %d",
		res.lockedAfter.Round(time.Millisecond), w, res.rms, res.max, res.freqPPB/1000, res.steps, res.outliers)
	checkSlave(t, pp, res, w)
	if d := res.freqPPB/1000 + 30; d < -2 || d > 2 {
		t.Errorf("final frequency %.3f ppm, want -30 ± 2", res.freqPPB/1000)
	}
}

// TestInteropSlaveStalls: as TestInteropSlave, but the master ptp4l is
// stopped (SIGSTOP) for 450 ms every five seconds, as a loaded host
// stalls it: each stall misses more than six Syncs, so the port starts a
// holdover and takes up again when the Syncs return. The true error must
// stay within the steady-state bounds through it.
func TestInteropSlaveStalls(t *testing.T) {
	needInterop(t)
	t.Parallel()
	master, pp, start := slaveOfPtp4l(t, "tbr", 12)
	lockBy, w := 15*time.Second, window()/2
	proc, err := os.FindProcess(master.Pid())
	if err != nil {
		t.Fatal(err)
	}
	// The stalls run until the window ends; the cleanup (which runs
	// before ptp4l's) ends them early on a failure and always leaves
	// ptp4l running, so that it can be stopped.
	stop, done := make(chan struct{}), make(chan error, 1)
	var stalls int
	go func() {
		wait := func(d time.Duration) bool {
			select {
			case <-stop:
				return false
			case <-time.After(d):
				return true
			}
		}
		if !wait(lockBy) {
			done <- nil
			return
		}
		for time.Until(start.Add(lockBy+w)) > time.Second {
			if err := proc.Signal(unix.SIGSTOP); err != nil {
				done <- fmt.Errorf("stopping ptp4l: %w", err)
				return
			}
			ok := wait(450 * time.Millisecond)
			if err := proc.Signal(unix.SIGCONT); err != nil {
				done <- fmt.Errorf("continuing ptp4l: %w", err)
				return
			}
			stalls++
			if !ok || !wait(5*time.Second) {
				break
			}
		}
		done <- nil
	}()
	endStalls := sync.OnceValue(func() error {
		close(stop)
		return <-done
	})
	t.Cleanup(func() { _ = endStalls() })
	res := measureSlave(t, pp, start, lockBy, w)
	if err := endStalls(); err != nil {
		t.Fatal(err)
	}
	holdovers := strings.Count(pp.Log(), ": failed to receive Sync for sequence number ")
	t.Logf("%d stalls of the master, %d holdovers; last %v: true error RMS %.0f ns, max %.0f ns; freq %.3f ppm; outliers discarded %d",
		stalls, holdovers, w, res.rms, res.max, res.freqPPB/1000, res.outliers)
	if stalls < 4 || holdovers < stalls {
		t.Errorf("%d stalls made %d holdovers: the test did not do what it is for", stalls, holdovers)
	}
	checkSlave(t, pp, res, w)
}

// logAroundWorst logs the reports in the last window from two seconds
// before the largest true error to a second after it: what the port
// measured and did around it.
func logAroundWorst(t *testing.T, rs []ptptest.Report, window time.Duration) {
	t.Helper()
	if len(rs) == 0 {
		return
	}
	from := rs[len(rs)-1].At.Add(-window)
	worst := -1
	for i, r := range rs {
		if r.At.After(from) && (worst < 0 || math.Abs(r.TrueErr) > math.Abs(rs[worst].TrueErr)) {
			worst = i
		}
	}
	if worst < 0 {
		return
	}
	var b strings.Builder
	for _, r := range rs {
		if d := r.At.Sub(rs[worst].At); d >= -2*time.Second && d <= time.Second {
			fmt.Fprintf(&b, "%s %-12s true %7.0f ns offset %8.0f ns delay %7.0f ns freq %10.1f ppb\n",
				r.At.Format("15:04:05.000"), r.State, r.TrueErr, r.Offset, r.Delay, r.Freq)
		}
	}
	t.Logf("reports around the largest true error:\n%s", b.String())
}

type slaveResult struct {
	lockedAfter time.Duration
	rms, max    float64
	freqPPB     float64
	steps       int
	outliers    uint64
}

// measureSlave finds when the port locked (in slave state with |true
// error| under 5 µs for ten reports running), runs until lockBy+window
// after start, and takes the statistics of the last window.
func measureSlave(t *testing.T, pp *ptptest.PortProc, start time.Time, lockBy, window time.Duration) slaveResult {
	t.Helper()
	time.Sleep(time.Until(start.Add(lockBy + window + 300*time.Millisecond)))
	rs := pp.Reports()
	if len(rs) == 0 {
		t.Fatal("no reports from the port")
	}
	var res slaveResult
	run := 0
	for i, r := range rs {
		if r.State == "slave" && r.TrueErr > -5000 && r.TrueErr < 5000 {
			run++
			if run == 10 {
				res.lockedAfter = rs[i-9].At.Sub(start)
				break
			}
		} else {
			run = 0
		}
	}
	if run < 10 || res.lockedAfter > lockBy {
		t.Errorf("not locked within %v (locked after %v)", lockBy, res.lockedAfter)
	}
	res.rms, res.max = ptptest.RMS(ptptest.TrueErrors(rs, window))
	last := rs[len(rs)-1]
	res.freqPPB = last.Freq
	res.steps = last.Steps
	res.outliers = last.Outliers
	return res
}

// TestInteropMaster: a free-running ptp4l slave follows our master.
func TestInteropMaster(t *testing.T) {
	needInterop(t)
	t.Parallel()
	guardHostClock(t)
	nsM, nsS := newNS(t, "tbqm"), newNS(t, "tbqs")
	if err := ptptest.Veth(nsM, "vm", "169.254.11.1/24", nsS, "vs", "169.254.11.2/24"); err != nil {
		t.Fatal(err)
	}
	cfg := slaveConfig("vm")
	cfg.Mode = ptp.ModeMaster
	pp := startPort(t, nsM, ptptest.HelperSpec{Config: cfg, SystemClock: true, Report: 250 * time.Millisecond})
	dir := testutil.ShortDir(t)
	// A free-running ptp4l never locks its servo: it logs "master
	// offset ... s0" once per frequency-estimation interval, which
	// freq_est_interval 0 (its minimum) makes one a second;
	// summary_interval -4 keeps each one as its own line instead of
	// folding sixteen into an "rms" summary.
	sc := ptptest.Ptp4lConfig{Iface: "vs", Dir: dir, Slave: true, Options: ptptest.FreeRunningSlaveOptions()}
	slave := startPtp4l(t, nsS, sc)
	settle, w := 10*time.Second, window()/2
	time.Sleep(settle + w)
	out, err := ptptest.PMC(nsS, sc.UDS(), "GET PARENT_DATA_SET")
	if err != nil {
		t.Fatal(err)
	}
	rs := pp.Reports()
	if len(rs) == 0 || rs[len(rs)-1].State != "master" {
		t.Fatalf("port not master: %+v", rs)
	}
	self := ptptest.PTP4LID(rs[len(rs)-1].Self)
	if !strings.Contains(out, "grandmasterIdentity             "+self) && !strings.Contains(out, self) {
		t.Errorf("ptp4l's parent data set does not show our identity %s:\n%s", self, out)
	}
	// Software timestamps on a veth pair inside a virtual machine now
	// and then stamp a packet late by tens of microseconds to
	// milliseconds (the vCPU is descheduled between the two stamps);
	// ptp4l as master of ptp4l shows the same spikes. One of them
	// among a window's thirty samples is enough to break the bound, so
	// a window that fails is measured again, up to three in all. Every
	// window is logged; a master that is really worse fails all three.
	const tries = 3
	var windows []string
	for try := 1; ; try++ {
		var offs []float64
		for _, o := range ptptest.Offsets(slave.Lines()) {
			if o.At.After(time.Now().Add(-w)) {
				offs = append(offs, o.NS)
			}
		}
		if len(offs) < 10 {
			t.Fatalf("only %d ptp4l offsets", len(offs))
		}
		rms, mx := ptptest.RMS(offs)
		windows = append(windows, fmt.Sprintf("RMS %.0f ns, max %.0f ns (%d samples)", rms, mx, len(offs)))
		t.Logf("ptp4l slave of our master, window %d of %v: offset %s", try, w, windows[len(windows)-1])
		if rms < 3000 {
			return
		}
		if try == tries {
			t.Errorf("ptp4l offset RMS >= 3000 ns in all %d windows: %s", tries, strings.Join(windows, "; "))
			return
		}
		time.Sleep(w)
	}
}

// TestInteropBMCA: two ptp4l masters on one bridged segment; our slave
// follows the better, and fails over to the other when it dies.
func TestInteropBMCA(t *testing.T) {
	needInterop(t)
	t.Parallel()
	guardHostClock(t)
	hub, m1, m2, s := newNS(t, "tbrh"), newNS(t, "tbr1"), newNS(t, "tbr2"), newNS(t, "tbrs")
	if err := ptptest.Bridge(hub, 12, "eth0", m1, m2, s); err != nil {
		t.Fatal(err)
	}
	opts := func(p1 string) []string {
		return append([]string{"priority1 " + p1, "masterOnly 1"}, ptptest.MasterOptions()[1:]...)
	}
	p1 := startPtp4l(t, m1, ptptest.Ptp4lConfig{Iface: "eth0", Dir: testutil.ShortDir(t), Options: opts("10")})
	startPtp4l(t, m2, ptptest.Ptp4lConfig{Iface: "eth0", Dir: testutil.ShortDir(t), Options: opts("20")})
	id1, id2 := macID(t, m1), macID(t, m2)
	pp := startPort(t, s, ptptest.HelperSpec{Config: slaveConfig("eth0"), Report: 100 * time.Millisecond})
	waitParent := func(id string, within time.Duration) time.Duration {
		start := time.Now()
		for time.Since(start) < within {
			rs := pp.Reports()
			if n := len(rs); n > 0 && rs[n-1].Parent == id && rs[n-1].State != "listening" {
				return time.Since(start)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rs := pp.Reports()
		if n := len(rs); n > 0 {
			t.Logf("last report %+v", rs[n-1])
		}
		t.Fatalf("parent did not become %s within %v", id, within)
		return 0
	}
	waitParent(id1, 10*time.Second)
	time.Sleep(2 * time.Second) // it stays with the better master
	if rs := pp.Reports(); rs[len(rs)-1].Parent != id1 {
		t.Fatalf("switched away from the better master: %+v", rs[len(rs)-1])
	}
	p1.Kill()
	took := waitParent(id2, 8*time.Second)
	t.Logf("failed over from %s to %s in %v", id1, id2, took.Round(time.Millisecond))
}

func macID(t *testing.T, ns *ptptest.NS) string {
	t.Helper()
	out, err := ns.Command("cat", "/sys/class/net/eth0/address").Output()
	if err != nil {
		t.Fatal(err)
	}
	id := ptptest.MACID(string(out))
	if id == "" {
		t.Fatalf("bad MAC %q", out)
	}
	return id
}
