// Package testdaemon runs tickbox's daemons as real processes in tests:
//
//   - Build and BuildInto compile daemons into a directory;
//   - Start runs one, killed when the test ends, its output logged on
//     failure; Proc.Stop ends it with SIGTERM;
//   - WaitKea waits until a daemon answers status-get on its Kea socket.
package testdaemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// Packages are the daemons' import paths by program name.
var Packages = map[string]string{
	"ptpd":      "github.com/tickbox-fw/tickbox/services/ptpd/cmd/ptpd",
	"mctpd":     "github.com/tickbox-fw/tickbox/services/mctpd/cmd/mctpd",
	"mdiod":     "github.com/tickbox-fw/tickbox/services/mdiod/cmd/mdiod",
	"appliance": "github.com/tickbox-fw/tickbox/appliance",
	"ctl":       "github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl",
}

// BuildInto builds the named daemons into dir, in parallel, and returns
// their paths by name.
func BuildInto(dir string, names ...string) (map[string]string, error) {
	out := map[string]string{}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for _, n := range names {
		pkg, ok := Packages[n]
		if !ok {
			return nil, fmt.Errorf("no daemon %q", n)
		}
		bin := filepath.Join(dir, n)
		out[n] = bin
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("go build %s: %v\n%s", n, err, b))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// Build builds the named daemons into a directory of the test's.
func Build(t testing.TB, names ...string) map[string]string {
	t.Helper()
	bins, err := BuildInto(t.TempDir(), names...)
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

// Proc is a running daemon.
type Proc struct {
	Name string
	Out  *testutil.LockedBuffer
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs argv, killed at the end of the test if still running; its
// output is logged when the test failed.
func Start(t testing.TB, name string, argv ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Out: &testutil.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
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
			t.Logf("%s output:\n%s", name, tail(p.Out.String(), 40))
		}
	})
	return p
}

// Stop ends the daemon with SIGTERM and waits for it.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop\n%s", p.Name, p.Out)
	}
}

// WaitKea waits until the daemon answers status-get on its Kea socket,
// and fails the test if it exits first.
func WaitKea(t testing.TB, p *Proc, path string) {
	t.Helper()
	testutil.WaitFor(t, p.Name+" answering on "+path, 30*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.Name, p.err, p.Out)
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
