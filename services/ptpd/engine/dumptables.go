package engine

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
)

// The dumptables command writes, as sfptpd does, the interface table
// (sfptpd_interface_diagnostics through sfptpd_db_table_dump), the
// clock list (sfptpd_clock_diagnostics) and the clock feed's state (the
// "clocks" thread's answer to the multicast dump request), each line an
// info-level record of the message log: sfptpd prints them as trace at
// level 0, which its logger raises to LOG_INFO.
//
// Deliberate gaps, where ptpd does not hold what sfptpd prints:
//   - sfptpd_multicast_dump_state traces at level 4, so sfptpd prints
//     nothing for it at the default trace level; ptpd has no message
//     multicast groups and prints nothing either.
//   - ptpd has no clock feed thread sampling PHCs, so the clock feed
//     dump lists no active and no inactive sources.
//   - ptpd does not choose a PHC-to-system comparison method per clock;
//     the "phc diff method" column shows "none", sfptpd's name for no
//     method.
//   - A NIC's PHC index is known only from the clock names the sync
//     instances report ("phc0(eth0/eth1)"); other interfaces show clock
//     -1, nic -1 and no "ptp" mark, as sfptpd shows an interface without
//     a PHC.
//   - The "virtual" clock ptpd may run on has no counterpart in sfptpd;
//     it is listed after the system clock in the system clock's layout
//     with type "virtual" (any other non-PHC clock name gets "other").
//   - sfptpd does not list sync instances in this dump (its ranked
//     instance table goes to the sync-instances state file only), so
//     ptpd does not either.

// DumpTables writes sfptpd's dumptables output to w and, line by line,
// to the message log at info level. The interfaces come from the
// kernel; a failure to list them is logged and the interface table is
// dumped empty.
func (e *Engine) DumpTables(w io.Writer) {
	e.dumpTables(w, SystemInterfaces)
}

// dumpTables is DumpTables with the interface lister injected.
func (e *Engine) dumpTables(w io.Writer, list InterfaceLister) {
	intfs, err := list()
	if err != nil {
		e.log.Error("dumptables: listing interfaces failed", "err", err)
		intfs = nil
	}
	e.mu.Lock()
	in := dumpInput{
		interfaces: intfs,
		clocks:     e.clockNamesLocked(),
		noAdjust:   e.g.ClockControl == config.ClockNoAdjust,
		readonly:   append([]string(nil), e.g.ClockReadonly...),
	}
	e.mu.Unlock()
	lines := renderDumpTables(in)
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
		e.log.Info(l)
	}
	io.WriteString(w, b.String())
}

// dumpInput is what the dump shows.
type dumpInput struct {
	interfaces []Interface
	// clocks are the long names of the clocks in use ("system",
	// "virtual", "phc0(eth0/eth1)").
	clocks []string
	// noAdjust is clock_control no-adjust: every clock is read-only.
	noAdjust bool
	// readonly is clock_readonly.
	readonly []string
}

// dumpClock is a PHC clock as parsed from its long name.
type dumpClock struct {
	long, short string
	phc         int
	intfs       []string
	nic         int
	class       string
}

var phcName = regexp.MustCompile(`^phc([0-9]+)\((.*)\)$`)

// parsePHC splits "phc0(eth0/eth1)", sfptpd's default long clock name
// ("phc%P(%I)"), into its PHC index and interfaces.
func parsePHC(long string) (int, []string, bool) {
	m := phcName.FindStringSubmatch(long)
	if m == nil {
		return 0, nil, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, nil, false
	}
	var intfs []string
	if m[2] != "" {
		intfs = strings.Split(m[2], "/")
	}
	return n, intfs, true
}

