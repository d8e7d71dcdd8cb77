// Package miiioctl reaches a PHY through the Linux MII ioctls
// (SIOCGMIIPHY, SIOCGMIIREG, SIOCSMIIREG) of the network interface's
// driver: the backend spec "ioctl:IFACE[:PHYADDR]".
//
// The driver does the MDIO access, so this works for any NIC whose driver
// implements the ioctls (e1000, e1000e, igb, r8169, every phylib driver).
// Clause 45 registers use the kernel's MDIO_PHY_ID_C45 phy_id encoding;
// drivers built on phylib honour it, while some older drivers (e1000)
// mask reg_num to five bits and answer with a Clause 22 register.
package miiioctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Prefix is the backend spec prefix this package handles.
const Prefix = "ioctl:"

// Kernel <linux/mdio.h> phy_id encoding of a Clause 45 access.
const (
	phyIDC45      = 0x8000
	phyIDPrtad    = 0x03e0
	phyIDDevad    = 0x001f
	phyIDPrtadShr = 5
)

// Spec is a parsed "IFACE[:PHYADDR]".
type Spec struct {
	Interface string
	// Addr is the PHY address; it is used only when FixedAddr is set,
	// otherwise the driver is asked (SIOCGMIIPHY).
	Addr      uint8
	FixedAddr bool
}

// String is the normalised backend spec: "ioctl:eth0" or "ioctl:eth0:1".
func (s Spec) String() string {
	if s.FixedAddr {
		return Prefix + s.Interface + ":" + strconv.Itoa(int(s.Addr))
	}
	return Prefix + s.Interface
}

// ParseSpec parses what follows "ioctl:" in a backend spec. The interface
// name runs up to the first colon (the kernel refuses colons in device
// names; "eth0:1" style aliases are addresses, not devices).
func ParseSpec(params string) (Spec, error) {
	name, addr, hasAddr := strings.Cut(params, ":")
	if err := validName(name); err != nil {
		return Spec{}, fmt.Errorf("ioctl backend %q: %w", params, err)
	}
	s := Spec{Interface: name}
	if !hasAddr {
		return s, nil
	}
	if addr == "" {
		return Spec{}, fmt.Errorf("ioctl backend %q: empty PHY address after the colon", params)
	}
	n, err := strconv.ParseUint(addr, 10, 8)
	if err != nil || n > mdio.MaxPHYAdr {
		return Spec{}, fmt.Errorf("ioctl backend %q: PHY address %q is not a number in 0..%d", params, addr, mdio.MaxPHYAdr)
	}
	s.Addr, s.FixedAddr = uint8(n), true
	return s, nil
}

// validName applies the kernel's dev_valid_name rules, so that a name
// the kernel could never hold is refused here rather than as ENODEV.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("interface name %q longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	}
	for _, c := range []byte(name) {
		if c == '/' || c == 0 || c == ' ' || (c >= '\t' && c <= '\r') {
			return fmt.Errorf("interface name %q contains %q", name, c)
		}
	}
	return nil
}

// ifreqSize is sizeof(struct ifreq): 16 bytes of name and the union,
// whose size depends on the pointer width (40 on 64-bit, 32 on 32-bit).
const ifreqSize = unsafe.Sizeof(unix.Ifreq{})

// ifreq is a struct ifreq whose ifr_ifru union holds a struct
// mii_ioctl_data (<linux/mii.h>: __u16 phy_id, reg_num, val_in, val_out),
// which is what the kernel's if_mii() reads. Kept as bytes so that the
// encoding is explicit and testable.
type ifreq [ifreqSize]byte

const (
	offPhyID  = unix.IFNAMSIZ
	offRegNum = unix.IFNAMSIZ + 2
	offValIn  = unix.IFNAMSIZ + 4
	offValOut = unix.IFNAMSIZ + 6
)

// miiRequest builds the ifreq of one MII ioctl. The name must be valid
// (ParseSpec checked it), so it always fits with its NUL terminator.
func miiRequest(name string, phyID, reg, valIn uint16) ifreq {
	var r ifreq
	copy(r[:unix.IFNAMSIZ-1], name)
	binary.NativeEndian.PutUint16(r[offPhyID:], phyID)
	binary.NativeEndian.PutUint16(r[offRegNum:], reg)
	binary.NativeEndian.PutUint16(r[offValIn:], valIn)
	return r
}

