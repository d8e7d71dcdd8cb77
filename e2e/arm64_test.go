package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// arm64EFI is the UEFI firmware tickbox-image boots the arm64 VM with.
const arm64EFI = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"

// noPHY is what mdiod's ioctl backend answers for a NIC without MII
// access: virtio-net refuses SIOCGMIIPHY.
const noPHY = "no PHY behind the driver: SIOCGMIIPHY: operation not supported"

// TestVMArm64 builds the generic arm64 image with flash.sh --target arm64,
// boots it on qemu's virt machine (UEFI, TCG) beside TestVM and checks it:
// every service runs, breakglass answers, the hub's Kea socket lists its
// commands, mdiod's port A on the virtio NIC answers "no PHY" at once,
// and mctpd on its virtio console port exchanges MCTP with a host mctpd.
func TestVMArm64(t *testing.T) {
	b := bootVM(t, vmTarget{name: "arm64",
		tools: []struct{ name, pkg string }{
			{"qemu-system-aarch64", "qemu-system-arm"}, {"ssh", "openssh-client"},
			{"ssh-keygen", "openssh-client"}, {"mkfs.ext4", "e2fsprogs"}, {"socat", "socat"},
		},
		files: []struct{ path, pkg string }{{arm64EFI, "qemu-efi-aarch64"}},
		// A cold arm64 build beside TestVM's, then a TCG boot of a
		// foreign architecture on a shared 2-core machine.
		build: 8 * time.Minute, check: 8 * time.Minute, mctpTTY: "hvc0"})
	v, ctx := b.v, b.ctx
	t.Logf("arm64: every service running and breakglass up %.1f s after qemu started", time.Since(b.bootStart).Seconds())

	// The image is the arm64 one, as the VM itself says.
	if out, err := v.ssh(ctx, "uname", "-m"); err != nil || strings.TrimSpace(out) != "aarch64" {
		t.Errorf("uname -m: %q (%v), want aarch64", out, err)
	}
	checkListCommands(t, ctx, v)
	checkMdiodNoPHY(t, ctx, v)
	checkMctp(t, ctx, v)

	b.shutdown(t)
	t.Logf("TestVMArm64 took %.1f s in all", time.Since(b.started).Seconds())
}

// checkMdiodNoPHY: on the virtio NIC, mdiod's port A (ioctl:eth0) answers
// a register read over its Kea socket with the driver's "no PHY" at once,
// and hw-info-get names the error beside the simulated port B's ID.
func checkMdiodNoPHY(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	start := time.Now()
	out, err := v.ssh(ctx, "/user/ctl", "kea", "/run/mdiod/control.sock", "mdio_read", `'{"phy":"A","address":1}'`)
	took := time.Since(start)
	var reply struct {
		Result *int
		Text   string
	}
	if jerr := json.Unmarshal([]byte(out), &reply); jerr != nil {
		t.Fatalf("mdio_read on port A: %v (%v)\n%s", jerr, err, out)
	}
	// ctl exits 1 when the answer's result is not 0.
	if err == nil || reply.Result == nil || *reply.Result != 1 || !strings.Contains(reply.Text, "ioctl:eth0: SIOCGMIIREG reg 1: "+noPHY) {
		t.Errorf("mdio_read on port A over the virtio NIC: %v\n%s\nwant result 1 with %q", err, out, noPHY)
	}
	t.Logf("mdiod: port A's read answered in %.1f s (ssh included): %s", took.Seconds(), reply.Text)

	out, err = v.ssh(ctx, "/user/ctl", "kea", "/run/mdiod/control.sock", "hw-info-get")
	if err != nil {
		t.Fatalf("hw-info-get: %v\n%s", err, out)
	}
	var hw struct {
		Arguments struct {
			Ports []struct {
				Port, Backend, Error string
				PhyID                string `json:"phy_id"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &hw); err != nil {
		t.Fatalf("hw-info-get: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, p := range hw.Arguments.Ports {
		switch p.Port {
		case "A":
			got["A"] = p.Backend
			if !strings.Contains(p.Error, noPHY) || p.PhyID != "" {
				t.Errorf("hw-info-get port A: error %q, ID %q; want %q and no ID", p.Error, p.PhyID, noPHY)
			}
		case "B":
			got["B"] = p.Backend + " " + p.PhyID
		}
	}
	if got["A"] != "ioctl:eth0" || got["B"] != "sim:generic100 0x20005c90" {
		t.Errorf("hw-info-get ports: %v\n%s", got, out)
	}
}
