package miiioctl

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Spec
		name    string
		wantErr string
	}{
		{in: "eth0", want: Spec{Interface: "eth0"}, name: "ioctl:eth0"},
		{in: "eth0:1", want: Spec{Interface: "eth0", Addr: 1, FixedAddr: true}, name: "ioctl:eth0:1"},
		{in: "eth0:0", want: Spec{Interface: "eth0", FixedAddr: true}, name: "ioctl:eth0:0"},
		{in: "enp0s31f6:031", want: Spec{Interface: "enp0s31f6", Addr: 31, FixedAddr: true}, name: "ioctl:enp0s31f6:31"},
		{in: "abcdefghijklmno", want: Spec{Interface: "abcdefghijklmno"}, name: "ioctl:abcdefghijklmno"},
		{in: "", wantErr: "empty interface name"},
		{in: ":1", wantErr: "empty interface name"},
		{in: "eth0:", wantErr: "empty PHY address"},
		{in: "eth0:32", wantErr: `PHY address "32" is not a number in 0..31`},
		{in: "eth0:-1", wantErr: "not a number"},
		{in: "eth0:+1", wantErr: "not a number"},
		{in: "eth0:1:2", wantErr: "not a number"},
		{in: "eth0:0x1", wantErr: "not a number"},
		{in: "abcdefghijklmnop", wantErr: "longer than 15 bytes"},
		{in: "eth 0", wantErr: "contains"},
		{in: "a/b", wantErr: "contains"},
		{in: "..", wantErr: "invalid interface name"},
	} {
		got, err := ParseSpec(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSpec(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.name {
			t.Errorf("ParseSpec(%q) = %+v (%q), %v; want %+v (%q)", tc.in, got, got.String(), err, tc.want, tc.name)
		}
	}
}

// TestRequestEncoding pins the bytes handed to the kernel: the name, then
// struct mii_ioctl_data at the start of the ifr_ifru union.
func TestRequestEncoding(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("expected bytes are written for little-endian hosts")
	}
	if want := map[string]uintptr{"amd64": 40, "arm64": 40, "386": 32, "arm": 32}[runtime.GOARCH]; want != 0 && ifreqSize != want {
		t.Fatalf("sizeof(struct ifreq) = %d on %s, want %d", ifreqSize, runtime.GOARCH, want)
	}
	name := func(s string) string { return hex.EncodeToString(append([]byte(s), make([]byte, 16-len(s))...)) }
	for _, tc := range []struct {
		what           string
		iface          string
		id, reg, val   uint16
		wantMIIHex     string // phy_id reg_num val_in val_out, little-endian
		wantPhyIDOfC45 bool
	}{
		{what: "c22 read phy 1 reg 1", iface: "eth0", id: 1, reg: 1, wantMIIHex: "0100" + "0100" + "0000" + "0000"},
		{what: "c22 write phy 3 reg 9", iface: "enp0s3", id: 3, reg: 9, val: 0x0300, wantMIIHex: "0300" + "0900" + "0003" + "0000"},
		{what: "c22 read phy 31 reg 31", iface: "abcdefghijklmno", id: 31, reg: 31, wantMIIHex: "1f00" + "1f00" + "0000" + "0000"},
		// MDIO_PHY_ID_C45 | 2<<5 | 7 = 0x8047, register 0x003c.
		{what: "c45 read prtad 2 devad 7 reg 0x3c", iface: "eth1", id: c45PhyID(2, 7), reg: 0x3c, wantMIIHex: "4780" + "3c00" + "0000" + "0000"},
		// 0x8000 | 31<<5 | 31 = 0x83ff, register 0xa000, value 0xbeef.
		{what: "c45 write prtad 31 devad 31 reg 0xa000", iface: "eth1", id: c45PhyID(31, 31), reg: 0xa000, val: 0xbeef, wantMIIHex: "ff83" + "00a0" + "efbe" + "0000"},
	} {
		r := miiRequest(tc.iface, tc.id, tc.reg, tc.val)
		want := name(tc.iface) + tc.wantMIIHex + strings.Repeat("00", int(ifreqSize)-24)
		if got := hex.EncodeToString(r[:]); got != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.what, got, want)
		}
		if r[15] != 0 {
			t.Errorf("%s: name not NUL-terminated", tc.what)
		}
	}
	// The C45 encoding keeps prtad and devad in their fields.
	for prtad := range uint8(32) {
		for devad := range uint8(32) {
			id := c45PhyID(prtad, devad)
			if id&phyIDC45 == 0 || uint8(id&phyIDPrtad>>5) != prtad || uint8(id&phyIDDevad) != devad || id&^0x83ff != 0 {
				t.Fatalf("c45PhyID(%d, %d) = %#04x", prtad, devad, id)
			}
		}
	}
	// val_out is read from the reply.
	r := miiRequest("eth0", 1, 2, 0)
	copy(r[offValOut:], []byte{0x41, 0x01})
	if r.valOut() != 0x0141 {
		t.Errorf("valOut = %#04x, want 0x0141", r.valOut())
	}
}

