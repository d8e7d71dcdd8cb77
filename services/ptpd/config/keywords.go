package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"time"
)

// Status says what ptpd does with a keyword.
type Status int

// Keyword statuses.
const (
	// Supported keywords have sfptpd's meaning in ptpd.
	Supported Status = iota
	// Ignored keywords are accepted and their values checked, but ptpd
	// does not act on them (Config.Ignored records each use).
	Ignored
)

// String returns "supported" or "ignored".
func (s Status) String() string {
	if s == Ignored {
		return "ignored"
	}
	return "supported"
}

// KeywordInfo describes one keyword of one section kind.
type KeywordInfo struct {
	Name string
	// Module is "general" or the module whose sections take it.
	Module string
	// Global keywords are only allowed in [general] or the module
	// section, not in instance sections (sfptpd's global scope).
	Global bool
	// Min and Max bound the number of values (Max < 0: no bound).
	Min, Max int
	Status   Status
	// Meaning is what a supported keyword does, or why it is ignored.
	Meaning string
	// Extension marks tickbox's own keywords (not in sfptpd).
	Extension bool
}

// Keywords returns the keyword table.
func Keywords() []KeywordInfo {
	out := make([]KeywordInfo, 0, len(table))
	for _, k := range table {
		out = append(out, KeywordInfo{Name: k.name, Module: k.module, Global: k.global, Min: k.min, Max: k.max,
			Status: k.status, Meaning: k.meaning, Extension: k.extension})
	}
	return out
}

// keyword is one row of the table.
type keyword struct {
	name      string
	module    string
	global    bool
	min, max  int
	status    Status
	meaning   string
	extension bool
	// gen applies a [general] keyword; inst applies a module keyword to
	// an instance; check validates an ignored keyword's values. Each
	// returns a note for Config.Ignored ("" for none).
	gen   func(g *General, a []string, no int) (string, error)
	inst  func(in *Instance, a []string) (string, error)
	check func(a []string) error
}

func (k *keyword) count(a []string) error {
	n := len(a)
	switch {
	case k.max == k.min && n != k.min:
		return fmt.Errorf("expects %d value(s), got %d", k.min, n)
	case n < k.min:
		return fmt.Errorf("expects at least %d value(s), got %d", k.min, n)
	case k.max >= 0 && n > k.max:
		return fmt.Errorf("expects at most %d value(s), got %d", k.max, n)
	}
	return nil
}

func (k *keyword) apply(in *Instance, a []string) (string, error) {
	if k.inst != nil {
		return k.inst(in, a)
	}
	if k.check != nil {
		return "", k.check(a)
	}
	return "", nil
}

func (k *keyword) applyGeneral(g *General, l line) (string, error) {
	if k.gen != nil {
		return k.gen(g, l.args, l.no)
	}
	if k.check != nil {
		return "", k.check(l.args)
	}
	return "", nil
}

// findKeyword returns the row for name in module's sections.
func findKeyword(module, name string) *keyword {
	for i := range table {
		if table[i].module == module && table[i].name == name {
			return &table[i]
		}
	}
	return nil
}

// Row builders, to keep the table readable.

func sup(module, name string, global bool, min, max int, meaning string) keyword {
	return keyword{module: module, name: name, global: global, min: min, max: max, status: Supported, meaning: meaning}
}

func ign(module, name string, global bool, min, max int, reason string, check func([]string) error) keyword {
	return keyword{module: module, name: name, global: global, min: min, max: max, status: Ignored, meaning: reason, check: check}
}

func withGen(k keyword, f func(g *General, a []string, no int) (string, error)) keyword {
	k.gen = f
	return k
}

func ext(k keyword) keyword {
	k.extension = true
	return k
}

func withInst(k keyword, f func(in *Instance, a []string) (string, error)) keyword {
	k.inst = f
	return k
}

// Checks used by ignored keywords.

func chkOnOff(a []string) error { _, err := onOff(a[0]); return err }

func chkWords(words ...string) func([]string) error {
	return func(a []string) error {
		for _, s := range a {
			if err := oneOf(s, words...); err != nil {
				return err
			}
		}
		return nil
	}
}

func chkInt(lo, hi int64) func([]string) error {
	return func(a []string) error {
		for _, s := range a {
			if _, err := intIn(s, lo, hi); err != nil {
				return err
			}
		}
		return nil
	}
}

func chkFloat(lo, hi float64) func([]string) error {
	return func(a []string) error { _, err := floatIn(a[0], lo, hi); return err }
}

func chkOctal(a []string) error { _, err := octalMode(a[0]); return err }

func chkPath(a []string) error { return path(a[0]) }

func chkNames(a []string) error {
	for _, s := range a {
		if err := word(s, 63); err != nil {
			return err
		}
	}
	return nil
}

func chkAccuracy(a []string) error {
	if a[0] == "unknown" {
		return nil
	}
	if _, err := floatIn(a[0], 0, 1e18); err != nil {
		return fmt.Errorf("bad value '%s' (want nanoseconds or unknown)", a[0])
	}
	return nil
}

func chkACLOrder(a []string) error {
	return oneOf(a[0], "allow-deny", "deny-allow", "permit-deny", "deny-permit")
}

// Reasons shared by several rows.
const (
	rsNIC       = "concerns Solarflare/AMD NIC or driver features ptpd does not drive"
	rsMetrics   = "ptpd serves no OpenMetrics endpoint"
	rsACL       = "ptpd applies no access control lists: packets from every source are accepted"
	rsFilter    = "ptpd's servo has no such filter stage; its own filters apply"
	rsTrace     = "ptpd logs through slog; trace levels do not apply"
	rsMonitor   = "ptpd implements no PTP slave event monitoring"
	rsPPSModule = "ptpd has no PPS input: pps instances cannot run, the value is only checked"
	rsGPSModule = "ptpd has no gpsd client: gps instances cannot run, the value is only checked"
	rsClass     = "ptpd reports a freerun instance as class freerunning with unknown accuracy"
)

