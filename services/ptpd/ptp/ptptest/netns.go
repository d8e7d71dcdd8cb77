// Package ptptest runs PTP ports and linuxptp against each other in
// network namespaces: the namespaces and links, ptp4l and pmc, and a
// helper process that runs one port on a virtual clock and reports its
// true error. The interop tests and ptpbench share it.
package ptptest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Available reports why the interop setup cannot run here, or "".
func Available() string {
	if os.Geteuid() != 0 {
		return "needs root for network namespaces"
	}
	for _, bin := range []string{"ip", "ptp4l", "pmc"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + bin); err2 != nil {
				return bin + " not installed (apt-get install iproute2 linuxptp)"
			}
		}
	}
	return ""
}

func bin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return "/usr/sbin/" + name
}

func run(args ...string) error {
	out, err := exec.Command(bin(args[0]), args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// NS is a network namespace made for a test.
type NS struct{ Name string }

// Suffix returns a short random string for unique names.
func Suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewNS creates a namespace (with loopback up).
func NewNS(prefix string) (*NS, error) {
	ns := &NS{Name: prefix + Suffix()}
	if err := run("ip", "netns", "add", ns.Name); err != nil {
		return nil, err
	}
	if err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// Run runs a command inside the namespace.
func (ns *NS) Run(args ...string) error {
	return run(append([]string{"ip", "netns", "exec", ns.Name}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command(bin("ip"), append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Close deletes the namespace (its links go with it).
func (ns *NS) Close() error { return run("ip", "netns", "delete", ns.Name) }

// Veth links namespace a's interface ifA (address addrA, CIDR) with b's
// ifB and brings both up.
func Veth(a *NS, ifA, addrA string, b *NS, ifB, addrB string) error {
	tmpA, tmpB := "tv"+Suffix(), "tv"+Suffix()
	if err := run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
		return err
	}
	err := errors.Join(
		run("ip", "link", "set", tmpA, "netns", a.Name, "name", ifA),
		run("ip", "link", "set", tmpB, "netns", b.Name, "name", ifB),
	)
	if err == nil {
		err = errors.Join(
			a.Run("ip", "addr", "add", addrA, "dev", ifA),
			b.Run("ip", "addr", "add", addrB, "dev", ifB),
			a.Run("ip", "link", "set", ifA, "up"),
			b.Run("ip", "link", "set", ifB, "up"),
		)
	}
	if err != nil {
		_ = run("ip", "link", "delete", tmpA)
	}
	return err
}

// Bridge makes a bridge in namespace hub and one veth per member
// namespace into it: the members share one segment. Member i gets
// interface ifName with address 169.254.<net>.<i+1>/24.
func Bridge(hub *NS, subnet int, ifName string, members ...*NS) error {
	if err := hub.Run("ip", "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	// No multicast snooping: every port must hear every message.
	if err := hub.Run("ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := hub.Run("ip", "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i, m := range members {
		hubIf := fmt.Sprintf("p%d", i)
		if err := Veth(hub, hubIf, fmt.Sprintf("169.254.%d.%d/24", subnet, 200+i), m, ifName, fmt.Sprintf("169.254.%d.%d/24", subnet, i+1)); err != nil {
			return err
		}
		if err := hub.Run("ip", "link", "set", hubIf, "master", "br0"); err != nil {
			return err
		}
	}
	return nil
}

// Macvlan makes a bridge-mode macvlan on hub's interface lower, moves it
// into namespace into as interface name with address addr (CIDR) and
// brings it up. Bridge-mode macvlans on one lower link hear the same
// frames: every multicast message that arrives on lower reaches each of
// them, with the receive timestamp lower's receive path gave it.
func Macvlan(hub *NS, lower string, into *NS, name, addr string) error {
	tmp := "mv" + Suffix()
	if err := hub.Run("ip", "link", "add", "link", lower, "name", tmp, "type", "macvlan", "mode", "bridge"); err != nil {
		return err
	}
	if err := hub.Run("ip", "link", "set", tmp, "netns", into.Name, "name", name); err != nil {
		_ = hub.Run("ip", "link", "delete", tmp)
		return err
	}
	return errors.Join(
		into.Run("ip", "addr", "add", addr, "dev", name),
		into.Run("ip", "link", "set", name, "up"),
	)
}