// renderDumpTables returns the lines of the dump in sfptpd's order.
func renderDumpTables(in dumpInput) []string {
	intfs := append([]Interface(nil), in.interfaces...)
	sort.SliceStable(intfs, func(i, j int) bool { return intfs[i].Index < intfs[j].Index })

	// PHC clocks and which PHC each interface belongs to.
	var phcs []*dumpClock
	var others []string
	phcOf := map[string]int{}
	for _, c := range in.clocks {
		if c == "system" {
			continue
		}
		n, list, ok := parsePHC(c)
		if !ok {
			others = append(others, c)
			continue
		}
		phcs = append(phcs, &dumpClock{long: c, short: "phc" + strconv.Itoa(n), phc: n, intfs: list, nic: -1, class: "non-sfc"})
		for _, i := range list {
			if _, dup := phcOf[i]; !dup {
				phcOf[i] = n
			}
		}
	}

	// sfptpd numbers NICs in discovery order, one id per PHC, as
	// interface_assign_nic_id does; discovery follows the link table,
	// which is in interface index order.
	nicOf := map[int]int{}
	next := 0
	for _, it := range intfs {
		p, ok := phcOf[it.Name]
		if !ok {
			continue
		}
		if _, seen := nicOf[p]; !seen {
			nicOf[p] = next
			next++
		}
	}
	sort.SliceStable(phcs, func(i, j int) bool { return phcs[i].phc < phcs[j].phc })
	for _, c := range phcs {
		if _, seen := nicOf[c.phc]; !seen {
			nicOf[c.phc] = next
			next++
		}
		c.nic = nicOf[c.phc]
	}
	// sfptpd creates the clocks in NIC id order.
	sort.SliceStable(phcs, func(i, j int) bool { return phcs[i].nic < phcs[j].nic })
	classOf := map[string]string{}
	for _, it := range intfs {
		classOf[it.Name] = it.Class
	}
	for _, c := range phcs {
		if len(c.intfs) > 0 && classOf[c.intfs[0]] != "" {
			c.class = classOf[c.intfs[0]]
		}
	}

	var out []string
	out = append(out, interfaceTable(intfs, phcOf, nicOf)...)
	out = append(out, clockList(in, phcs, others, intfs)...)
	out = append(out, clockFeedState()...)
	return out
}

// interfaceTable follows sfptpd_interface_diagnostics(0): a
// sfptpd_db_table_dump of the live interfaces ordered by if_index, with
// every field of the interface table. Each column is as wide as its
// widest value or title; titles and values are right-aligned, as the
// table's "%*s"/"%*d" print functions make them.
func interfaceTable(intfs []Interface, phcOf map[string]int, nicOf map[int]int) []string {
	titles := []string{"if_index", "name", "mac", "clock", "nic", "deleted", "ptp", "type", "bus_addr_nic"}
	rows := make([][]string, 0, len(intfs))
	for _, it := range intfs {
		phc, nic := -1, -1
		if p, ok := phcOf[it.Name]; ok {
			phc, nic = p, nicOf[p]
		}
		ptp := ""
		if nic != -1 {
			ptp = "ptp"
		}
		rows = append(rows, []string{
			strconv.Itoa(it.Index), it.Name, it.MAC, strconv.Itoa(phc), strconv.Itoa(nic),
			"", ptp, it.Type, busAddrNIC(it.BusAddr),
		})
	}
	widths := make([]int, len(titles))
	for i, t := range titles {
		widths[i] = len(t)
		for _, r := range rows {
			widths[i] = max(widths[i], len(r[i]))
		}
	}
	line := func(cells []string) string {
		var b strings.Builder
		for i, c := range cells {
			fmt.Fprintf(&b, "| %*s ", widths[i], c)
		}
		b.WriteString("|")
		return b.String()
	}
	var rule strings.Builder
	for i, w := range widths {
		if i == 0 {
			rule.WriteByte('|')
		} else {
			rule.WriteByte('+')
		}
		rule.WriteString(strings.Repeat("-", w+2))
	}
	rule.WriteByte('|')

	out := []string{"dump of table interfaces, 1 search keys, 1 sort keys", line(titles), rule.String()}
	for _, r := range rows {
		out = append(out, line(r))
	}
	return out
}

var busAddrPattern = regexp.MustCompile(`^([[:xdigit:]:]{8,}).[[:xdigit:]]+$`)

