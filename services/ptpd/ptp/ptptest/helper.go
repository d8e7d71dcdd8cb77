package ptptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// HelperEnv carries a HelperSpec (JSON) to a helper process.
const HelperEnv = "TICKBOX_PTP_HELPER"

// HelperSpec is what the helper process runs.
type HelperSpec struct {
	Config        ptp.Config
	VirtualOffset time.Duration
	VirtualPPM    float64
	Report        time.Duration
	// SystemClock runs the port on the system clock instead of a
	// virtual one: only for masters, which never adjust their clock,
	// and for slaves under clock_control no-adjust, which only
	// measure. The clock is read-only either way: an adjustment fails.
	SystemClock bool
	// Samples adds every offset the port measured since the last
	// report, with the outlier filter's verdict, to each Report.
	Samples bool
}

// Report is one status line of the helper.
type Report struct {
	At      time.Time `json:"at"`
	State   string    `json:"state"`
	TrueErr float64   `json:"true_err_ns"`
	Offset  float64   `json:"offset_ns"`
	Freq    float64   `json:"freq_ppb"`
	Delay   float64   `json:"delay_ns"`
	Steps   int       `json:"steps"`
	// Outliers is how many offsets the outlier filter discarded.
	Outliers uint64   `json:"outliers"`
	Parent   string   `json:"parent"`
	GM       string   `json:"gm"`
	Self     string   `json:"self"`
	InSync   bool     `json:"in_sync"`
	Alarms   []string `json:"alarms"`
	RSSKiB   int      `json:"rss_kib"`
	Bad      uint64   `json:"malformed"`
	// Samples are the offsets measured since the previous report
	// (HelperSpec.Samples).
	Samples []ptp.Sample `json:"samples,omitempty"`
}

// IsHelper reports whether this process was started as a helper.
func IsHelper() bool { return os.Getenv(HelperEnv) != "" }

// HelperMain runs the port the environment describes on a virtual clock,
// printing a Report as JSON every spec.Report on stdout, until SIGTERM.
// It returns the exit code.
func HelperMain() int {
	var spec HelperSpec
	if err := json.Unmarshal([]byte(os.Getenv(HelperEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper spec:", err)
		return 2
	}
	if spec.Report <= 0 {
		spec.Report = 250 * time.Millisecond
	}
	vc, err := clock.NewVirtual(spec.VirtualOffset, spec.VirtualPPM)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var clk clock.Clock = vc
	if spec.SystemClock {
		if spec.Config.Mode != ptp.ModeMaster && spec.Config.ClockControl != servo.NoAdjust {
			fmt.Fprintln(os.Stderr, "the system clock is only for masters and no-adjust slaves here")
			return 2
		}
		sys, err := clock.NewSystem()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		clk = readOnly{sys}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	port, err := ptp.New(spec.Config, clk, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var (
		smu     sync.Mutex
		samples []ptp.Sample
	)
	if spec.Samples {
		port.ObserveSamples(func(s ptp.Sample) {
			smu.Lock()
			samples = append(samples, s)
			smu.Unlock()
		})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- port.Run(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(spec.Report)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return 0
		case err := <-done:
			fmt.Fprintln(os.Stderr, "port:", err)
			return 1
		case <-t.C:
			st := port.Status()
			smu.Lock()
			batch := samples
			samples = nil
			smu.Unlock()
			_ = enc.Encode(Report{
				At: time.Now(), State: st.State.String(), TrueErr: float64(vc.TrueError()),
				Offset: st.OffsetNS, Freq: st.FreqAdjPPB, Delay: st.PathDelayNS, Steps: vc.Steps(), Outliers: st.Outliers,
				Parent: st.ParentID, GM: st.GrandmasterID, Self: port.ClockIdentity(), InSync: st.InSync,
				Alarms: st.Alarms, RSSKiB: rssKiB(), Bad: port.Malformed(), Samples: batch,
			})
		}
	}
}

// readOnly is a clock that refuses every adjustment: the host clock a
// helper runs on is never stepped or slewed, whatever the port asks.
type readOnly struct{ clock.Clock }

var errReadOnly = errors.New("read-only clock: the host clock is never adjusted here")

func (readOnly) AdjFreqPPB(float64) error { return errReadOnly }
func (readOnly) Step(time.Duration) error { return errReadOnly }

// rssKiB reads this process's resident set size.
func rssKiB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return n
		}
	}
	return 0
}

// PortProc is a running helper.
type PortProc struct {
	*Proc
	mu      sync.Mutex
	reports []Report
	stderr  []string
}

// StartPort starts exe (this program, resolved before the call: inside
// "ip netns exec", /proc/self/exe is ip) in ns as a helper with args.
func StartPort(ns *NS, exe string, args []string, spec HelperSpec) (*PortProc, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := ns.Command(exe, args...)
	cmd.Env = append(os.Environ(), HelperEnv+"="+string(js))
	pp := &PortProc{}
	p, err := startProc(cmd, func(line string) {
		var r Report
		pp.mu.Lock()
		defer pp.mu.Unlock()
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &r) == nil {
			pp.reports = append(pp.reports, r)
			return
		}
		if len(pp.stderr) < 10000 {
			pp.stderr = append(pp.stderr, line)
		}
	})
	if err != nil {
		return nil, err
	}
	pp.Proc = p
	return pp, nil
}

// Reports returns the reports so far.
func (p *PortProc) Reports() []Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Report(nil), p.reports...)
}

// Log returns the helper's non-report output (its log).
func (p *PortProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "\n")
}

// PortConfig is the port configuration the interop runs use: software
// timestamps and the same intervals as MasterOptions.
func PortConfig(iface string, mode ptp.Mode) ptp.Config {
	c := ptp.DefaultConfig()
	c.Name = "ptp1"
	c.Interface = iface
	c.Mode = mode
	c.Timestamping = ptp.TimestampingSoftware
	c.SyncInterval = -4
	c.DelayReqInterval = -4
	c.AnnounceInterval = -2
	return c
}

// PTP4LID turns an sfptpd-form identity ("0011:22ff:fe33:4455") into
// linuxptp's ("001122.fffe.334455").
func PTP4LID(s string) string {
	h := strings.ReplaceAll(s, ":", "")
	if len(h) != 16 {
		return s
	}
	return h[:6] + "." + h[6:10] + "." + h[10:]
}

// MACID turns a MAC address ("aa:bb:cc:dd:ee:ff") into the sfptpd-form
// clock identity derived from it ("aabb:ccff:fedd:eeff").
func MACID(mac string) string {
	h := strings.ReplaceAll(strings.TrimSpace(mac), ":", "")
	if len(h) != 12 {
		return ""
	}
	h = h[:6] + "fffe" + h[6:]
	return h[0:4] + ":" + h[4:8] + ":" + h[8:12] + ":" + h[12:16]
}

// Executable returns this program's path, for StartPort.
func Executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath(exe); err != nil {
		return "", err
	}
	return exe, nil
}
