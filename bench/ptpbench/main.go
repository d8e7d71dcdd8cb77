// Command ptpbench compares ptpd's PTP port with linuxptp on veth links in
// network namespaces, with software timestamps, and prints a markdown
// table: ptpd's true error as slave of ptp4l, ptp4l's offset as slave of
// ptp4l and of ptpd (both free-running), and ptpd's resident memory.
// It needs root, ip and linuxptp; the host clock is never adjusted.
//
//	go run ./bench/ptpbench [-window 60s]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

func main() {
	if ptptest.IsHelper() {
		os.Exit(ptptest.HelperMain())
	}
	window := flag.Duration("window", 60*time.Second, "measurement window after a 15 s settling time")
	flag.Parse()
	if why := ptptest.Available(); why != "" {
		fmt.Fprintln(os.Stderr, "ptpbench:", why)
		os.Exit(2)
	}
	if err := run(*window); err != nil {
		fmt.Fprintln(os.Stderr, "ptpbench:", err)
		os.Exit(1)
	}
}

const settle = 15 * time.Second

type results struct {
	slaveRMS, slaveMax float64 // ptpd slave of ptp4l: true error
	slaveFreqPPM       float64
	p4RMS, p4Max       float64 // ptp4l slave of ptp4l: offset
	p4dRMS, p4dMax     float64 // ptp4l slave of ptpd: offset
	rssSlaveKiB        int
	rssIdleKiB         int
}

// cleanup collects teardown steps, run in reverse.
type cleanup struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanup) add(f func()) { c.mu.Lock(); c.fns = append(c.fns, f); c.mu.Unlock() }
func (c *cleanup) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
}

func pair(c *cleanup, subnet int) (*ptptest.NS, *ptptest.NS, error) {
	a, err := ptptest.NewNS("tbba")
	if err != nil {
		return nil, nil, err
	}
	c.add(func() { a.Close() })
	b, err := ptptest.NewNS("tbbb")
	if err != nil {
		return nil, nil, err
	}
	c.add(func() { b.Close() })
	err = ptptest.Veth(a, "va", fmt.Sprintf("169.254.%d.1/24", subnet), b, "vb", fmt.Sprintf("169.254.%d.2/24", subnet))
	return a, b, err
}

func tempDir(c *cleanup) (string, error) {
	d, err := os.MkdirTemp("", "tbbench")
	if err == nil {
		c.add(func() { os.RemoveAll(d) })
	}
	return d, err
}