// TestLoopback: lo has no MII, and the driver's refusal is kept verbatim.
func TestLoopback(t *testing.T) {
	testutil.NeedRoot(t, "use the MII ioctls (CAP_NET_ADMIN)")
	_, err := Open("lo")
	if err == nil || !errors.Is(err, unix.EOPNOTSUPP) || !strings.HasPrefix(err.Error(), "ioctl:lo: SIOCGMIIPHY: ") {
		t.Fatalf("Open(lo) = %v, want ioctl:lo: SIOCGMIIPHY: operation not supported", err)
	}
	p, err := Open("lo:1")
	if err != nil {
		t.Fatalf("Open(lo:1): %v", err)
	}
	defer p.Close()
	if p.Name() != "ioctl:lo:1" || p.Interface() != "lo" || p.Addr() != 1 {
		t.Errorf("Name %q Interface %q Addr %d", p.Name(), p.Interface(), p.Addr())
	}
	for _, tc := range []struct {
		op   func() error
		want string
	}{
		{func() error { _, err := p.Read(1); return err }, "ioctl:lo: SIOCGMIIREG reg 1: operation not supported"},
		{func() error { return p.Write(0, 0x8000) }, "ioctl:lo: SIOCSMIIREG reg 0: operation not supported"},
		{func() error { _, err := p.ReadC45(1, 7); return err }, "ioctl:lo: SIOCGMIIREG devad 1 reg 7: operation not supported"},
		{func() error { return p.WriteC45(3, 0x20, 1) }, "ioctl:lo: SIOCSMIIREG devad 3 reg 32: operation not supported"},
		{func() error { _, err := p.Read(32); return err }, "ioctl:lo: SIOCGMIIREG reg 32: register out of range 0..31"},
		{func() error { return p.Write(40, 0) }, "ioctl:lo: SIOCSMIIREG reg 40: register out of range 0..31"},
		{func() error { _, err := p.ReadC45(32, 0); return err }, "devad out of range 0..31"},
		{func() error { return p.WriteC45(255, 0, 0) }, "devad out of range 0..31"},
	} {
		if err := tc.op(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(1); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v, want os.ErrClosed", err)
	}
	if err := p.Attach(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Attach after Close = %v, want os.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestMissingInterface(t *testing.T) {
	testutil.NeedRoot(t, "use the MII ioctls (CAP_NET_ADMIN)")
	for _, tc := range []struct{ params, want string }{
		{"tbnope0", "ioctl:tbnope0: SIOCGIFINDEX: no such device"},
		{"tbnope0:1", "ioctl:tbnope0: SIOCGIFINDEX: no such device"},
	} {
		p, err := Open(tc.params)
		if err == nil {
			p.Close()
			t.Fatalf("Open(%q) succeeded", tc.params)
		}
		if err.Error() != tc.want || !errors.Is(err, unix.ENODEV) {
			t.Errorf("Open(%q) = %v, want %q", tc.params, err, tc.want)
		}
	}
}

// TestOpenDetachedSpec: OpenDetached refuses only what cannot work at all
// (a bad spec); a missing interface gives a detached PHY whose requests
// fail fast with ErrDetached. Creating the socket needs no privilege.
func TestOpenDetachedSpec(t *testing.T) {
	for _, tc := range []struct{ params, wantErr string }{
		{"", "empty interface name"},
		{"eth0:32", "not a number in 0..31"},
		{"a/b", "contains"},
	} {
		if p, err := OpenDetached(tc.params); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			if p != nil {
				p.Close()
			}
			t.Errorf("OpenDetached(%q) = %v, want an error containing %q", tc.params, err, tc.wantErr)
		}
	}
	p, err := OpenDetached("tbnope0:1")
	if err != nil {
		t.Fatalf("OpenDetached(tbnope0:1): %v", err)
	}
	defer p.Close()
	if p.Attached() || p.Name() != "ioctl:tbnope0:1" || p.Interface() != "tbnope0" {
		t.Errorf("Attached %v Name %q Interface %q", p.Attached(), p.Name(), p.Interface())
	}
	for _, tc := range []struct {
		op   func() error
		want string
	}{
		{func() error { _, err := p.Read(1); return err }, "ioctl:tbnope0: SIOCGMIIREG reg 1: interface is gone"},
		{func() error { return p.Write(0, 0x8000) }, "ioctl:tbnope0: SIOCSMIIREG reg 0: interface is gone"},
		{func() error { _, err := p.ReadC45(1, 7); return err }, "ioctl:tbnope0: SIOCGMIIREG devad 1 reg 7: interface is gone"},
		{func() error { return p.WriteC45(3, 0x20, 1) }, "ioctl:tbnope0: SIOCSMIIREG devad 3 reg 32: interface is gone"},
	} {
		if err := tc.op(); !errors.Is(err, mdio.ErrDetached) || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Attached() {
		t.Error("Attached after Close")
	}
	if err := p.Attach(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Attach after Close = %v, want os.ErrClosed", err)
	}
}

// TestOpenDetachedLate opens a PHY for an interface that does not exist
// yet, as at boot, and attaches it once the interface is created.
func TestOpenDetachedLate(t *testing.T) {
	testutil.NeedRoot(t, "use the MII ioctls (CAP_NET_ADMIN)")
	ns := newNetns(t)
	p, err := openWithInNetns(t, ns, "tbv0:1", OpenDetached)
	if err != nil {
		t.Fatalf("OpenDetached(tbv0:1) without the interface: %v", err)
	}
	defer p.Close()
	read := func() error { _, err := p.Read(mdio.BMSR); return err }
	if err := read(); !errors.Is(err, mdio.ErrDetached) {
		t.Fatalf("Read before the interface exists = %v, want ErrDetached", err)
	}
	if err := p.Attach(); !errors.Is(err, unix.ENODEV) || err.Error() != "ioctl:tbv0: SIOCGIFINDEX: no such device" || p.Attached() {
		t.Fatalf("Attach without the interface = %v (attached %v), want ENODEV", err, p.Attached())
	}
	ip(t, "-n", ns, "link", "add", "tbv0", "type", "veth", "peer", "name", "tbv1")
	if err := p.Attach(); err != nil || !p.Attached() {
		t.Fatalf("Attach after the interface appeared = %v (attached %v)", err, p.Attached())
	}
	// Now the driver answers: veth has no MII.
	if err := read(); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("Read after Attach = %v, want the driver's EOPNOTSUPP", err)
	}
	p.Detach()
	if p.Attached() {
		t.Error("Attached after Detach")
	}
	// Without a fixed address the driver is asked at Attach, and veth
	// refuses: the PHY stays detached.
	q, err := openWithInNetns(t, ns, "tbv0", OpenDetached)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Attach(); !errors.Is(err, unix.EOPNOTSUPP) || q.Attached() {
		t.Errorf("Attach(tbv0) = %v (attached %v), want SIOCGMIIPHY's EOPNOTSUPP and detached", err, q.Attached())
	}
	// Its requests then say that the interface has no PHY, with the
	// driver's answer, not that the interface is gone (as a virtio-net
	// NIC's do: it has no MII either).
	for _, tc := range []struct {
		op   func() error
		want string
	}{
		{func() error { _, err := q.Read(mdio.BMSR); return err }, "ioctl:tbv0: SIOCGMIIREG reg 1: no PHY behind the driver: SIOCGMIIPHY: operation not supported"},
		{func() error { return q.Write(0, 0x8000) }, "ioctl:tbv0: SIOCSMIIREG reg 0: no PHY behind the driver: SIOCGMIIPHY: operation not supported"},
		{func() error { _, err := q.ReadC45(1, 7); return err }, "ioctl:tbv0: SIOCGMIIREG devad 1 reg 7: no PHY behind the driver: SIOCGMIIPHY: operation not supported"},
	} {
		err := tc.op()
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrNoPHY) || !errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, mdio.ErrDetached) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	// Once the interface is gone, that is what requests say.
	ip(t, "-n", ns, "link", "del", "tbv0")
	q.Detach()
	if _, err := q.Read(mdio.BMSR); !errors.Is(err, mdio.ErrDetached) || errors.Is(err, ErrNoPHY) {
		t.Errorf("Read after the interface went = %v, want ErrDetached", err)
	}
	if err := q.Attach(); !errors.Is(err, unix.ENODEV) {
		t.Errorf("Attach without the interface = %v, want ENODEV", err)
	}
	if _, err := q.Read(mdio.BMSR); !errors.Is(err, mdio.ErrDetached) || errors.Is(err, ErrNoPHY) {
		t.Errorf("Read after a failed Attach without the interface = %v, want ErrDetached", err)
	}
}

// newNetns creates a network namespace removed when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	testutil.NeedTool(t, "ip", "iproute2")
	var b [3]byte
	_, _ = rand.Read(b[:])
	ns := "tbmii" + hex.EncodeToString(b[:])
	ip(t, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	return ns
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// openInNetns opens params with the ioctl socket created inside the named
// network namespace; the socket keeps resolving names there afterwards.
func openInNetns(t *testing.T, ns, params string) (*PHY, error) {
	t.Helper()
	return openWithInNetns(t, ns, params, Open)
}

// openWithInNetns is openInNetns with the given opener (Open or
// OpenDetached).
func openWithInNetns(t *testing.T, ns, params string, open func(string) (*PHY, error)) (*PHY, error) {
	t.Helper()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns, err)
	}
	p, openErr := open(params)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so it is discarded with this goroutine.
		t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
	return p, openErr
}

