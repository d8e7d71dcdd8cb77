package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/sim"
)

// carrierPHY is a sim bound to a real interface whose link follows that
// interface's carrier, so that netlink events have something to show.
type carrierPHY struct {
	*sim.PHY
	ifname string
}

func (c *carrierPHY) Interface() string { return c.ifname }
func (c *carrierPHY) Attach() error     { return nil }
func (c *carrierPHY) Detach()           {}
func (c *carrierPHY) Attached() bool    { return true }

func (c *carrierPHY) Read(reg uint8) (uint16, error) {
	b, _ := os.ReadFile("/sys/class/net/" + c.ifname + "/carrier")
	up := strings.TrimSpace(string(b)) == "1"
	c.PHY.SetLink(up, 1000, true)
	return c.PHY.Read(reg)
}

// TestNetlinkCarrier checks that a carrier change on a Hotplug port's
// interface is reported at once, long before the next poll.
func TestNetlinkCarrier(t *testing.T) {
	testutil.NeedRoot(t, "create a veth pair")
	testutil.NeedTool(t, "ip", "iproute2")
	a, b := "tbxmd0", "tbxmd1"
	if out, err := exec.Command("ip", "link", "add", a, "type", "veth", "peer", "name", b).CombinedOutput(); err != nil {
		testutil.Require(t, fmt.Sprintf("cannot create veth: %v %s", err, out))
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", a).Run() })
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	ip("link", "set", a, "up")
	var n notes
	phy := &carrierPHY{PHY: newSim(t, ""), ifname: a}
	m, err := New([2]mdio.PHY{phy}, Options{Poll: time.Hour, Netlink: true, Notify: n.add, Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ip("link", "set", b, "up")
	testutil.WaitFor(t, "link up event", 5*time.Second, func() bool { return n.all() == "PHY A: link up 1000MBit (master)\n" })
	ip("link", "set", b, "down")
	testutil.WaitFor(t, "link down event", 5*time.Second, func() bool {
		return n.all() == "PHY A: link up 1000MBit (master)\nPHY A: link down\n"
	})
}