func (r *ifreq) phyID() uint16  { return binary.NativeEndian.Uint16(r[offPhyID:]) }
func (r *ifreq) valOut() uint16 { return binary.NativeEndian.Uint16(r[offValOut:]) }

// c45PhyID is MDIO_PHY_ID_C45 | prtad << 5 | devad.
func c45PhyID(prtad, devad uint8) uint16 {
	return phyIDC45 | (uint16(prtad)<<phyIDPrtadShr)&phyIDPrtad | uint16(devad)&phyIDDevad
}

func ioctl(fd int, req uint, r *ifreq) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(r)))
	if e != 0 {
		return e
	}
	return nil
}

// PHY is a PHY reached through its interface's driver. It implements
// mdio.PHY and mdio.Hotplug.
type PHY struct {
	spec   Spec
	prefix string // "ioctl:eth0", the start of every error

	mu       sync.Mutex
	fd       int // AF_INET datagram socket; -1 once closed
	addr     uint8
	detached bool
	// noPHY is why the last Attach found the interface but no PHY behind
	// its driver (SIOCGMIIPHY refused, as virtio-net, veth and lo do);
	// nil otherwise. Requests of the detached PHY then say so rather than
	// that the interface is gone.
	noPHY error
}

// ErrNoPHY is returned (wrapped, with the driver's answer) by requests
// of a PHY whose interface exists but whose driver gave no PHY address:
// a NIC without MII access, such as virtio-net.
var ErrNoPHY = errors.New("no PHY behind the driver")

var (
	_ mdio.PHY     = (*PHY)(nil)
	_ mdio.Hotplug = (*PHY)(nil)
)

// Open parses params ("eth0" or "eth0:1"), opens the ioctl socket and
// checks that the interface exists; without a PHY address it asks the
// driver for one (SIOCGMIIPHY).
//
// The socket belongs to the network namespace of the calling thread, and
// every later request and Attach resolves the interface name there.
func Open(params string) (*PHY, error) {
	p, err := OpenDetached(params)
	if err != nil {
		return nil, err
	}
	if err := p.Attach(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// OpenDetached is Open for an interface that may not be there yet, as at
// boot before the NIC driver has registered it: it parses params and
// opens the ioctl socket but does not look for the interface. The PHY
// starts detached, so requests fail with mdio.ErrDetached until Attach
// finds the interface. It fails only for a spec that does not parse or a
// socket that cannot be created.
func OpenDetached(params string) (*PHY, error) {
	spec, err := ParseSpec(params)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s%s: socket: %w", Prefix, spec.Interface, err)
	}
	return &PHY{spec: spec, prefix: Prefix + spec.Interface, fd: fd, detached: true}, nil
}

// resolve checks that the interface exists and returns the PHY address:
// the fixed one or the driver's. Callers hold mu or own p exclusively.
func (p *PHY) resolve() (uint8, error) {
	ifr, err := unix.NewIfreq(p.spec.Interface)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.prefix, err)
	}
	if err := unix.IoctlIfreq(p.fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("%s: SIOCGIFINDEX: %w", p.prefix, err)
	}
	if p.spec.FixedAddr {
		return p.spec.Addr, nil
	}
	r := miiRequest(p.spec.Interface, 0, 0, 0)
	if err := ioctl(p.fd, unix.SIOCGMIIPHY, &r); err != nil {
		p.noPHY = fmt.Errorf("SIOCGMIIPHY: %w", err)
		return 0, fmt.Errorf("%s: %w", p.prefix, p.noPHY)
	}
	// The driver answers with a plain Clause 22 address; mask it so that
	// a driver returning garbage cannot make us send a C45 phy_id.
	return uint8(r.phyID() & 0x1f), nil
}

// Name implements mdio.PHY: "ioctl:eth0" or "ioctl:eth0:1".
func (p *PHY) Name() string { return p.spec.String() }

// Interface implements mdio.Hotplug.
func (p *PHY) Interface() string { return p.spec.Interface }

