package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// The daemons' packages, relative to this one.
var daemonPkgs = map[string]string{
	"ptpd":      "../../ptpd/cmd/ptpd",
	"mctpd":     "../../mctpd/cmd/mctpd",
	"mdiod":     "../../mdiod/cmd/mdiod",
	"appliance": "../../../appliance",
}

// buildDaemons builds the named daemons into a temporary directory and
// returns their paths.
func buildDaemons(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for _, n := range names {
		bin := filepath.Join(dir, n)
		out[n] = bin
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := exec.Command("go", "build", "-o", bin, daemonPkgs[n]).CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("go build %s: %v\n%s", n, err, b))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	return out
}

// proc is a running daemon.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testutil.LockedBuffer
	done chan struct{}
	err  error
}

// startProc runs argv, killed at the end of the test if still running.
func startProc(t *testing.T, name string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testutil.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out.String(), 40))
		}
	})
	return p
}

// stop ends the daemon with SIGTERM and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop\n%s", p.name, p.out)
	}
}

// waitKea waits until the daemon answers status-get on its Kea socket.
func waitKea(t *testing.T, p *proc, path string) {
	t.Helper()
	testutil.WaitFor(t, p.name+" answering on "+path, 30*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := kea.Call(ctx, path, []byte(`{"command":"status-get"}`))
		var r struct{ Result int }
		return err == nil && json.Unmarshal(b, &r) == nil && r.Result == 0
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newHub makes a hub over the given service sockets, in order.
func newHub(t *testing.T, sockets [][2]string) *hub.Hub {
	t.Helper()
	cs := map[string]any{}
	var order []string
	for _, s := range sockets {
		cs[s[0]] = map[string]any{"socket-type": "unix", "socket-name": s[1]}
		order = append(order, s[0])
	}
	// The file keeps the services' order: write the object by hand.
	var b strings.Builder
	b.WriteString(`{"Control-agent": {"control-sockets": {`)
	for i, name := range order {
		if i > 0 {
			b.WriteString(", ")
		}
		v, _ := json.Marshal(cs[name])
		fmt.Fprintf(&b, "%q: %s", name, v)
	}
	b.WriteString(`}}}`)
	cfg, err := hub.ParseConfig([]byte(b.String()))
	if err != nil {
		t.Fatalf("hub config %s: %v", b.String(), err)
	}
	return hub.New(cfg, slog.New(slog.DiscardHandler))
}

// startMdiod runs mdiod on two simulated PHYs: A (a Marvell 88E1512
// with its link down) and B (a generic 100 Mbit/s PHY with its link up).
func startMdiod(t *testing.T, bin, sock string) *proc {
	t.Helper()
	p := startProc(t, "mdiod", bin, "-port", "A=sim:88e1512", "-port", "B=sim:generic100,link=up",
		"-kea", sock, "-ipc-server", "", "-console", "", "-hotplug", "")
	waitKea(t, p, sock)
	return p
}

// startMctpd runs mctpd with the null binding, its demux on a unique
// abstract socket.
func startMctpd(t *testing.T, bin, dir string) (*proc, string) {
	t.Helper()
	sock := filepath.Join(dir, "mctpd.sock")
	p := startProc(t, "mctpd", bin, "-demux", "tbweb-"+filepath.Base(dir), "-tagged-demux", "", "-kea", sock, "-state", filepath.Join(dir, "mctpd-state"), "null")
	waitKea(t, p, sock)
	return p, sock
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
