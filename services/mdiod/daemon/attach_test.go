package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/miiioctl"
)

// TestAttachLate starts mdiod's core with an ioctl port whose interface
// does not exist yet, as at boot before the NIC driver registered it,
// creates the interface and checks that the port gets attached: by
// netlink on its own, or by the agent's interfaceinsert without netlink.
// veth has no MII, so an attached port's reads reach the driver and fail
// with its EOPNOTSUPP instead of "interface is gone".
func TestAttachLate(t *testing.T) {
	testutil.NeedRoot(t, "create a veth pair")
	testutil.NeedTool(t, "ip", "iproute2")
	for _, tc := range []struct {
		name    string
		netlink bool
	}{
		{"netlink", true},
		{"interfaceinsert", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b [3]byte
			_, _ = rand.Read(b[:])
			ifname := "tbla" + hex.EncodeToString(b[:])
			phy, err := miiioctl.OpenDetached(ifname + ":1")
			if err != nil {
				t.Fatal(err)
			}
			m, reg := newRegistry(t, [2]mdio.PHY{phy}, Options{Poll: time.Hour, Netlink: tc.netlink, Logger: newTestLogger(t)})
			defer m.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			read := func() ctl.Result {
				return invoke(t, reg, "mdio_read", map[string]any{"phy": "1", "address": "1"})
			}
			want := "PHY A (ioctl:" + ifname + ":1): ioctl:" + ifname + ": SIOCGMIIREG reg 1: interface is gone"
			if res := read(); res.Code != ctl.Error || res.Text != want {
				t.Fatalf("read before the interface exists: %d %q, want %q", res.Code, res.Text, want)
			}
			if out, err := exec.Command("ip", "link", "add", ifname, "type", "veth", "peer", "name", ifname+"p").CombinedOutput(); err != nil {
				t.Fatalf("ip link add: %v %s", err, out)
			}
			t.Cleanup(func() { exec.Command("ip", "link", "del", ifname).Run() })

			if !tc.netlink {
				// Nothing attaches the port on its own without netlink.
				if res := read(); res.Code != ctl.Error || res.Text != want || phy.Attached() {
					t.Fatalf("read before interfaceinsert: %d %q (attached %v)", res.Code, res.Text, phy.Attached())
				}
				res := invoke(t, reg, "interfaceinsert", map[string]any{"interface": ifname})
				if res.Code != ctl.Success || res.Text != "interfaceinsert: ports [A]" {
					t.Fatalf("interfaceinsert: %d %q", res.Code, res.Text)
				}
			}
			testutil.WaitFor(t, "port A attached", 5*time.Second, phy.Attached)
			res := read()
			if res.Code != ctl.Error || !strings.HasSuffix(res.Text, "SIOCGMIIREG reg 1: operation not supported") {
				t.Errorf("read after attach: %d %q, want the driver's EOPNOTSUPP", res.Code, res.Text)
			}
			if _, err := phy.Read(mdio.BMSR); !errors.Is(err, unix.EOPNOTSUPP) {
				t.Errorf("backend read after attach: %v", err)
			}
		})
	}
}