// Addr returns the PHY address in use (fixed or the driver's answer).
func (p *PHY) Addr() uint8 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Attach implements mdio.Hotplug: it checks the interface exists again
// and, without a fixed address, asks the driver for the PHY address. On
// failure the PHY stays as it was (detached if it was).
func (p *PHY) Attach() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return fmt.Errorf("%s: attach: %w", p.prefix, os.ErrClosed)
	}
	p.noPHY = nil
	addr, err := p.resolve()
	if err != nil {
		return err
	}
	p.addr, p.detached = addr, false
	return nil
}

// Attached implements mdio.Hotplug: whether the last Attach succeeded and
// no Detach came after it.
func (p *PHY) Attached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.detached && p.fd >= 0
}

// Detach implements mdio.Hotplug: requests fail with mdio.ErrDetached
// until Attach succeeds.
func (p *PHY) Detach() {
	p.mu.Lock()
	p.detached, p.noPHY = true, nil
	p.mu.Unlock()
}

// Close implements mdio.PHY.
func (p *PHY) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	if err != nil {
		return fmt.Errorf("%s: close: %w", p.prefix, err)
	}
	return nil
}

// do runs one MII ioctl. what names the register for errors ("reg 1",
// "devad 1 reg 7"); c45 selects the MDIO_PHY_ID_C45 encoding.
func (p *PHY) do(req uint, op, what string, c45 bool, devad uint8, reg, val uint16) (uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.fd < 0:
		return 0, fmt.Errorf("%s: %s %s: %w", p.prefix, op, what, os.ErrClosed)
	case p.detached && p.noPHY != nil:
		return 0, fmt.Errorf("%s: %s %s: %w: %w", p.prefix, op, what, ErrNoPHY, p.noPHY)
	case p.detached:
		return 0, fmt.Errorf("%s: %s %s: %w", p.prefix, op, what, mdio.ErrDetached)
	}
	id := uint16(p.addr)
	if c45 {
		id = c45PhyID(p.addr, devad)
	}
	r := miiRequest(p.spec.Interface, id, reg, val)
	if err := ioctl(p.fd, req, &r); err != nil {
		return 0, fmt.Errorf("%s: %s %s: %w", p.prefix, op, what, err)
	}
	return r.valOut(), nil
}

// Read implements mdio.PHY.
func (p *PHY) Read(reg uint8) (uint16, error) {
	what := "reg " + strconv.Itoa(int(reg))
	if reg > mdio.MaxReg {
		return 0, fmt.Errorf("%s: SIOCGMIIREG %s: register out of range 0..%d", p.prefix, what, mdio.MaxReg)
	}
	return p.do(unix.SIOCGMIIREG, "SIOCGMIIREG", what, false, 0, uint16(reg), 0)
}

// Write implements mdio.PHY.
func (p *PHY) Write(reg uint8, v uint16) error {
	what := "reg " + strconv.Itoa(int(reg))
	if reg > mdio.MaxReg {
		return fmt.Errorf("%s: SIOCSMIIREG %s: register out of range 0..%d", p.prefix, what, mdio.MaxReg)
	}
	_, err := p.do(unix.SIOCSMIIREG, "SIOCSMIIREG", what, false, 0, uint16(reg), v)
	return err
}

// ReadC45 implements mdio.PHY.
func (p *PHY) ReadC45(devad uint8, reg uint16) (uint16, error) {
	what := fmt.Sprintf("devad %d reg %d", devad, reg)
	if devad > mdio.MaxDevad {
		return 0, fmt.Errorf("%s: SIOCGMIIREG %s: devad out of range 0..%d", p.prefix, what, mdio.MaxDevad)
	}
	return p.do(unix.SIOCGMIIREG, "SIOCGMIIREG", what, true, devad, reg, 0)
}

// WriteC45 implements mdio.PHY.
func (p *PHY) WriteC45(devad uint8, reg uint16, v uint16) error {
	what := fmt.Sprintf("devad %d reg %d", devad, reg)
	if devad > mdio.MaxDevad {
		return fmt.Errorf("%s: SIOCSMIIREG %s: devad out of range 0..%d", p.prefix, what, mdio.MaxDevad)
	}
	_, err := p.do(unix.SIOCSMIIREG, "SIOCSMIIREG", what, true, devad, reg, v)
	return err
}
