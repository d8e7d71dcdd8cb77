// Command ptpbench measures ptpd's PTP port against linuxptp's ptp4l in
// network namespaces on veth links, with software timestamps, and prints
// markdown tables. Every comparison is between slaves that hear the same
// Sync messages, or masters heard by the same kind of slave:
//
//   - slave measurement noise: one ptp4l master on a veth; on the other
//     end, bridge-mode macvlans, each in a namespace of its own, carry a
//     free-running ptp4l slave and a measuring-only ptpd slave (clock
//     control no-adjust on the host clock, which it cannot change), so
//     both see the same Syncs with the same receive timestamps;
//   - ptpd's closed-loop true error: two more ptpd slaves on the same
//     stream, each steering a virtual clock that starts at +500 µs and
//     +30 ppm, one with the outlier filter and one without; their error
//     against the host clock, and how far it moves in the two seconds
//     after a late-stamped Sync;
//   - master quality: a free-running ptp4l slave of a ptp4l master and
//     one of a ptpd master, on two veth pairs at the same time.
//
// It needs root, ip and linuxptp; the host clock is never adjusted.
//
//	go run ./bench/ptpbench [-window 60s] [-settle 15s] [-quick] [-series FILE]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

func main() {
	if ptptest.IsHelper() {
		os.Exit(ptptest.HelperMain())
	}
	o := options{}
	flag.DurationVar(&o.window, "window", 60*time.Second, "measurement window after the settling time")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "settling time before the window")
	quick := flag.Bool("quick", false, "smoke test: 10 s settling, 10 s window")
	flag.StringVar(&o.series, "series", "", "write the closed-loop slaves' true error and every slave's offsets as CSV to this file")
	flag.Parse()
	if *quick {
		o.settle, o.window = 10*time.Second, 10*time.Second
	}
	if why := ptptest.Available(); why != "" {
		fmt.Fprintln(os.Stderr, "ptpbench:", why)
		os.Exit(2)
	}
	res, err := run(o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ptpbench:", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
	if o.series != "" {
		if err := res.writeSeries(o.series); err != nil {
			fmt.Fprintln(os.Stderr, "ptpbench:", err)
			os.Exit(1)
		}
	}
}

type options struct {
	settle, window time.Duration
	series         string
}

// row is one measured series.
type row struct {
	name string
	s    summary
}

// loopFilters are the closed-loop slaves' outlier filters: none,
// sfptpd's (every outlier enters the window with the adaption weight),
// and ptpd's (a lone outlier enters no further out than the threshold).
var loopFilters = []struct {
	name       string
	off, plain bool
}{
	{"ptpd slave, no outlier filter", true, false},
	{"ptpd slave, sfptpd's outlier filter", false, true},
	{"ptpd slave, ptpd's outlier filter (lone outliers held)", false, false},
}

// loop is a closed-loop ptpd slave's figures.
type loop struct {
	name     string
	err      summary
	events   []lateEvent
	resp     summary // responses to the late-stamped Syncs
	base     summary // the same measure from every second of the window
	outliers uint64  // offsets the filter discarded in the window
	freqPPM  float64
	steps    int
	reports  []ptptest.Report
}

type results struct {
	window time.Duration
	// Same-stream measurement noise.
	p4Slave, ptpdAll, ptpdEvery16, ptpdKept row
	// Closed loop, filter off and on.
	loops []loop
	// Master quality.
	ofP4, ofPtpd row
	rssIdleKiB   int
	rssSlaveKiB  int
	measured     []ptptest.Report // the measuring-only ptpd slave
}

// cleanup collects teardown steps, run in reverse.
type cleanup struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanup) add(f func()) { c.mu.Lock(); c.fns = append(c.fns, f); c.mu.Unlock() }
func (c *cleanup) run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
}

func (c *cleanup) ns(prefix string) (*ptptest.NS, error) {
	n, err := ptptest.NewNS(prefix)
	if err == nil {
		c.add(func() { n.Close() })
	}
	return n, err
}

