package metrics_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testdaemon"
	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// The daemons are built once, on first use, so that the unit tests of
// this package do not wait for them.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func daemonBinaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tickbox-metrics")
		if buildErr != nil {
			return
		}
		_, buildErr = testdaemon.BuildInto(binDir, "ptpd", "mctpd", "mdiod")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// startDaemons starts ptpd (one freerun instance on a virtual clock),
// mctpd (null binding) and mdiod (two simulated PHYs, A with its link up), each serving only
// its Kea socket in a directory of the test's, waits until each
// answers, and returns a hub fronting them.
func startDaemons(t testing.TB) *hub.Hub {
	t.Helper()
	bin := daemonBinaries(t)
	dir := testutil.ShortDir(t)
	ptpdCfg := filepath.Join(dir, "ptpd.cfg")
	cfg := strings.ReplaceAll(`[general]
sync_module freerun fr1
selection_policy manual fr1
control_path DIR/ptpd-control.sock
state_path DIR/ptpd-state
stats_log DIR/ptpd-stats.log
json_stats DIR/ptpd-stats.json
hotplug_detection_mode manual
`, "DIR", dir)
	if err := os.WriteFile(ptpdCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	demux := fmt.Sprintf("@tb-metrics-%d-%d", os.Getpid(), time.Now().UnixNano())
	specs := []struct {
		name string
		args []string
	}{
		// The virtual clock keeps ptpd off the host clock.
		{"ptpd", []string{"-f", ptpdCfg, "-virtual-clock", "500us,30"}},
		{"mctpd", []string{"-e", "8", "-demux", demux, "-tagged-demux", "", "-state", filepath.Join(dir, "mctpd-state"), "null"}},
		{"mdiod", []string{"-ipc-server", "", "-console", "", "-hotplug", "", "-port", "A=sim:88e1512,link=up", "-port", "B=sim:generic100"}},
	}
	hcfg := &hub.Config{Timeout: 10 * time.Second}
	for _, sp := range specs {
		sock := filepath.Join(dir, sp.name+".sock")
		// Flags first: mctpd takes its bindings as the trailing arguments.
		p := testdaemon.Start(t, sp.name, append([]string{filepath.Join(bin, sp.name), "-kea", sock}, sp.args...)...)
		testdaemon.WaitKea(t, p, sock)
		hcfg.Sockets = append(hcfg.Sockets, hub.Socket{Service: sp.name, Type: "unix", Name: sock})
	}
	return hub.New(hcfg, slog.New(slog.DiscardHandler))
}
