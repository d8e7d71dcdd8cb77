package ntp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// helperEnv carries a helperSpec to the test binary re-run as the NTP
// client inside a network namespace.
const helperEnv = "TICKBOX_NTP_HELPER"

type helperSpec struct {
	Servers       []string
	VirtualOffset time.Duration
	PollInterval  time.Duration
}

// helperReport is one status line of the helper.
type helperReport struct {
	State   string  `json:"state"`
	Offset  float64 `json:"offset_ns"`
	TrueErr float64 `json:"true_err_ns"`
	Parent  string  `json:"parent"`
	Steps   int     `json:"steps_removed"`
	Class   uint8   `json:"clock_class"`
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// helperMain runs one instance on a virtual clock, measuring only,
// printing its status as JSON every 200 ms until SIGTERM.
func helperMain() int {
	var spec helperSpec
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper spec:", err)
		return 2
	}
	vc, err := clock.NewVirtual(spec.VirtualOffset, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := DefaultConfig()
	cfg.Servers = spec.Servers
	cfg.PollInterval = spec.PollInterval
	n, err := New(cfg, vc, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return 0
		case <-t.C:
			st := n.Status()
			_ = enc.Encode(helperReport{State: st.State.String(), Offset: st.OffsetNS, TrueErr: float64(vc.TrueError()),
				Parent: st.ParentID, Steps: st.StepsRemoved, Class: st.ClockClass})
		}
	}
}

// TestChronyd runs Debian's chronyd (never touching the clock: -x) in one
// network namespace and the instance, on a virtual clock 2 ms ahead of
// the system clock chronyd serves, in another, linked by a veth pair.
func TestChronyd(t *testing.T) {
	testutil.NeedRoot(t, "create network namespaces")
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, why)
	}
	chronydPath := testutil.NeedTool(t, "chronyd", "chrony")
	srv, err := ptptest.NewNS("ntps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cli, err := ptptest.NewNS("ntpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	if err := ptptest.Veth(srv, "veth0", "169.254.123.1/24", cli, "veth0", "169.254.123.2/24"); err != nil {
		t.Fatal(err)
	}

	// Everything chronyd writes stays in the test's directory: no
	// command socket (cmdport 0, bindcmdaddress /), pid and drift here.
	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`local stratum 8
allow 169.254.123.0/24
bindaddress 169.254.123.1
cmdport 0
bindcmdaddress /
pidfile %s
driftfile %s
`, filepath.Join(dir, "chronyd.pid"), filepath.Join(dir, "chrony.drift"))), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chronyOut := &testutil.LockedBuffer{}
	chronyd := srv.Command(chronydPath, "-x", "-d", "-u", "root", "-f", conf)
	chronyd.Stdout, chronyd.Stderr = chronyOut, chronyOut
	if err := chronyd.Start(); err != nil {
		t.Fatalf("starting chronyd: %v", err)
	}
	chronydDone := make(chan error, 1)
	go func() { chronydDone <- chronyd.Wait() }()
	stopChronyd := sync.OnceFunc(func() {
		_ = chronyd.Process.Signal(syscall.SIGTERM)
		select {
		case <-chronydDone:
		case <-time.After(10 * time.Second):
			_ = chronyd.Process.Kill()
			<-chronydDone
		}
	})
	t.Cleanup(func() {
		stopChronyd()
		if t.Failed() {
			t.Logf("chronyd output:\n%s", chronyOut.String())
		}
	})

	const offset = 2 * time.Millisecond
	spec, _ := json.Marshal(helperSpec{Servers: []string{"169.254.123.1"}, VirtualOffset: offset, PollInterval: time.Second})
	helper := cli.Command(os.Args[0], "-test.run=^TestChronyd$")
	helper.Env = append(os.Environ(), helperEnv+"="+string(spec))
	helperErr := &testutil.LockedBuffer{}
	helper.Stderr = helperErr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatalf("starting helper: %v", err)
	}
	var mu sync.Mutex
	var reports []helperReport
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r helperReport
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				mu.Lock()
				reports = append(reports, r)
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		_ = helper.Process.Signal(syscall.SIGTERM)
		<-readDone
		_ = helper.Wait()
		if t.Failed() {
			t.Logf("instance log:\n%s", helperErr.String())
		}
	})
	last := func() (helperReport, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(reports) == 0 {
			return helperReport{}, false
		}
		return reports[len(reports)-1], true
	}
	wait := func(what string, limit time.Duration, cond func(helperReport) bool) helperReport {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			if r, ok := last(); ok && cond(r) {
				return r
			}
			if time.Now().After(deadline) {
				r, _ := last()
				t.Fatalf("after %v: want %s; last report %+v", limit, what, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	slave := instance.Slave.String()
	wait("slave", 30*time.Second, func(r helperReport) bool { return r.State == slave })
	// Over several polls the offset is the virtual clock's true error
	// (+2 ms against the system clock chronyd serves) within 1 ms.
	for range 5 {
		r := wait("slave", 5*time.Second, func(r helperReport) bool { return r.State == slave })
		t.Logf("offset %.0f ns, true error %.0f ns", r.Offset, r.TrueErr)
		if !near(r.Offset, time.Duration(r.TrueErr), time.Millisecond) || !near(r.Offset, offset, time.Millisecond) {
			t.Errorf("offset %.0f ns, true error %.0f ns, want %v ±1 ms", r.Offset, r.TrueErr, offset)
		}
		if r.Parent != "169.254.123.1" || r.Steps != 8 || r.Class != ClockClassLocked {
			t.Errorf("parent %q, steps removed %d, class %d; want 169.254.123.1, 8 (local stratum 8), %d", r.Parent, r.Steps, r.Class, ClockClassLocked)
		}
		time.Sleep(time.Second)
	}

	// chronyd gone: the instance has no server and says so.
	stopChronyd()
	r := wait("faulty", 20*time.Second, func(r helperReport) bool { return r.State == instance.Faulty.String() })
	if r.Class != ClockClassFreerunning || r.Parent != "" || r.Offset != 0 {
		t.Errorf("without a server: %+v", r)
	}
	// The helper is still running and reporting.
	if err := helper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("helper died: %v", err)
	}
}