func (c *cleanup) pair(subnet int) (*ptptest.NS, *ptptest.NS, error) {
	a, err := c.ns("tbba")
	if err != nil {
		return nil, nil, err
	}
	b, err := c.ns("tbbb")
	if err != nil {
		return nil, nil, err
	}
	err = ptptest.Veth(a, "va", fmt.Sprintf("169.254.%d.1/24", subnet), b, "vb", fmt.Sprintf("169.254.%d.2/24", subnet))
	return a, b, err
}

func (c *cleanup) tempDir() (string, error) {
	d, err := os.MkdirTemp("", "tbbench")
	if err == nil {
		c.add(func() { os.RemoveAll(d) })
	}
	return d, err
}

func (c *cleanup) ptp4l(ns *ptptest.NS, iface string, slave bool) (*ptptest.Proc, error) {
	dir, err := c.tempDir()
	if err != nil {
		return nil, err
	}
	opts := ptptest.MasterOptions()
	if slave {
		opts = ptptest.FreeRunningSlaveOptions()
	}
	p, err := ptptest.StartPtp4l(ns, ptptest.Ptp4lConfig{Iface: iface, Dir: dir, Slave: slave, Options: opts})
	if err == nil {
		c.add(p.Stop)
	}
	return p, err
}

func (c *cleanup) port(ns *ptptest.NS, exe string, spec ptptest.HelperSpec) (*ptptest.PortProc, error) {
	p, err := ptptest.StartPort(ns, exe, nil, spec)
	if err == nil {
		c.add(p.Stop)
	}
	return p, err
}

// ptp4lOffsets returns a ptp4l slave's "master offset" values logged at
// or after start.
func ptp4lOffsets(p *ptptest.Proc, start time.Time) []float64 {
	var out []float64
	for _, o := range ptptest.Offsets(p.Lines()) {
		if !o.At.Before(start) {
			out = append(out, o.NS)
		}
	}
	return out
}