func run(window time.Duration) error {
	exe, err := ptptest.Executable()
	if err != nil {
		return err
	}
	var c cleanup
	defer c.run()
	var res results
	var wg sync.WaitGroup
	errs := make([]error, 4)
	fmt.Fprintf(os.Stderr, "ptpbench: running three setups in parallel for %v\n", settle+window)

	// 1. ptpd slave of ptp4l, virtual clock at +500 µs, +30 ppm.
	wg.Go(func() {
		errs[0] = func() error {
			m, s, err := pair(&c, 60)
			if err != nil {
				return err
			}
			dir, err := tempDir(&c)
			if err != nil {
				return err
			}
			p4, err := ptptest.StartPtp4l(m, ptptest.Ptp4lConfig{Iface: "va", Dir: dir, Options: ptptest.MasterOptions()})
			if err != nil {
				return err
			}
			c.add(p4.Stop)
			pp, err := ptptest.StartPort(s, exe, nil, ptptest.HelperSpec{
				Config: ptptest.PortConfig("vb", ptp.ModeSlave), VirtualOffset: 500 * time.Microsecond, VirtualPPM: 30,
				Report: 100 * time.Millisecond,
			})
			if err != nil {
				return err
			}
			c.add(pp.Stop)
			time.Sleep(settle + window)
			rs := pp.Reports()
			if len(rs) == 0 {
				return errors.New("no reports from the ptpd slave")
			}
			res.slaveRMS, res.slaveMax = ptptest.RMS(ptptest.TrueErrors(rs, window))
			res.slaveFreqPPM = rs[len(rs)-1].Freq / 1000
			res.rssSlaveKiB = rs[len(rs)-1].RSSKiB
			return nil
		}()
	})
	// 2. ptp4l slave of ptp4l, 3. ptp4l slave of ptpd.
	slaveOf := func(idx, subnet int, ptpdMaster bool, rms, mx *float64) {
		errs[idx] = func() error {
			m, s, err := pair(&c, subnet)
			if err != nil {
				return err
			}
			dm, err := tempDir(&c)
			if err != nil {
				return err
			}
			ds, err := tempDir(&c)
			if err != nil {
				return err
			}
			if ptpdMaster {
				pp, err := ptptest.StartPort(m, exe, nil, ptptest.HelperSpec{
					Config: ptptest.PortConfig("va", ptp.ModeMaster), SystemClock: true, Report: time.Second,
				})
				if err != nil {
					return err
				}
				c.add(pp.Stop)
			} else {
				p4, err := ptptest.StartPtp4l(m, ptptest.Ptp4lConfig{Iface: "va", Dir: dm, Options: ptptest.MasterOptions()})
				if err != nil {
					return err
				}
				c.add(p4.Stop)
			}
			sl, err := ptptest.StartPtp4l(s, ptptest.Ptp4lConfig{Iface: "vb", Dir: ds, Slave: true, Options: ptptest.FreeRunningSlaveOptions()})
			if err != nil {
				return err
			}
			c.add(sl.Stop)
			time.Sleep(settle + window)
			var offs []float64
			cut := time.Now().Add(-window)
			for _, o := range ptptest.Offsets(sl.Lines()) {
				if o.At.After(cut) {
					offs = append(offs, o.NS)
				}
			}
			if len(offs) == 0 {
				return errors.New("no ptp4l offsets")
			}
			*rms, *mx = ptptest.RMS(offs)
			return nil
		}()
	}
	wg.Go(func() { slaveOf(1, 61, false, &res.p4RMS, &res.p4Max) })
	wg.Go(func() { slaveOf(2, 62, true, &res.p4dRMS, &res.p4dMax) })
	// 4. Idle memory: a port alone on a link, listening.
	wg.Go(func() {
		errs[3] = func() error {
			_, s, err := pair(&c, 63)
			if err != nil {
				return err
			}
			pp, err := ptptest.StartPort(s, exe, nil, ptptest.HelperSpec{Config: ptptest.PortConfig("vb", ptp.ModeSlave), Report: time.Second})
			if err != nil {
				return err
			}
			c.add(pp.Stop)
			time.Sleep(settle)
			rs := pp.Reports()
			if len(rs) == 0 {
				return errors.New("no reports from the idle port")
			}
			res.rssIdleKiB = rs[len(rs)-1].RSSKiB
			return nil
		}()
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("| measurement (software timestamps, veth, %v window) | RMS (ns) | max (ns) |\n|---|---:|---:|\n", window)
	fmt.Printf("| ptpd slave of ptp4l: true error | %.0f | %.0f |\n", res.slaveRMS, res.slaveMax)
	fmt.Printf("| ptp4l slave of ptp4l: offset (free-running) | %.0f | %.0f |\n", res.p4RMS, res.p4Max)
	fmt.Printf("| ptp4l slave of ptpd: offset (free-running) | %.0f | %.0f |\n", res.p4dRMS, res.p4dMax)
	fmt.Printf("\n| ratio | value | target |\n|---|---:|---|\n")
	fmt.Printf("| ptpd slave error RMS / ptp4l-ptp4l offset RMS | %.2f | ≤ 1 |\n", res.slaveRMS/res.p4RMS)
	fmt.Printf("| ptp4l-of-ptpd offset RMS / ptp4l-of-ptp4l offset RMS | %.2f | |\n", res.p4dRMS/res.p4RMS)
	fmt.Printf("\n| ptpd | value | target |\n|---|---:|---|\n")
	fmt.Printf("| final frequency correction (clock at +30 ppm) | %.3f ppm | -30 ± 2 |\n", res.slaveFreqPPM)
	fmt.Printf("| RSS, idle port (listening) | %.1f MiB | ≤ 12 MiB |\n", float64(res.rssIdleKiB)/1024)
	fmt.Printf("| RSS, port locked as slave | %.1f MiB | |\n", float64(res.rssSlaveKiB)/1024)
	return nil
}