// TestVethHotplug removes the link under an open PHY and brings it back:
// each request reports the missing device, Detach fails fast, and after
// the link is recreated Attach reaches the driver again (veth has no MII,
// so its answer is EOPNOTSUPP rather than ENODEV).
func TestVethHotplug(t *testing.T) {
	testutil.NeedRoot(t, "use the MII ioctls (CAP_NET_ADMIN)")
	testutil.NeedTool(t, "ip", "iproute2")
	var b [3]byte
	_, _ = rand.Read(b[:])
	ns := "tbmii" + hex.EncodeToString(b[:])
	ip(t, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	ip(t, "-n", ns, "link", "add", "tbv0", "type", "veth", "peer", "name", "tbv1")

	// veth answers SIOCGMIIPHY with EOPNOTSUPP, so only a fixed address opens.
	if _, err := openInNetns(t, ns, "tbv0"); !errors.Is(err, unix.EOPNOTSUPP) || !strings.HasPrefix(err.Error(), "ioctl:tbv0: SIOCGMIIPHY: ") {
		t.Fatalf("Open(tbv0) = %v, want the driver's EOPNOTSUPP", err)
	}
	p, err := openInNetns(t, ns, "tbv0:1")
	if err != nil {
		t.Fatalf("Open(tbv0:1): %v", err)
	}
	defer p.Close()
	// The socket lives in the namespace: the host has no tbv0.
	if _, err := Open("tbv0:1"); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("Open(tbv0:1) in the host namespace = %v, want ENODEV", err)
	}

	read := func() error { _, err := p.Read(mdio.BMSR); return err }
	if err := read(); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("Read on veth = %v, want the driver's EOPNOTSUPP", err)
	}

	ip(t, "-n", ns, "link", "del", "tbv0")
	for range 2 { // every request, not just the first, reports it
		if err := read(); err == nil || err.Error() != "ioctl:tbv0: SIOCGMIIREG reg 1: no such device" {
			t.Fatalf("Read after removal = %v", err)
		}
	}
	if err := p.WriteC45(1, 0, 0); err == nil || err.Error() != "ioctl:tbv0: SIOCSMIIREG devad 1 reg 0: no such device" {
		t.Fatalf("WriteC45 after removal = %v", err)
	}

	p.Detach()
	if err := read(); !errors.Is(err, mdio.ErrDetached) || err.Error() != "ioctl:tbv0: SIOCGMIIREG reg 1: interface is gone" {
		t.Fatalf("Read after Detach = %v, want ErrDetached", err)
	}
	if err := p.Attach(); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("Attach with the link still gone = %v, want ENODEV", err)
	}
	if err := read(); !errors.Is(err, mdio.ErrDetached) {
		t.Fatalf("Read after a failed Attach = %v, want ErrDetached", err)
	}

	ip(t, "-n", ns, "link", "add", "tbv0", "type", "veth", "peer", "name", "tbv1")
	if err := p.Attach(); err != nil {
		t.Fatalf("Attach after recreation: %v", err)
	}
	if err := read(); !errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, mdio.ErrDetached) {
		t.Fatalf("Read after Attach = %v, want the driver's EOPNOTSUPP again", err)
	}
}