// busAddrNIC is the part of a bus address naming the NIC, without the
// PCI function, as interface_assign_nic_id extracts it; an address not
// of that form is kept whole.
func busAddrNIC(addr string) string {
	if m := busAddrPattern.FindStringSubmatch(addr); m != nil {
		return m[1]
	}
	return addr
}

// clockList follows sfptpd_clock_diagnostics(0) (clock_dump_list with
// title "requested"): NIC clocks newest first, as sfptpd prepends each
// new one to its list, then the system clock it created first. phcs is
// in creation (NIC id) order.
func clockList(in dumpInput, phcs []*dumpClock, others []string, intfs []Interface) []string {
	out := []string{
		"requested clocks list:-",
		"  | type    | nic_id | clk    | phc diff method    | short name | long name",
		"  +---------+--------+--------+--------------------+------------+----------",
	}
	macOf := map[string]string{}
	for _, it := range intfs {
		macOf[it.Name] = it.MAC
	}
	readOnly := func(short, long string, intfNames []string) string {
		if in.noAdjust {
			return " [read-only]"
		}
		for _, r := range in.readonly {
			if r == short || r == long {
				return " [read-only]"
			}
			for _, i := range intfNames {
				if r == i || (macOf[i] != "" && strings.EqualFold(r, macOf[i])) {
					return " [read-only]"
				}
			}
		}
		return ""
	}
	for i := len(phcs) - 1; i >= 0; i-- {
		c := phcs[i]
		out = append(out, fmt.Sprintf("  | %-7s | %6d | %6d | %-18s | %-10s | %s%s%s",
			c.class, c.nic, c.phc, "none", c.short, c.long, "", readOnly(c.short, c.long, c.intfs)))
	}
	sysRow := func(typ, name string) string {
		return fmt.Sprintf("  | %-7s | %-36s | %-10s | %s%s", typ, "", name, name, readOnly(name, name, nil))
	}
	out = append(out, sysRow("sys", "system"))
	for _, o := range others {
		typ := "other"
		if o == "virtual" {
			typ = "virtual"
		}
		out = append(out, sysRow(typ, o))
	}
	return out
}

// clockFeedState follows clockfeed_dump_state at severity 0, the clock
// feed thread's answer to the dump request. ptpd has no clock feed, so
// both source lists are empty.
func clockFeedState() []string {
	return []string{
		"clocks: dumping state:",
		"clocks:  active sources:",
		"clocks:  inactive sources:",
	}
}

func exists(parts ...string) bool {
	_, err := os.Stat(filepath.Join(parts...))
	return err == nil
}

// pciAddr matches a PCI device name ("0000:01:00.1").
var pciAddr = regexp.MustCompile(`^[[:xdigit:]]{4}:[[:xdigit:]]{2}:[[:xdigit:]]{2}\.[[:xdigit:]]+$`)

// busAddr is the bus address ethtool reports for the link: the PCI
// function the interface's device is, or sits on (virtio_net reports its
// PCI function, not the virtio device netlink names as the parent);
// failing that, the parent device netlink reports.
func busAddr(a *netlink.LinkAttrs) string {
	if dst, err := filepath.EvalSymlinks(filepath.Join("/sys/class/net", a.Name, "device")); err == nil {
		if base := filepath.Base(dst); pciAddr.MatchString(base) {
			return base
		}
		if parent := filepath.Base(filepath.Dir(dst)); pciAddr.MatchString(parent) {
			return parent
		}
	}
	return a.ParentDev
}

// nicClass reads the PCI ids as interface_check_suitability does:
// vendor 0x1924 is Solarflare, Xilinx's 0x10ee:0x5084 is an X3522.
func nicClass(name string) string {
	read := func(f string) (int64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "device", f))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x")), 16, 32)
	}
	vendor, err := read("vendor")
	if err != nil {
		return "non-sfc"
	}
	switch vendor {
	case 0x1924:
		return "sfc"
	case 0x10ee:
		if dev, err := read("device"); err == nil && dev == 0x5084 {
			return "xnet"
		}
	}
	return "non-sfc"
}