// sameStream runs the same-stream setup: one ptp4l master, and behind
// bridge-mode macvlans on the far end of its veth a free-running ptp4l
// slave, a measuring-only ptpd slave and two closed-loop ptpd slaves
// (outlier filter off and on).
func sameStream(c *cleanup, exe string, o options, res *results) error {
	const subnet = 70
	m, err := c.ns("tbbm")
	if err != nil {
		return err
	}
	hub, err := c.ns("tbbh")
	if err != nil {
		return err
	}
	if err := ptptest.Veth(m, "va", fmt.Sprintf("169.254.%d.1/24", subnet), hub, "vb", fmt.Sprintf("169.254.%d.254/24", subnet)); err != nil {
		return err
	}
	slave := func(i int) (*ptptest.NS, error) {
		ns, err := c.ns("tbbs")
		if err != nil {
			return nil, err
		}
		return ns, ptptest.Macvlan(hub, "vb", ns, "mv", fmt.Sprintf("169.254.%d.%d/24", subnet, 10+i))
	}
	if _, err := c.ptp4l(m, "va", false); err != nil {
		return err
	}
	s0, err := slave(0)
	if err != nil {
		return err
	}
	p4, err := c.ptp4l(s0, "mv", true)
	if err != nil {
		return err
	}
	s1, err := slave(1)
	if err != nil {
		return err
	}
	mcfg := ptptest.PortConfig("mv", ptp.ModeSlave)
	mcfg.ClockControl = servo.NoAdjust
	meas, err := c.port(s1, exe, ptptest.HelperSpec{Config: mcfg, SystemClock: true, Samples: true, Report: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	var loops []*ptptest.PortProc
	for i, f := range loopFilters {
		ns, err := slave(2 + i)
		if err != nil {
			return err
		}
		cfg := ptptest.PortConfig("mv", ptp.ModeSlave)
		cfg.NoOutlierFilter = f.off
		cfg.OutlierFilterPlain = f.plain
		pp, err := c.port(ns, exe, ptptest.HelperSpec{
			Config: cfg, VirtualOffset: 500 * time.Microsecond, VirtualPPM: 30,
			Samples: true, Report: 100 * time.Millisecond,
		})
		if err != nil {
			return err
		}
		loops = append(loops, pp)
	}
	time.Sleep(o.settle)
	start := time.Now()
	time.Sleep(o.window)

	res.p4Slave = row{"ptp4l slave (free-running), master offset, 1 a second", summarize(ptp4lOffsets(p4, start))}
	mr := meas.Reports()
	res.measured = mr
	res.ptpdAll = row{"ptpd slave (no-adjust), every offset measured, 16 a second", summarize(samplesIn(mr, start, false, 1))}
	res.ptpdEvery16 = row{"ptpd slave (no-adjust), every 16th offset", summarize(samplesIn(mr, start, false, 16))}
	res.ptpdKept = row{"ptpd slave (no-adjust), offsets the outlier filter kept", summarize(samplesIn(mr, start, true, 1))}
	for i, pp := range loops {
		rs := pp.Reports()
		l := loop{name: loopFilters[i].name, reports: rs}
		l.err = summarize(trueErrors(rs, start))
		l.events = lateEvents(rs, start)
		l.resp = summarize(responses(rs, start, l.events))
		l.base = summarize(responses(rs, start, everySecond(start, o.window)))
		if n := len(rs); n > 0 {
			last := rs[n-1]
			l.freqPPM, l.steps = last.Freq/1000, last.Steps
			for _, r := range rs {
				if !r.At.Before(start) {
					l.outliers = last.Outliers - r.Outliers
					break
				}
			}
			if i == len(loops)-1 {
				res.rssSlaveKiB = last.RSSKiB
			}
		}
		res.loops = append(res.loops, l)
	}
	return nil
}

// masterQuality runs a free-running ptp4l slave of a ptp4l master or of
// a ptpd master (on the host clock, read-only) on a veth pair of its own.
func masterQuality(c *cleanup, exe string, o options, subnet int, ptpdMaster bool) ([]float64, error) {
	m, s, err := c.pair(subnet)
	if err != nil {
		return nil, err
	}
	if ptpdMaster {
		if _, err := c.port(m, exe, ptptest.HelperSpec{
			Config: ptptest.PortConfig("va", ptp.ModeMaster), SystemClock: true, Report: time.Second,
		}); err != nil {
			return nil, err
		}
	} else if _, err := c.ptp4l(m, "va", false); err != nil {
		return nil, err
	}
	sl, err := c.ptp4l(s, "vb", true)
	if err != nil {
		return nil, err
	}
	time.Sleep(o.settle)
	start := time.Now()
	time.Sleep(o.window)
	return ptp4lOffsets(sl, start), nil
}

func run(o options, log io.Writer) (*results, error) {
	exe, err := ptptest.Executable()
	if err != nil {
		return nil, err
	}
	var c cleanup
	defer c.run()
	res := &results{window: o.window}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	fmt.Fprintf(log, "ptpbench: four setups in parallel, %v settling and a %v window\n", o.settle, o.window)
	wg.Go(func() { errs[0] = sameStream(&c, exe, o, res) })
	wg.Go(func() {
		v, err := masterQuality(&c, exe, o, 71, false)
		res.ofP4, errs[1] = row{"ptp4l slave of a ptp4l master", summarize(v)}, err
	})
	wg.Go(func() {
		v, err := masterQuality(&c, exe, o, 72, true)
		res.ofPtpd, errs[2] = row{"ptp4l slave of a ptpd master", summarize(v)}, err
	})
	// Idle memory: a port alone on a link, listening.
	wg.Go(func() {
		errs[3] = func() error {
			_, s, err := c.pair(73)
			if err != nil {
				return err
			}
			pp, err := c.port(s, exe, ptptest.HelperSpec{Config: ptptest.PortConfig("vb", ptp.ModeSlave), Report: time.Second})
			if err != nil {
				return err
			}
			time.Sleep(o.settle)
			rs := pp.Reports()
			if len(rs) == 0 {
				return errors.New("no reports from the idle port")
			}
			res.rssIdleKiB = rs[len(rs)-1].RSSKiB
			return nil
		}()
	})
	wg.Wait()
	return res, errors.Join(errs...)
}

func (r *results) rows() []row {
	rs := []row{r.p4Slave, r.ptpdAll, r.ptpdEvery16, r.ptpdKept}
	for _, l := range r.loops {
		rs = append(rs, row{l.name, l.err})
	}
	return append(rs, r.ofP4, r.ofPtpd)
}

func header(w io.Writer, what string) {
	fmt.Fprintf(w, "| %s | n | mean | SD | median dev | p95 dev | max dev | RMS | max abs |\n", what)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
}

func line(w io.Writer, r row) {
	s := r.s
	fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
		r.name, s.N, s.Mean, s.SD, s.Med, s.P95, s.Max, s.RMS, s.MaxAbs)
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "All figures in ns over a %v window; dev is |x − median|.\n\n", r.window)
	fmt.Fprintln(w, "Slave measurement noise, one ptp4l master, the slaves on one Sync stream:")
	fmt.Fprintln(w)
	header(w, "slave (offset from master)")
	for _, x := range []row{r.p4Slave, r.ptpdAll, r.ptpdEvery16, r.ptpdKept} {
		line(w, x)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio ptpd / ptp4l | SD | p95 dev |\n|---|---:|---:|")
	for _, x := range []row{r.ptpdAll, r.ptpdEvery16} {
		fmt.Fprintf(w, "| %s | %.2f | %.2f |\n", x.name, x.s.SD/r.p4Slave.s.SD, x.s.P95/r.p4Slave.s.P95)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "ptpd closed loop on the same stream, virtual clock from +500 µs, +30 ppm (mean = link bias):")
	fmt.Fprintln(w)
	header(w, "slave (true error)")
	for _, l := range r.loops {
		line(w, row{l.name, l.err})
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| late-stamped Syncs (≥ %d ns off) | seen | rejected | median move | max move | any 2 s: median move | max move | final freq | steps | discarded |\n", lateThreshold)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, l := range r.loops {
		rej := 0
		for _, e := range l.events {
			if e.Outlier {
				rej++
			}
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.3f ppm | %d | %d |\n",
			l.name, len(l.events), rej, l.resp.Center, l.resp.MaxAbs, l.base.Center, l.base.MaxAbs, l.freqPPM, l.steps, l.outliers)
	}
	fmt.Fprintf(w, "\n(move: the largest |true error − its median| within %v after each late-stamped Sync; \"any 2 s\": the same from each whole second of the window, for comparison)\n\n", responseWindow)
	fmt.Fprintln(w, "Master quality, a free-running ptp4l slave of each master (two veth pairs, at the same time):")
	fmt.Fprintln(w)
	header(w, "master (slave's offset)")
	line(w, r.ofP4)
	line(w, r.ofPtpd)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio ptpd master / ptp4l master | SD | p95 dev |\n|---|---:|---:|")
	fmt.Fprintf(w, "| ptp4l slave's offset | %.2f | %.2f |\n", r.ofPtpd.s.SD/r.ofP4.s.SD, r.ofPtpd.s.P95/r.ofP4.s.P95)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ptpd memory | RSS |\n|---|---:|")
	fmt.Fprintf(w, "| idle port (listening) | %.1f MiB |\n", float64(r.rssIdleKiB)/1024)
	fmt.Fprintf(w, "| port locked as slave | %.1f MiB |\n", float64(r.rssSlaveKiB)/1024)
}

// writeSeries writes the time series behind the tables as CSV: the
// closed-loop slaves' true error every report and every slave's offsets
// as measured, with the outlier filter's verdict.
func (r *results) writeSeries(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("series: %w", err)
	}
	fmt.Fprintln(f, "slave,kind,unix_ns,value_ns,outlier")
	emit := func(name string, rs []ptptest.Report, closed bool) {
		for _, rp := range rs {
			if closed {
				fmt.Fprintf(f, "%s,true_error,%d,%.0f,\n", name, rp.At.UnixNano(), rp.TrueErr)
			}
			for _, s := range rp.Samples {
				fmt.Fprintf(f, "%s,offset,%d,%.0f,%t\n", name, s.At.UnixNano(), s.OffsetNS, s.Outlier)
			}
		}
	}
	emit("measuring", r.measured, false)
	for i, l := range r.loops {
		emit(fmt.Sprintf("loop%d", i), l.reports, true)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("series: %w", err)
	}
	return nil
}