// table is every keyword sfptpd accepts, plus tickbox's ntp_server.
var table = []keyword{
	// [general]
	{module: "general", name: "sync_module", global: true, min: 1, max: -1, status: Supported,
		meaning: "declares the instances of a module; a module named without instances declares none"},
	withGen(sup("general", "selection_policy", true, 1, 2, "automatic, manual INSTANCE or manual-startup INSTANCE selection"), genSelectionPolicy),
	ign("general", "selection_policy_rules", true, 1, 10, "ptpd's automatic selection uses its fixed rule order",
		func(a []string) error {
			return distinctWords(a, "manual", "ext-constraints", "state", "no-alarms", "user-priority", "clustering",
				"clock-class", "total-accuracy", "allan-variance", "steps-removed")
		}),
	ign("general", "phc_pps_methods", true, 1, 2, rsNIC, func(a []string) error { return distinctWords(a, "devpps", "devptp") }),
	withGen(sup("general", "selection_holdoff_interval", true, 1, 1, "seconds to wait before switching to a better instance"),
		func(g *General, a []string, _ int) (string, error) {
			n, err := intIn(a[0], 0, 1<<31-1)
			if err != nil {
				return "", fmt.Errorf("bad value '%s' (want whole seconds, 0 or more)", a[0])
			}
			g.SelectionHoldoff = time.Duration(n) * time.Second
			return "", nil
		}),
	withGen(sup("general", "message_log", true, 1, 1, "stderr, syslog or a file for the messages"),
		func(g *General, a []string, _ int) (string, error) { g.MessageLog = a[0]; return "", path(a[0]) }),
	withGen(sup("general", "stats_log", true, 1, 1, "off, stdout or a file for the statistics"),
		func(g *General, a []string, _ int) (string, error) {
			g.StatsLog = a[0]
			if a[0] == "off" {
				g.StatsLog = ""
			}
			return "", path(a[0])
		}),
	ign("general", "user", true, 1, 2, "ptpd runs as the user and group it is started as", chkNames),
	withGen(ign("general", "daemon", true, 0, 0, "ptpd never daemonises itself: the init system supervises it", nil),
		func(g *General, _ []string, _ int) (string, error) { g.Daemon = true; return "", nil }),
	withGen(ign("general", "lock", true, 1, 1, "ptpd takes no lock file: the box runs one ptpd", nil),
		func(g *General, a []string, _ int) (string, error) { v, err := onOff(a[0]); g.Lock = v; return "", err }),
	withGen(sup("general", "state_path", true, 1, 1, "directory for the state files"),
		func(g *General, a []string, _ int) (string, error) { g.StatePath = a[0]; return "", path(a[0]) }),
	withGen(sup("general", "control_path", true, 1, 1, "path (or @abstract name) of the control socket"),
		func(g *General, a []string, _ int) (string, error) {
			p := a[0]
			if p == "" || p[0] != '/' && p[0] != '@' || len(p) > 107 {
				return "", fmt.Errorf("bad value '%s' (want an absolute path or @abstract name of at most 107 bytes)", p)
			}
			g.ControlPath = p
			return "", nil
		}),
	ign("general", "metrics_path", true, 1, 1, rsMetrics, chkPath),
	ign("general", "run_dir", true, 1, 1, "ptpd keeps no run directory besides the control socket's", chkPath),
	ign("general", "run_dir_mode", true, 1, 1, "ptpd keeps no run directory besides the control socket's", chkOctal),
	ign("general", "state_dir_mode", true, 1, 1, "ptpd creates the state directory with its own mode", chkOctal),
	withGen(sup("general", "control_socket_mode", true, 1, 1, "octal access mode of the control socket"),
		func(g *General, a []string, _ int) (string, error) {
			m, err := octalMode(a[0])
			if err != nil || m > 0o777 {
				return "", fmt.Errorf("bad value '%s' (want an octal mode such as 0660)", a[0])
			}
			g.ControlMode = fs.FileMode(m)
			return "", nil
		}),
	ign("general", "metrics_socket_mode", true, 1, 1, rsMetrics, chkOctal),
	ign("general", "sync_interval", true, 1, 1, "ptpd has no secondary servos between local clocks", chkInt(-5, 3)),
	ign("general", "local_sync_threshold", false, 1, 1, "ptpd has no secondary servos between local clocks", chkFloat(0, 1e15)),
	withGen(sup("general", "clock_control", true, 1, 1, "how clocks may be adjusted: slew-and-step, step-at-startup, no-step, no-adjust (step-forward and step-on-first-lock are approximated)"),
		genClockControl),
	withGen(sup("general", "step_threshold", false, 1, 1, "offset in seconds (0.1..10) above which a clock is stepped"),
		func(g *General, a []string, _ int) (string, error) {
			f, err := floatIn(a[0], 0.1, 10)
			if err != nil {
				return "", fmt.Errorf("bad value '%s' (want seconds 0.1..10, e.g. 0.9)", a[0])
			}
			g.StepThreshold = time.Duration(f * float64(time.Second))
			return "", nil
		}),
	withGen(ign("general", "epoch_guard", true, 1, 1, "ptpd does not watch NIC clocks for a reset to the epoch", nil),
		func(g *General, a []string, _ int) (string, error) {
			g.EpochGuard = a[0]
			return "", oneOf(a[0], "alarm-only", "prevent-sync", "correct-clock")
		}),
	withGen(ign("general", "clock_list", true, 0, -1, "ptpd disciplines exactly the clocks its instances use (General.ClockList keeps the list)", nil),
		func(g *General, a []string, _ int) (string, error) {
			g.ClockList = append([]string{}, a...)
			return "", chkNames(a)
		}),
	withGen(sup("general", "clock_readonly", true, 1, -1, "clocks (long or short name such as \"phc0\" or \"system\", interface, or the interface's MAC) that are measured but never stepped or slewed"),
		func(g *General, a []string, _ int) (string, error) {
			g.ClockReadonly = append(g.ClockReadonly, a...)
			return "", chkNames(a)
		}),
	ign("general", "observe_readonly_clocks", true, 1, 1, "ptpd runs no passive servos on read-only clocks", chkOnOff),
	withGen(sup("general", "persistent_clock_correction", true, 1, 1, "start clocks from their saved frequency correction (on/off)"),
		func(g *General, a []string, _ int) (string, error) {
			v, err := onOff(a[0])
			g.PersistentClockCorrection = v
			return "", err
		}),
	ign("general", "non_solarflare_nics", true, 1, 1, "ptpd uses hardware timestamps of any NIC that offers them", chkOnOff),
	ign("general", "non_xilinx_nics", true, 1, 1, "ptpd uses hardware timestamps of any NIC that offers them", chkOnOff),
	ign("general", "assume_one_phc_per_nic", true, 1, 1, rsNIC, chkOnOff),
	ign("general", "phc_dedup", true, 1, 1, rsNIC, chkOnOff),
	ign("general", "avoid_efx_ioctl", true, 1, 1, rsNIC, chkOnOff),
	ign("general", "phc_diff_methods", true, 1, 6, "ptpd compares clocks with its own method", func(a []string) error {
		return distinctWords(a, "sys-offset-precise", "efx", "pps", "sys-offset-ext", "sys-offset", "read-time")
	}),
	ign("general", "timestamping_interfaces", true, 1, -1, "ptpd enables timestamping only on its instances' interfaces", chkNames),
	ign("general", "timestamping_disable_on_exit", true, 1, 1, "ptpd leaves the timestamping setting of interfaces as it set it", chkOnOff),
	withGen(sup("general", "pid_filter_p", false, 1, 1, "servo proportional coefficient (ptpd's unit: ppb per ns, 0..1000)"), genPID(true)),
	withGen(sup("general", "pid_filter_i", false, 1, 1, "servo integral coefficient (ptpd's unit: ppb per ns·s, 0..1000)"), genPID(false)),
	ign("general", "fir_filter_size", false, 1, 1, rsFilter, chkInt(1, 128)),
	withGen(ign("general", "trace_level", true, 1, 2, rsTrace+" (General.TraceLevel keeps the general level)", nil), genTraceLevel),
	withGen(sup("general", "test_mode", true, 0, 0, "enable the testmode control command"),
		func(g *General, _ []string, _ int) (string, error) {
			g.TestMode = true
			return "", nil
		}),
	withGen(sup("general", "json_stats", true, 1, 1, "file for JSON-lines statistics"),
		func(g *General, a []string, _ int) (string, error) {
			g.JSONStats = a[0]
			if a[0] == "off" {
				g.JSONStats = ""
			}
			return "", path(a[0])
		}),
	ign("general", "json_remote_monitor", true, 1, 1, rsMonitor, chkPath),
	withGen(sup("general", "hotplug_detection_mode", true, 1, 1, "netlink, or manual (interfaces added by sfptpdctl); sfptpd's other modes mean netlink"),
		genHotplug),
	ign("general", "reporting_intervals", true, 2, -1, "ptpd saves state and writes statistics at its fixed intervals", func(a []string) error {
		if len(a)%2 != 0 {
			return errors.New("expects KEY INTERVAL pairs")
		}
		for i := 0; i < len(a); i += 2 {
			if err := oneOf(a[i], "save_state", "stats_log"); err != nil {
				return err
			}
			if _, err := floatIn(a[i+1], 0, 1e9); err != nil {
				return err
			}
		}
		return nil
	}),
	ign("general", "netlink_rescan_interval", true, 1, 1, "ptpd follows netlink events without periodic rescans", chkInt(0, 1<<31-1)),
	ign("general", "netlink_coalesce_ms", true, 1, 1, "ptpd applies netlink events as they come", chkInt(0, 1<<31-1)),
	ign("general", "clustering", true, 4, 4, "ptpd implements no clustering in its selection", func(a []string) error {
		if err := oneOf(a[0], "discriminator"); err != nil {
			return err
		}
		if err := word(a[1], 63); err != nil {
			return err
		}
		if _, err := floatIn(a[2], -1e18, 1e18); err != nil {
			return err
		}
		_, err := intIn(a[3], -1<<31, 1<<31-1)
		return err
	}),
	ign("general", "clustering_guard", true, 2, 2, "ptpd implements no clustering in its selection", func(a []string) error {
		if _, err := onOff(a[0]); err != nil {
			return err
		}
		if _, err := intIn(a[1], 1, 1); err != nil {
			return errors.New("only a clustering threshold of 1 is allowed")
		}
		return nil
	}),
	withGen(sup("general", "limit_freq_adj", true, 1, 1, "limit of the frequency correction in ppb"),
		func(g *General, a []string, _ int) (string, error) {
			f, err := floatIn(a[0], 0, 1e9)
			if err != nil || f == 0 {
				return "", fmt.Errorf("bad value '%s' (want ppb, more than 0)", a[0])
			}
			g.LimitFreqAdjPPB = f
			return "", nil
		}),
	ign("general", "ignore_critical", true, 1, -1, "ptpd has no critical start-up checks to waive",
		chkWords("no-ptp-clock", "no-ptp-subsystem", "clock-control-conflict")),
	ign("general", "rtc_adjust", true, 1, 1, "ptpd does not touch the kernel's RTC synchronisation", chkOnOff),
	ign("general", "clock_display_fmts", true, 4, 4, "ptpd names clocks its own way", func(a []string) error {
		for _, s := range a {
			if err := word(s, 64); err != nil {
				return err
			}
		}
		return nil
	}),
	ign("general", "unique_clockid_bits", true, 1, 1, "ptpd derives clock identities its own way", func(a []string) error {
		switch a[0] {
		case "pid", "hostid", "rand":
			return nil
		}
		var o [8]byte
		if n, _ := fmt.Sscanf(a[0], "%x:%x:%x:%x:%x:%x:%x:%x", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7]); n < 1 {
			return fmt.Errorf("bad value '%s' (want pid, hostid, rand or colon-separated octets)", a[0])
		}
		return nil
	}),
	ign("general", "legacy_clockids", true, 1, 1, "ptpd derives clock identities its own way", chkOnOff),
	ign("general", "initial_clock_correction", true, 1, 1, "ptpd sets no NIC clock from the system clock at start-up", chkWords("always", "if-unset")),
	ign("general", "openmetrics_unix", true, 1, 1, rsMetrics, chkOnOff),
	ign("general", "openmetrics_tcp", true, 1, -1, rsMetrics, func(a []string) error {
		for _, s := range a {
			if err := word(s, 255); err != nil {
				return err
			}
		}
		return nil
	}),
	ign("general", "openmetrics_rt_stats_buf", true, 1, 1, rsMetrics, chkInt(16, 1<<31-1)),
	ign("general", "openmetrics_options", true, 0, -1, rsMetrics, chkWords("alarm-stateset")),
	ign("general", "openmetrics_prefix", true, 1, 1, rsMetrics, func(a []string) error { return word(a[0], 63) }),
	ign("general", "openmetrics_acl_allow", false, 1, -1, rsMetrics, prefixes),
	ign("general", "openmetrics_acl_deny", false, 1, -1, rsMetrics, prefixes),
	ign("general", "openmetrics_acl_order", false, 1, 1, rsMetrics, chkACLOrder),
	ign("general", "servo_log_all_samples", true, 1, 1, "ptpd has no secondary servos between local clocks", chkOnOff),
	ign("general", "eligible_interface_types", true, 1, -1, "ptpd uses the interfaces its instances name", chkNames),
	ign("general", "clock_adj_method", true, 1, 1, "ptpd adjusts clock frequency with the kernel's frequency offset", chkWords("prefer-tickadj", "prefer-freqadj", "legacy")),

	// [ptp]
	withInst(sup("ptp", "ptp_profile", true, 1, 1, "default-e2e or enterprise: sets the profile's interval defaults and ranges (default-p2p is refused)"), ptpProfile),
	ign("ptp", "ptp_version", true, 1, 1, "ptpd's PTP version on the wire is fixed", chkWords("2.0", "2.1")),
	withInst(sup("ptp", "ptp_mode", false, 1, 1, "slave, master or master-only (monitor is refused)"), ptpMode),
	withInst(sup("ptp", "interface", false, 1, 1, "network interface of the port"),
		func(in *Instance, a []string) (string, error) { in.Interface = a[0]; return "", interfaceName(a[0]) }),
	withInst(sup("ptp", "transport", false, 1, 1, "ipv4 (ipv6 is refused: ptpd speaks PTP over UDP/IPv4 only)"),
		func(_ *Instance, a []string) (string, error) {
			if a[0] == "ipv6" {
				return "", errors.New("ipv6 is not supported by ptpd (PTP over UDP/IPv4 only)")
			}
			return "", oneOf(a[0], "ipv4")
		}),
	ign("ptp", "scope", true, 1, 1, "applies to the IPv6 transport only", chkWords("link-local", "global")),
	withInst(sup("ptp", "priority", false, 1, 1, "user priority of the instance in selection (lower wins)"), instPriority),
	withInst(sup("ptp", "sync_threshold", false, 1, 1, "offset in ns under which the instance is in sync"), instSyncThreshold),
	withInst(sup("ptp", "timestamping", false, 1, 1, "hw, sw or auto timestamping"),
		func(in *Instance, a []string) (string, error) {
			in.Timestamping = a[0]
			return "", oneOf(a[0], "hw", "sw", "auto")
		}),
	ign("ptp", "ptp_pkt_dump", false, 0, 0, "ptpd does not dump packets", nil),
	ign("ptp", "ptp_pps_log", false, 0, 0, "ptpd takes no PPS measurements", nil),
	ign("ptp", "pps_delay", false, 1, 1, "ptpd takes no PPS measurements", chkFloat(-1e15, 1e15)),
	withInst(sup("ptp", "ptp_tx_latency", false, 1, 1, "outbound latency correction in ns: added to the port's Sync and Delay_Req transmit timestamps"), ptpLatency(true)),
	withInst(sup("ptp", "ptp_rx_latency", false, 1, 1, "inbound latency correction in ns: subtracted from the port's Sync and Delay_Req receive timestamps"), ptpLatency(false)),
	withInst(sup("ptp", "ptp_delay_mechanism", false, 1, 1, "end-to-end (peer-to-peer is refused: ptpd has no peer delay mechanism)"),
		func(in *Instance, a []string) (string, error) {
			if a[0] == "peer-to-peer" {
				return "", errors.New("peer-to-peer is not supported by ptpd (end-to-end only); a peer-delay network would leave the path delay unmeasured")
			}
			return "", oneOf(a[0], "end-to-end")
		}),
	withInst(sup("ptp", "ptp_network_mode", false, 1, 1, "multicast; hybrid loads and runs as multicast (hybrid-no-fallback is refused)"),
		func(in *Instance, a []string) (string, error) {
			switch a[0] {
			case "multicast":
				return "", nil
			case "hybrid":
				return "ptpd sends Delay_Req by multicast only, which is hybrid mode's own fallback", nil
			case "hybrid-no-fallback":
				return "", errors.New("hybrid-no-fallback is not supported by ptpd (it sends Delay_Req by multicast only)")
			}
			return "", oneOf(a[0], "multicast", "hybrid", "hybrid-no-fallback")
		}),
	ign("ptp", "ptp_ttl", false, 1, 1, "ptpd sends PTP multicast with TTL 1 (one link)", chkInt(-1<<31, 1<<31-1)),
	ign("ptp", "ptp_utc_offset", false, 1, 1, "a ptpd master announces the built-in UTC offset of 37 s", chkInt(-32768, 32767)),
	ign("ptp", "ptp_utc_valid_handling", false, 1, 2, "a ptpd slave applies the announced UTC offset, or 37 s when it is not flagged valid",
		func(a []string) error {
			if a[0] == "override" {
				if len(a) != 2 {
					return errors.New("override expects the offset in seconds")
				}
				_, err := intIn(a[1], -1<<31, 1<<31-1)
				return err
			}
			if len(a) != 1 {
				return fmt.Errorf("%s takes no further value", a[0])
			}
			return oneOf(a[0], "default", "ignore", "prefer", "require", "override")
		}),
	ign("ptp", "ptp_timescale", false, 1, 1, "a ptpd master always announces the PTP (TAI) timescale", chkWords("tai", "utc")),
	withInst(sup("ptp", "ptp_domain", false, 1, 1, "PTP domain number 0..255"),
		func(in *Instance, a []string) (string, error) {
			n, err := intIn(a[0], 0, 255)
			in.Domain = n
			return "", err
		}),
	ign("ptp", "ptp_mgmt_msgs", true, 1, 1, "ptpd answers no PTP management messages (as with 'disabled')", chkWords("disabled", "read-only")),
	ign("ptp", "ptp_timing_acl_allow", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_timing_acl_permit", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_timing_acl_deny", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_timing_acl_order", false, 1, 1, rsACL, chkACLOrder),
	ign("ptp", "ptp_mgmt_acl_allow", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_mgmt_acl_permit", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_mgmt_acl_deny", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_mgmt_acl_order", false, 1, 1, rsACL, chkACLOrder),
	ign("ptp", "ptp_mon_acl_allow", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_mon_acl_deny", false, 1, -1, rsACL, prefixes),
	ign("ptp", "ptp_mon_acl_order", false, 1, 1, rsACL, chkACLOrder),
	withInst(sup("ptp", "ptp_announce_interval", false, 1, 1, "Announce interval, log2 seconds"), ptpInterval(func(in *Instance) **int { return &in.AnnounceInterval }, "announce")),
	withInst(sup("ptp", "ptp_announce_timeout", false, 1, 1, "Announce receipt timeout in Announce intervals"), ptpInterval(func(in *Instance) **int { return &in.AnnounceTimeout }, "timeout")),
	withInst(sup("ptp", "ptp_sync_pkt_interval", false, 1, 1, "Sync interval, log2 seconds"), ptpInterval(func(in *Instance) **int { return &in.SyncInterval }, "sync")),
	ign("ptp", "ptp_sync_pkt_timeout", false, 1, 1, "ptpd raises its no-Sync alarm after its own timeout", chkInt(-128, 127)),
	withInst(sup("ptp", "ptp_delayreq_interval", false, 1, 1, "Delay_Req interval, log2 seconds"), ptpInterval(func(in *Instance) **int { return &in.DelayReqInterval }, "delayreq")),
	ign("ptp", "ptp_delayresp_timeout", false, 1, 1, "ptpd waits for Delay_Resp with its own timeout", chkInt(-128, 127)),
	ign("ptp", "max_missing_delayresps", false, 2, 2, "ptpd raises its no-Delay_Resp alarm after its own count", chkInt(0, 127)),
	ign("ptp", "ptp_max_foreign_records", true, 1, 1, "ptpd keeps its own bounded foreign master table", chkInt(1, 32767)),
	withInst(sup("ptp", "ptp_bmc_priority1", false, 1, 1, "priority1 announced as master"), ptpBMC(func(in *Instance) **int { return &in.Priority1 })),
	withInst(sup("ptp", "ptp_bmc_priority2", false, 1, 1, "priority2 announced as master"), ptpBMC(func(in *Instance) **int { return &in.Priority2 })),
	ign("ptp", "ptp_trace", false, 1, 1, rsTrace, chkInt(0, 1<<31-1)),
	ign("ptp", "ptp_delay_resp_ignore_port_id", false, 1, 1, "ptpd always checks the port identity in Delay_Resp", chkOnOff),
	withInst(sup("ptp", "pid_filter_p", false, 1, 1, "servo proportional coefficient for this instance (ptpd's unit)"), instPID(true)),
	withInst(sup("ptp", "pid_filter_i", false, 1, 1, "servo integral coefficient for this instance (ptpd's unit)"), instPID(false)),
	withInst(sup("ptp", "outlier_filter_size", false, 1, 1, "offsets (5..60) the outlier filter judges each new offset against"),
		func(in *Instance, a []string) (string, error) {
			n, err := parseCInt(a[0])
			if err != nil {
				return "", fmt.Errorf("bad value '%s' (want an integer %d..%d)", a[0], OutlierFilterSizeMin, OutlierFilterSizeMax)
			}
			if n < OutlierFilterSizeMin || n > OutlierFilterSizeMax {
				return "", fmt.Errorf("bad value '%s' (PTP outlier filter size outside allowed range [%d,%d])", a[0], OutlierFilterSizeMin, OutlierFilterSizeMax)
			}
			in.OutlierFilterSize = int(n)
			return "", nil
		}),
	withInst(sup("ptp", "outlier_filter_adaption", false, 1, 1, "weight (0..1) with which an outlier still enters the filter's window, so that it adapts"),
		func(in *Instance, a []string) (string, error) {
			f, err := strconv.ParseFloat(a[0], 64)
			if err != nil || math.IsNaN(f) {
				return "", fmt.Errorf("bad value '%s' (want a number 0..1)", a[0])
			}
			if f < 0 || f > 1 {
				return "", fmt.Errorf("bad value '%s' (PTP outlier filter adaption outside allowed range of [0,1])", a[0])
			}
			in.OutlierFilterAdaption = &f
			return "", nil
		}),
	withInst(sup("ptp", "mpd_filter_size", false, 1, 1, "samples in the path delay filter (1..25)"),
		func(in *Instance, a []string) (string, error) {
			n, err := intIn(a[0], 1, 25)
			in.DelayFilter = n
			return "", err
		}),
	ign("ptp", "mpd_filter_ageing", false, 1, 1, rsFilter, chkFloat(0, 1e15)),
	ign("ptp", "fir_filter_size", false, 1, 1, rsFilter, chkInt(1, 128)),
	ign("ptp", "remote_monitor", true, 0, 0, rsMonitor, nil),
	ign("ptp", "mon_monitor_address", false, 1, -1, rsMonitor, func(a []string) error {
		for _, s := range a {
			if err := hostPort(s); err != nil {
				return err
			}
		}
		return nil
	}),
	ign("ptp", "mon_rx_sync_timing_data", false, 0, 1, rsMonitor, chkInt(-1<<31, 1<<31-1)),
	ign("ptp", "mon_rx_sync_computed_data", false, 0, 1, rsMonitor, chkInt(-1<<31, 1<<31-1)),
	ign("ptp", "mon_tx_event_timestamps", false, 0, 1, rsMonitor, chkInt(-1<<31, 1<<31-1)),
	ign("ptp", "mon_meinberg_netsync", false, 0, 0, rsMonitor, nil),
	ign("ptp", "mon_slave_status", false, 0, 0, rsMonitor, nil),
	ign("ptp", "bmc_discriminator", false, 2, 2, "ptpd's BMCA uses no discriminator clock", func(a []string) error {
		if err := word(a[0], 63); err != nil {
			return err
		}
		_, err := floatIn(a[1], 0, 1e15)
		return err
	}),
	ign("ptp", "announce_comm_caps", false, 1, 1, "ptpd appends no communication capabilities TLV", chkOnOff),
	ign("ptp", "onload_ext", true, 1, 1, "Onload is not present on the box", chkOnOff),
	ign("ptp", "lacp_bypass", true, 1, 1, "ptpd has no LACP bond bypass: it uses the interface as configured", chkWords("off", "sockpool", "cmsg", "both")),

	// [freerun]
	withInst(sup("freerun", "interface", false, 1, 1, "interface whose clock is the reference, or \"system\" for the system clock"),
		func(in *Instance, a []string) (string, error) {
			if a[0] == ClockSystem {
				in.Interface, in.Clock = "", ClockSystem
				return "", nil
			}
			in.Interface, in.Clock = a[0], ""
			return "", interfaceName(a[0])
		}),
	withInst(sup("freerun", "priority", false, 1, 1, "user priority of the instance in selection (lower wins)"), instPriority),
	ign("freerun", "clock_class", false, 1, 1, rsClass, chkWords("locked", "holdover", "freerunning")),
	ign("freerun", "clock_accuracy", false, 1, 1, rsClass, chkAccuracy),
	ign("freerun", "clock_traceability", false, 0, 2, rsClass, chkWords("time", "freq")),
	ext(withInst(sup("freerun", "pid_filter_p", false, 1, 1, "ptpd extension: servo proportional coefficient of the instance"), instPID(true))),
	ext(withInst(sup("freerun", "pid_filter_i", false, 1, 1, "ptpd extension: servo integral coefficient of the instance"), instPID(false))),

	// [ntp]
	withInst(sup("ntp", "priority", false, 1, 1, "user priority of the instance in selection (lower wins)"), instPriority),
	withInst(sup("ntp", "sync_threshold", false, 1, 1, "offset in ns under which the instance is in sync"), instSyncThreshold),
	withInst(sup("ntp", "ntp_poll_interval", false, 1, 1, "seconds between polls (at least 1)"), ntpPoll),
	ign("ntp", "ntp_key", false, 2, 2, "keys ntpd's control requests; ptpd is its own NTP client and runs no ntpd", func(a []string) error {
		if n, err := parseCInt(a[0]); err != nil || n <= 0 || n > 1<<32-1 {
			return fmt.Errorf("bad key id '%s' (want a non-zero number)", a[0])
		}
		if len(a[1]) > 31 {
			return errors.New("key value longer than 31 characters")
		}
		return nil
	}),
	{module: "ntp", name: "ntp_server", min: 1, max: -1, status: Supported, extension: true, inst: ntpServer,
		meaning: "tickbox extension: NTP server HOST[:PORT] the instance polls; repeatable"},

	// [crny]
	withInst(sup("crny", "priority", false, 1, 1, "user priority of the instance in selection (lower wins)"), instPriority),
	withInst(sup("crny", "sync_threshold", false, 1, 1, "offset in ns under which the instance is in sync"), instSyncThreshold),
	withInst(sup("crny", "ntp_poll_interval", false, 1, 1, "seconds between polls (at least 1)"), ntpPoll),
	ign("crny", "clock_control", false, 1, 1, "switches chronyd's clock control; ptpd is its own NTP client and runs no chronyd", chkOnOff),
	ign("crny", "control_script", false, 1, 1, "restarts chronyd; ptpd is its own NTP client and runs no chronyd", chkPath),
	ign("crny", "allow_refclk", false, 1, 1, "concerns chronyd's reference clocks; ptpd runs no chronyd", chkOnOff),
	{module: "crny", name: "ntp_server", min: 1, max: -1, status: Supported, extension: true, inst: ntpServer,
		meaning: "tickbox extension: NTP server HOST[:PORT] the instance polls; repeatable"},

	// [pps]
	withInst(sup("pps", "interface", false, 1, 1, "interface whose clock takes the PPS input"),
		func(in *Instance, a []string) (string, error) { in.Interface = a[0]; return "", interfaceName(a[0]) }),
	withInst(sup("pps", "priority", false, 1, 1, "user priority of the instance in selection (lower wins)"), instPriority),
	withInst(sup("pps", "sync_threshold", false, 1, 1, "offset in ns under which the instance is in sync"), instSyncThreshold),
	withInst(ign("pps", "time_of_day", true, 1, 1, rsPPSModule, nil),
		func(in *Instance, a []string) (string, error) { in.TimeOfDay = a[0]; return "", word(a[0], 63) }),
	ign("pps", "master_clock_class", false, 1, 1, rsPPSModule, chkWords("locked", "holdover", "freerunning")),
	ign("pps", "master_time_source", false, 1, 1, rsPPSModule, chkWords("atomic", "gps", "ptp", "ntp", "oscillator")),
	ign("pps", "master_accuracy", false, 1, 1, rsPPSModule, chkAccuracy),
	ign("pps", "master_traceability", false, 0, 2, rsPPSModule, chkWords("time", "freq")),
	ign("pps", "steps_removed", false, 1, 1, rsPPSModule, chkInt(0, 1<<32-1)),
	ign("pps", "pps_delay", false, 1, 1, rsPPSModule, chkFloat(-1e15, 1e15)),
	ign("pps", "pid_filter_p", false, 1, 1, rsPPSModule, chkFloat(0, 1)),
	ign("pps", "pid_filter_i", false, 1, 1, rsPPSModule, chkFloat(0, 1)),
	ign("pps", "outlier_filter_type", false, 1, 1, rsPPSModule, chkWords("disabled", "std-dev")),
	ign("pps", "outlier_filter_size", false, 1, 1, rsPPSModule, chkInt(5, 60)),
	ign("pps", "outlier_filter_adaption", false, 1, 1, rsPPSModule, chkFloat(0, 1)),
	ign("pps", "fir_filter_size", false, 1, 1, rsPPSModule, chkInt(1, 128)),
	ign("pps", "function", false, 1, 1, "ptpd programs no NIC PPS pins", chkWords("pps-in", "pps-out", "none")),
	ign("pps", "pin", false, 1, 1, "ptpd programs no NIC PPS pins", chkInt(0, 255)),

	// [gps]
	withInst(sup("gps", "priority", false, 1, 1, "user priority of the instance in selection (lower wins)"), instPriority),
	withInst(sup("gps", "sync_threshold", false, 1, 1, "offset in ns under which the instance is in sync"), instSyncThreshold),
	ign("gps", "gpsd", false, 0, 2, rsGPSModule, func(a []string) error {
		if len(a) > 0 {
			if err := word(a[0], 255); err != nil {
				return err
			}
		}
		if len(a) > 1 {
			if err := word(a[1], 31); err != nil {
				return err
			}
		}
		return nil
	}),
}

func genSelectionPolicy(g *General, a []string, no int) (string, error) {
	switch p := a[0]; p {
	case PolicyAutomatic:
		if len(a) != 1 {
			return "", errors.New("automatic takes no instance")
		}
		g.SelectionInstance = ""
	case PolicyManual, PolicyManualStartup:
		if len(a) != 2 {
			return "", fmt.Errorf("%s expects one instance name", p)
		}
		g.SelectionInstance = a[1]
	default:
		return "", fmt.Errorf("bad value '%s' (want automatic, manual or manual-startup)", p)
	}
	g.SelectionPolicy = a[0]
	g.SelectionLine = no
	return "", nil
}

func genClockControl(g *General, a []string, _ int) (string, error) {
	switch v := a[0]; v {
	case ClockSlewAndStep, ClockStepAtStartup, ClockNoStep, ClockNoAdjust:
		g.ClockControl = v
		return "", nil
	case "step-on-first-lock":
		g.ClockControl = ClockStepAtStartup
		return "step-on-first-lock is run as step-at-startup: ptpd steps once, on the first offset it measures, then only slews", nil
	case "step-forward":
		g.ClockControl = ClockNoStep
		return "step-forward is run as no-step: ptpd cannot step only forwards, so it never steps and only slews", nil
	}
	return "", fmt.Errorf("bad value '%s' (want slew-and-step, step-at-startup, no-step, no-adjust, step-forward or step-on-first-lock)", a[0])
}

// pidValue parses ptpd's PI coefficients (its own unit, see servo).
func pidValue(s string) (float64, error) {
	f, err := floatIn(s, 0, 1000)
	if err != nil {
		return 0, fmt.Errorf("bad value '%s' (want a number from 0 to 1000)", s)
	}
	return f, nil
}

func genPID(p bool) func(*General, []string, int) (string, error) {
	return func(g *General, a []string, _ int) (string, error) {
		f, err := pidValue(a[0])
		if p {
			g.PIDFilterP = f
		} else {
			g.PIDFilterI = f
		}
		return "", err
	}
}

func genTraceLevel(g *General, a []string, _ int) (string, error) {
	lvl := a[len(a)-1]
	n, err := intIn(lvl, -1<<31, 1<<31-1)
	if err != nil {
		return "", err
	}
	if len(a) == 2 {
		if err := oneOf(a[0], "general", "threading", "bic", "netlink", "ntp", "servo", "clocks", "most", "all"); err != nil {
			return "", err
		}
		if a[0] != "general" && a[0] != "most" && a[0] != "all" {
			return "", nil
		}
	}
	g.TraceLevel = n
	return "", nil
}

func genHotplug(g *General, a []string, _ int) (string, error) {
	switch v := a[0]; v {
	case HotplugNetlink:
		g.Hotplug = HotplugNetlink
		return "", nil
	case HotplugManual, "manual-with-scan":
		g.Hotplug = HotplugManual
		if v != HotplugManual {
			return "manual-with-scan is run as manual: no initial scan of interfaces", nil
		}
		return "", nil
	case "auto", "probe", "netlink-and-probe":
		g.Hotplug = HotplugNetlink
		return fmt.Sprintf("'%s' is run as netlink, as current sfptpd does", v), nil
	}
	return "", fmt.Errorf("bad value '%s' (want netlink or manual)", a[0])
}

func instPriority(in *Instance, a []string) (string, error) {
	n, err := intIn(a[0], 0, 255)
	if err != nil {
		return "", fmt.Errorf("bad value '%s' (want 0..255, lower is preferred)", a[0])
	}
	in.Priority = n
	return "", nil
}

func instSyncThreshold(in *Instance, a []string) (string, error) {
	d, err := nsDuration(a[0])
	in.SyncThreshold = d
	return "", err
}

func instPID(p bool) func(*Instance, []string) (string, error) {
	return func(in *Instance, a []string) (string, error) {
		f, err := pidValue(a[0])
		if p {
			in.PIDFilterP = f
		} else {
			in.PIDFilterI = f
		}
		return "", err
	}
}

func ntpPoll(in *Instance, a []string) (string, error) {
	n, err := intIn(a[0], 1, 1<<31-1)
	if err != nil {
		return "", fmt.Errorf("bad value '%s' (want whole seconds, at least 1)", a[0])
	}
	in.NTPPollInterval = time.Duration(n) * time.Second
	return "", nil
}

func ntpServer(in *Instance, a []string) (string, error) {
	for _, s := range a {
		if err := hostPort(s); err != nil {
			return "", err
		}
		if len(in.NTPServers) >= maxServers {
			return "", fmt.Errorf("more than %d servers", maxServers)
		}
		in.NTPServers = append(in.NTPServers, s)
	}
	return "", nil
}

func ptpMode(in *Instance, a []string) (string, error) {
	switch w := a[0]; w {
	case "slave":
		in.Mode, in.ModeWord = "slave", w
		return "", nil
	case "master":
		in.Mode, in.ModeWord = "master", w
		return "", nil
	case "master-only":
		in.Mode, in.ModeWord = "master", w
		return "", nil
	case "monitor":
		return "", errors.New("monitor mode is not supported by ptpd (want slave or master, or master-only)")
	}
	return "", fmt.Errorf("bad value '%s' (want slave or master); sfptpd's master-only is read as master", a[0])
}

// ptpRange is a profile's range for a PTP interval or timeout.
type ptpRange struct{ lo, hi, def int }

// ptpProfiles are the ranges and defaults of sfptpd's profiles; an
// instance without ptp_profile is checked against default-e2e's ranges
// but keeps the ptp package's defaults.
var ptpProfiles = map[string]map[string]ptpRange{
	"default-e2e": {"announce": {-4, 4, 1}, "sync": {-4, 4, 0}, "delayreq": {-4, 5, 0}, "timeout": {2, 127, 6}},
	"enterprise":  {"announce": {0, 0, 0}, "sync": {-4, 4, 0}, "delayreq": {-4, 5, 0}, "timeout": {3, 3, 3}},
}

func ptpProfile(in *Instance, a []string) (string, error) {
	switch a[0] {
	case "default-p2p":
		return "", errors.New("default-p2p is not supported by ptpd (it has no peer delay mechanism)")
	case "default-e2e", "enterprise":
	default:
		return "", oneOf(a[0], "default-e2e", "default-p2p", "enterprise")
	}
	in.Profile = a[0]
	r := ptpProfiles[a[0]]
	set := func(p **int, v int) { *p = &v }
	set(&in.AnnounceInterval, r["announce"].def)
	set(&in.SyncInterval, r["sync"].def)
	set(&in.DelayReqInterval, r["delayreq"].def)
	set(&in.AnnounceTimeout, r["timeout"].def)
	return "", nil
}

func ptpInterval(field func(*Instance) **int, kind string) func(*Instance, []string) (string, error) {
	return func(in *Instance, a []string) (string, error) {
		prof := in.Profile
		if prof == "" {
			prof = "default-e2e"
		}
		r := ptpProfiles[prof][kind]
		n, err := intIn(a[0], int64(r.lo), int64(r.hi))
		if err != nil {
			return "", fmt.Errorf("bad value '%s' (want %d..%d for profile %s)", a[0], r.lo, r.hi, prof)
		}
		*field(in) = &n
		return "", nil
	}
}

func ptpBMC(field func(*Instance) **int) func(*Instance, []string) (string, error) {
	return func(in *Instance, a []string) (string, error) {
		n, err := intIn(a[0], 0, 255)
		if err != nil {
			return "", err
		}
		*field(in) = &n
		return "", nil
	}
}

func ptpLatency(tx bool) func(*Instance, []string) (string, error) {
	return func(in *Instance, a []string) (string, error) {
		n, err := intIn(a[0], -1<<31, 1<<31-1)
		if err != nil {
			return "", fmt.Errorf("bad value '%s' (want whole nanoseconds)", a[0])
		}
		d := time.Duration(n)
		if tx {
			in.TxLatency = d
		} else {
			in.RxLatency = d
		}
		return "", nil
	}
}
