package web

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tickbox-fw/tickbox/internal/testdaemon"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

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
func startMdiod(t *testing.T, bin, sock string) *testdaemon.Proc {
	t.Helper()
	p := testdaemon.Start(t, "mdiod", bin, "-port", "A=sim:88e1512", "-port", "B=sim:generic100,link=up",
		"-kea", sock, "-ipc-server", "", "-console", "", "-hotplug", "")
	testdaemon.WaitKea(t, p, sock)
	return p
}

// startMctpd runs mctpd with the null binding, its demux on a unique
// abstract socket.
func startMctpd(t *testing.T, bin, dir string) (*testdaemon.Proc, string) {
	t.Helper()
	sock := filepath.Join(dir, "mctpd.sock")
	p := testdaemon.Start(t, "mctpd", bin, "-demux", "tbweb-"+filepath.Base(dir), "-tagged-demux", "", "-kea", sock, "-state", filepath.Join(dir, "mctpd-state"), "null")
	testdaemon.WaitKea(t, p, sock)
	return p, sock
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
