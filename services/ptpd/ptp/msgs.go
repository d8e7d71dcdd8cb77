package ptp

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/facebook/time/ptp/protocol"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// DefaultEthersFile is where ptpd2 (and so sfptpd) looks up the host
// name of a master's MAC address for its state-change lines.
const DefaultEthersFile = "/etc/ethers"

// ptpd2StateName is a port state as sfptpd's PTP engine names it in
// its log ("PTP_SLAVE").
func ptpd2StateName(s instance.State) string {
	switch s {
	case instance.Initializing:
		return "PTP_INITIALIZING"
	case instance.Faulty:
		return "PTP_FAULTY"
	case instance.Disabled:
		return "PTP_DISABLED"
	case instance.Listening:
		return "PTP_LISTENING"
	case instance.PreMaster:
		return "PTP_PRE_MASTER"
	case instance.Master:
		return "PTP_MASTER"
	case instance.Passive:
		return "PTP_PASSIVE"
	case instance.Uncalibrated:
		return "PTP_UNCALIBRATED"
	case instance.Slave:
		return "PTP_SLAVE"
	}
	return "UNKNOWN"
}

// ptpd2PortID is a port identity as sfptpd prints it: the clock
// identity, the host name /etc/ethers gives the MAC inside it (or
// "unknown"), and the port number in hex: "0011:22ff:fe33:4455(gm1)/1".
func ptpd2PortID(id protocol.PortIdentity, ethers string) string {
	return fmt.Sprintf("%s(%s)/%x", sfptpdID(id.ClockIdentity), ethersHost(id.ClockIdentity, ethers), id.PortNumber)
}

// ethersHost looks up the MAC of an EUI-64 clock identity (its bytes
// 0-2 and 5-7) in an ethers(5) file; commas in the name become
// underscores, as ptpd2 makes them.
func ethersHost(c protocol.ClockIdentity, path string) string {
	v := uint64(c)
	mac := net.HardwareAddr{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 16), byte(v >> 8), byte(v)}
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if hw, err := net.ParseMAC(fields[0]); err == nil && hw.String() == mac.String() {
			return strings.ReplaceAll(fields[1], ",", "_")
		}
	}
	return "unknown"
}

// stateLine is sfptpd's notice on a port state change:
// "ptp NAME: now in state: PTP_SLAVE, best master: ID(host)/N", with
// " (self)" for a master; p.mu held, p.state already the new state.
func (p *Port) stateLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ptp %s: now in state: %s", p.cfg.Name, ptpd2StateName(p.state))
	switch p.state {
	case instance.Slave, instance.Uncalibrated, instance.Passive:
		if p.parent != nil {
			ethers := p.cfg.EthersFile
			if ethers == "" {
				ethers = DefaultEthersFile
			}
			b.WriteString(", best master: " + ptpd2PortID(p.parent.id, ethers))
		}
	case instance.Master:
		b.WriteString(" (self)")
	}
	return b.String()
}
