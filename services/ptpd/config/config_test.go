package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// noNTPConf keeps tests away from the host's ntp.conf and chrony.conf.
var noNTPConf = Options{NTPConfFiles: []string{}}

func parse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := ParseOptions("test.cfg", []byte(text), noNTPConf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "freerun defaults",
			text: "[general]\nsync_module freerun fr1\n",
			check: func(t *testing.T, c *Config) {
				g := c.General
				if g.SelectionPolicy != PolicyAutomatic || g.SelectionHoldoff != 10*time.Second ||
					g.ControlPath != DefaultControlPath || g.ControlMode != 0o660 || g.MessageLog != "stderr" ||
					g.StatsLog != "" || g.JSONStats != "" || g.Hotplug != HotplugNetlink || g.ClockControl != ClockSlewAndStep ||
					!g.PersistentClockCorrection || !g.Lock || g.Daemon || g.EpochGuard != "correct-clock" || g.ClockReadonly != nil {
					t.Fatalf("general = %+v", g)
				}
				want := []Instance{{Name: "fr1", Module: "freerun", Line: 2, Priority: 128, ClockControl: ClockSlewAndStep,
					StepThreshold: DefaultStepThreshold, PIDFilterP: DefaultPIDFilterP, PIDFilterI: DefaultPIDFilterI}}
				if !reflect.DeepEqual(c.Instances, want) || c.Ignored != nil || c.Warnings != nil {
					t.Fatalf("instances = %+v, ignored %v, warnings %v", c.Instances, c.Ignored, c.Warnings)
				}
			},
		},
		{
			name: "everything ptpd had before",
			text: `# comment
[general]
sync_module ptp ptp1 ptp2   # two at once
sync_module freerun fr1
selection_policy manual ptp2
selection_holdoff_interval 3
message_log /tmp/msgs.txt
stats_log stdout
json_stats /tmp/stats.json
state_path /tmp/state
control_path /run/x/control.sock
control_socket_mode 0600
clock_control no-adjust
step_threshold 0.5
pid_filter_p 0.4
pid_filter_i 0.05
hotplug_detection_mode manual

[ptp]
interface eth0
ptp_domain 7

[ptp2]
interface eth1
ptp_mode master
priority 10
pid_filter_p 0.2

[fr1]
priority 200
interface eth2
`,
			check: func(t *testing.T, c *Config) {
				g := c.General
				if g.SelectionPolicy != PolicyManual || g.SelectionInstance != "ptp2" || g.SelectionHoldoff != 3*time.Second ||
					g.MessageLog != "/tmp/msgs.txt" || g.StatsLog != "stdout" || g.JSONStats != "/tmp/stats.json" ||
					g.StatePath != "/tmp/state" || g.ControlPath != "/run/x/control.sock" || g.ControlMode != 0o600 ||
					g.ClockControl != ClockNoAdjust || g.StepThreshold != 500*time.Millisecond || g.PIDFilterP != 0.4 ||
					g.PIDFilterI != 0.05 || g.Hotplug != HotplugManual {
					t.Fatalf("general = %+v", g)
				}
				if len(c.Instances) != 3 {
					t.Fatalf("instances = %+v", c.Instances)
				}
				p1, p2, fr := c.Instances[0], c.Instances[1], c.Instances[2]
				if p1.Name != "ptp1" || p1.Interface != "eth0" || p1.Domain != 7 || p1.Mode != "slave" || p1.Priority != 128 || p1.PIDFilterP != 0.4 || p1.ClockControl != ClockNoAdjust {
					t.Errorf("ptp1 = %+v", p1)
				}
				if p2.Interface != "eth1" || p2.Domain != 7 || p2.Mode != "master" || p2.ModeWord != "master" || p2.Priority != 10 || p2.PIDFilterP != 0.2 {
					t.Errorf("ptp2 = %+v", p2)
				}
				if fr.Module != "freerun" || fr.Priority != 200 || fr.Interface != "eth2" || fr.Clock != "" || fr.Line != 4 {
					t.Errorf("fr1 = %+v", fr)
				}
			},
		},
		{
			name: "instance section before module defaults still wins",
			text: "sync_module ptp p\n[p]\ninterface a\n[ptp]\ninterface b\nptp_domain 3\n",
			check: func(t *testing.T, c *Config) {
				if in := c.Instances[0]; in.Interface != "a" || in.Domain != 3 {
					t.Fatalf("p = %+v", in)
				}
			},
		},
		{
			name: "off and manual-startup",
			text: "[general]\nsync_module freerun a b\nstats_log off\nselection_policy manual-startup b\n[freerun]\npriority 5\n[a]\n",
			check: func(t *testing.T, c *Config) {
				if c.General.StatsLog != "" || c.General.SelectionPolicy != PolicyManualStartup || c.General.SelectionInstance != "b" {
					t.Fatalf("general = %+v", c.General)
				}
				if c.Instances[0].Priority != 5 || c.Instances[1].Priority != 5 {
					t.Fatalf("instances = %+v", c.Instances)
				}
			},
		},
		{
			name: "freerun on the system clock",
			text: "sync_module freerun fr1 fr2\n[fr1]\ninterface system\n[fr2]\ninterface eth3\n",
			check: func(t *testing.T, c *Config) {
				if a, b := c.Instances[0], c.Instances[1]; a.Interface != "" || a.Clock != ClockSystem || b.Interface != "eth3" || b.Clock != "" {
					t.Fatalf("instances = %+v", c.Instances)
				}
			},
		},
		{
			name: "ptp_mode spellings",
			text: "sync_module ptp a b c\n[ptp]\ninterface eth0\n[a]\nptp_mode slave\n[b]\nptp_mode master\n[c]\nptp_mode master-only\n",
			check: func(t *testing.T, c *Config) {
				got := ""
				for _, in := range c.Instances {
					got += in.Mode + "/" + in.ModeWord + " "
				}
				if got != "slave/slave master/master master/master-only " {
					t.Fatalf("modes = %q", got)
				}
			},
		},
		{
			name: "sfptpd units and mapping of ptp options",
			text: `sync_module ptp p
limit_freq_adj 100000
[ptp]
interface eth0
ptp_profile default-e2e
ptp_sync_pkt_interval -4
[p]
ptp_tx_latency 0x10
ptp_rx_latency -25
sync_threshold 2500.5
timestamping sw
ptp_bmc_priority1 7
mpd_filter_size 25
ptp_network_mode multicast
`,
			check: func(t *testing.T, c *Config) {
				in := c.Instances[0]
				if in.TxLatency != 16*time.Nanosecond || in.RxLatency != -25*time.Nanosecond || in.SyncThreshold != 2500*time.Nanosecond ||
					in.Timestamping != "sw" || *in.Priority1 != 7 || in.Priority2 != nil || in.DelayFilter != 25 || in.MaxFreqPPB != 100000 ||
					in.Profile != "default-e2e" || *in.AnnounceInterval != 1 || *in.SyncInterval != -4 || *in.DelayReqInterval != 0 || *in.AnnounceTimeout != 6 {
					t.Fatalf("p = %+v", in)
				}
				// The port applies the latencies: nothing is ignored.
				if len(c.Ignored) != 0 {
					t.Fatalf("ignored = %+v", c.Ignored)
				}
			},
		},
		{
			name: "outlier filter: defaults, module section, instance section",
			text: `sync_module ptp p1 p2 p3
[ptp]
interface eth0
outlier_filter_size 30
outlier_filter_adaption 0.5
[p2]
outlier_filter_size 0x3c
outlier_filter_adaption 0
[p3]
outlier_filter_adaption 1
`,
			check: func(t *testing.T, c *Config) {
				for i, w := range []struct {
					size     int
					adaption float64
				}{{30, 0.5}, {60, 0}, {30, 1}} {
					in := c.Instances[i]
					if in.OutlierFilterSize != w.size || in.OutlierFilterAdaption == nil || *in.OutlierFilterAdaption != w.adaption {
						t.Errorf("%s: size %d adaption %v, want %d %v", in.Name, in.OutlierFilterSize, in.OutlierFilterAdaption, w.size, w.adaption)
					}
				}
				if len(c.Ignored) != 0 {
					t.Fatalf("ignored = %+v", c.Ignored)
				}
				d := parse(t, "sync_module ptp p\n[p]\ninterface eth0\n").Instances[0]
				if d.OutlierFilterSize != 0 || d.OutlierFilterAdaption != nil {
					t.Fatalf("unset: size %d adaption %v, want the ptp package's defaults", d.OutlierFilterSize, d.OutlierFilterAdaption)
				}
			},
		},
		{
			name: "quoting, escapes, dashes in keywords and re-entered sections",
			text: "[general]\nsync_module freerun fr1\nmessage-log \"/var/log/a b.log\" # comment\n[fr1]\npriority 3\n[general]\nstats_log 'x#y'\njson_stats a\\ b\n",
			check: func(t *testing.T, c *Config) {
				if g := c.General; g.MessageLog != "/var/log/a b.log" || g.StatsLog != "x#y" || g.JSONStats != "a b" {
					t.Fatalf("general = %+v", g)
				}
			},
		},
		{
			name: "ntp servers, poll interval and a module declared without instances",
			text: "sync_module ntp n1\nsync_module crny\n[ntp]\nntp_poll_interval 8\n[n1]\nntp_server a.example b.example:1123 [2001:db8::1]:123\nntp_server 192.0.2.1\n",
			check: func(t *testing.T, c *Config) {
				in := c.Instances[0]
				if len(c.Instances) != 1 || in.NTPPollInterval != 8*time.Second || in.NTPServersFrom != "" ||
					!reflect.DeepEqual(in.NTPServers, []string{"a.example", "b.example:1123", "[2001:db8::1]:123", "192.0.2.1"}) || c.Warnings != nil {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "clock_control approximations are recorded",
			text: "sync_module freerun f\nclock_control step-forward\nhotplug_detection_mode probe\n",
			check: func(t *testing.T, c *Config) {
				if c.General.ClockControl != ClockNoStep || c.General.Hotplug != HotplugNetlink || len(c.Ignored) != 2 ||
					!strings.Contains(c.Ignored[0].String(), "config: ignoring keyword 'clock_control' at test.cfg:2: step-forward is run as no-step") {
					t.Fatalf("general %+v ignored %v", c.General, c.Ignored)
				}
			},
		},
		{
			name: "ignored keyword with checked value, once per line even with many instances",
			text: "sync_module ptp a b\n[ptp]\ninterface eth0\nptp_ttl 64\n",
			check: func(t *testing.T, c *Config) {
				want := []IgnoredKeyword{{File: "test.cfg", Line: 4, Section: "ptp", Keyword: "ptp_ttl", Reason: "ptpd sends PTP multicast with TTL 1 (one link)"}}
				if !reflect.DeepEqual(c.Ignored, want) {
					t.Fatalf("ignored = %+v", c.Ignored)
				}
			},
		},
		{
			name: "warnings: ptp without interface, empty unknown section, ntp without servers",
			text: "sync_module ptp p\nsync_module ntp n\n[nobody]\n",
			check: func(t *testing.T, c *Config) {
				var got []string
				for _, w := range c.Warnings {
					got = append(got, w.String())
				}
				want := []string{
					"config: test.cfg:3: empty section [nobody] names no declared sync instance; skipped",
					"config: test.cfg:1: ptp instance 'p' has no interface (set \"interface IF\" in [p] or [ptp]); it cannot start",
					"config: test.cfg:2: ntp instance 'n' has no ntp_server: it has no NTP server",
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("warnings:\n%s", strings.Join(got, "\n"))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, parse(t, tc.text))
		})
	}
}

func TestParseErrors(t *testing.T) {
	const fr = "sync_module freerun fr1\n"
	const pt = "sync_module ptp p1\n[ptp]\ninterface eth0\n"
	tests := []struct{ text, want string }{
		{"", "f.cfg: no sync instances: declare one in [general], e.g. \"sync_module freerun fr1\""},
		{"sync_module crny\n", "f.cfg: no sync instances: declare one in [general], e.g. \"sync_module freerun fr1\""},
		// Unknown keywords.
		{fr + "bogus 1\n", "f.cfg:2: unknown keyword 'bogus' in [general]"},
		{fr + "[ptp]\nfoo 1\n", "f.cfg:3: unknown keyword 'foo' in [ptp]"},
		{fr + "[fr1]\nntp-bogus 1\n", "f.cfg:3: unknown keyword 'ntp_bogus' in [fr1]"},
		// Wrong section.
		{fr + "[fr1]\nptp_domain 1\n", "f.cfg:3: ptp_domain: not an option of freerun instance 'fr1'"},
		{fr + "[freerun]\nptp_domain 1\n", "f.cfg:3: ptp_domain: not an option of [freerun]"},
		{fr + "[fr1]\nselection_policy automatic\n", "f.cfg:3: selection_policy: a [general] option, not allowed in [fr1]"},
		{fr + "ptp_domain 1\n", "f.cfg:2: ptp_domain: not a [general] option (it belongs in [ptp] or an instance section)"},
		{pt + "[p1]\nptp_profile default-e2e\n", "f.cfg:5: ptp_profile: global option, not allowed in instance section [p1] (set it in [ptp])"},
		{pt + "[p1]\nlacp_bypass off\n", "f.cfg:5: lacp_bypass: global option, not allowed in instance section [p1] (set it in [ptp])"},
		{fr + "[other]\ninterface x\n", "f.cfg:2: section [other] is not a declared sync instance (declare it in [general] with \"sync_module MODULE other\")"},
		// Values per type.
		{fr + "[ptp]\nptp_domain 300\n", "f.cfg:3: ptp_domain: bad value '300' (want an integer 0..255)"},
		{fr + "[ptp]\nptp_domain 1.5\n", "f.cfg:3: ptp_domain: bad value '1.5' (want an integer 0..255)"},
		{fr + "non_solarflare_nics yes\n", "f.cfg:2: non_solarflare_nics: bad value 'yes' (want on or off)"},
		{fr + "epoch_guard never\n", "f.cfg:2: epoch_guard: bad value 'never' (want alarm-only, prevent-sync, correct-clock)"},
		{fr + "run_dir_mode 0999\n", "f.cfg:2: run_dir_mode: bad value '0999' (want an octal mode such as 0660)"},
		{fr + "sync_interval 4\n", "f.cfg:2: sync_interval: bad value '4' (want an integer -5..3)"},
		{fr + "local_sync_threshold x\n", "f.cfg:2: local_sync_threshold: bad value 'x' (want a number 0..1e+15)"},
		{fr + "openmetrics_acl_allow 10.0.0.0/33\n", "f.cfg:2: openmetrics_acl_allow: bad network prefix '10.0.0.0/33' (want a.b.c.d/len)"},
		{fr + "selection_policy_rules state state\n", "f.cfg:2: selection_policy_rules: 'state' listed more than once"},
		{fr + "reporting_intervals save_state\n", "f.cfg:2: reporting_intervals: expects at least 2 value(s), got 1"},
		{fr + "reporting_intervals save_state 1 stats_log\n", "f.cfg:2: reporting_intervals: expects KEY INTERVAL pairs"},
		{fr + "clustering_guard on 2\n", "f.cfg:2: clustering_guard: only a clustering threshold of 1 is allowed"},
		{fr + "daemon yes\n", "f.cfg:2: daemon: expects 0 value(s), got 1"},
		{fr + "trace_level cpu 3\n", "f.cfg:2: trace_level: bad value 'cpu' (want general, threading, bic, netlink, ntp, servo, clocks, most, all)"},
		{fr + "limit_freq_adj 0\n", "f.cfg:2: limit_freq_adj: bad value '0' (want ppb, more than 0)"},
		{pt + "ptp_announce_interval 5\n", "f.cfg:4: ptp_announce_interval: bad value '5' (want -4..4 for profile default-e2e)"},
		{pt + "ptp_profile enterprise\nptp_announce_timeout 6\n", "f.cfg:5: ptp_announce_timeout: bad value '6' (want 3..3 for profile enterprise)"},
		{pt + "ptp_tx_latency 1.5\n", "f.cfg:4: ptp_tx_latency: bad value '1.5' (want whole nanoseconds)"},
		{pt + "sync_threshold -1\n", "f.cfg:4: sync_threshold: bad value '-1' (want nanoseconds, e.g. 1000)"},
		{pt + "ptp_utc_valid_handling override\n", "f.cfg:4: ptp_utc_valid_handling: override expects the offset in seconds"},
		{pt + "mpd_filter_size 26\n", "f.cfg:4: mpd_filter_size: bad value '26' (want an integer 1..25)"},
		{pt + "outlier_filter_size 4\n", "f.cfg:4: outlier_filter_size: bad value '4' (PTP outlier filter size outside allowed range [5,60])"},
		{pt + "outlier_filter_size 61\n", "f.cfg:4: outlier_filter_size: bad value '61' (PTP outlier filter size outside allowed range [5,60])"},
		{pt + "outlier_filter_size 3.5\n", "f.cfg:4: outlier_filter_size: bad value '3.5' (want an integer 5..60)"},
		{pt + "[p1]\noutlier_filter_size 0x3d\n", "f.cfg:5: outlier_filter_size: bad value '0x3d' (PTP outlier filter size outside allowed range [5,60])"},
		{pt + "outlier_filter_adaption 1.01\n", "f.cfg:4: outlier_filter_adaption: bad value '1.01' (PTP outlier filter adaption outside allowed range of [0,1])"},
		{pt + "outlier_filter_adaption -0.5\n", "f.cfg:4: outlier_filter_adaption: bad value '-0.5' (PTP outlier filter adaption outside allowed range of [0,1])"},
		{pt + "outlier_filter_adaption half\n", "f.cfg:4: outlier_filter_adaption: bad value 'half' (want a number 0..1)"},
		{pt + "outlier_filter_adaption nan\n", "f.cfg:4: outlier_filter_adaption: bad value 'nan' (want a number 0..1)"},
		{pt + "outlier_filter_size 30 40\n", "f.cfg:4: outlier_filter_size: expects 1 value(s), got 2"},
		{fr + "[ptp]\noutlier_filter_type std-dev\n", "f.cfg:3: outlier_filter_type: not an option of [ptp]"},
		{pt + "timestamping both\n", "f.cfg:4: timestamping: bad value 'both' (want hw, sw, auto)"},
		{"sync_module ntp n\n[n]\nntp_poll_interval 0\n", "f.cfg:3: ntp_poll_interval: bad value '0' (want whole seconds, at least 1)"},
		{"sync_module ntp n\n[n]\nntp_key 0 abc\n", "f.cfg:3: ntp_key: bad key id '0' (want a non-zero number)"},
		{"sync_module ntp n\n[n]\nntp_server a:b:c:\n", "f.cfg:3: ntp_server: bad server 'a:b:c:' (want HOST or HOST:PORT)"},
		{"sync_module ntp n\n[n]\nntp_server host:99999\n", "f.cfg:3: ntp_server: bad server 'host:99999' (want HOST or HOST:PORT)"},
		{"sync_module crny c\n[c]\nclock_control maybe\n", "f.cfg:3: clock_control: bad value 'maybe' (want on or off)"},
		{"sync_module pps p\n[pps]\ntime_of_day nobody\n", "f.cfg:1: time_of_day: sync instance 'nobody' of pps instance 'p' is not declared"},
		{"sync_module pps p\n[p]\nfunction pps-sideways\n", "f.cfg:3: function: bad value 'pps-sideways' (want pps-in, pps-out, none)"},
		{"sync_module gps g\n[g]\ngpsd a b c\n", "f.cfg:3: gpsd: expects at most 2 value(s), got 3"},
		// Modes and settings ptpd refuses.
		{fr + "[ptp]\nptp_mode both\n", "f.cfg:3: ptp_mode: bad value 'both' (want slave or master); sfptpd's master-only is read as master"},
		{pt + "[p1]\nptp_mode monitor\n", "f.cfg:5: ptp_mode: monitor mode is not supported by ptpd (want slave or master, or master-only)"},
		{pt + "ptp_delay_mechanism peer-to-peer\n", "f.cfg:4: ptp_delay_mechanism: peer-to-peer is not supported by ptpd (end-to-end only); a peer-delay network would leave the path delay unmeasured"},
		{pt + "ptp_network_mode hybrid-no-fallback\n", "f.cfg:4: ptp_network_mode: hybrid-no-fallback is not supported by ptpd (it sends Delay_Req by multicast only)"},
		{pt + "transport ipv6\n", "f.cfg:4: transport: ipv6 is not supported by ptpd (PTP over UDP/IPv4 only)"},
		{pt + "ptp_profile default-p2p\n", "f.cfg:4: ptp_profile: default-p2p is not supported by ptpd (it has no peer delay mechanism)"},
		// The general options ptpd had before.
		{"sync_module ntpd n1\n", "f.cfg:1: sync_module: unknown module 'ntpd' (want freerun, ptp, pps, ntp, crny, gps)"},
		{"sync_module\n", "f.cfg:1: sync_module: expects a module and instance names"},
		{fr + "sync_module freerun fr1\n", "f.cfg:2: sync_module: instance 'fr1' already declared at line 1"},
		{"sync_module freerun bad/name\n", "f.cfg:1: sync_module: bad instance name 'bad/name'"},
		{"sync_module freerun ptp\n", "f.cfg:1: sync_module: bad instance name 'ptp'"},
		{fr + "selection_policy sometimes\n", "f.cfg:2: selection_policy: bad value 'sometimes' (want automatic, manual or manual-startup)"},
		{fr + "selection_policy manual\n", "f.cfg:2: selection_policy: manual expects one instance name"},
		{fr + "selection_policy automatic fr1\n", "f.cfg:2: selection_policy: automatic takes no instance"},
		{fr + "\nselection_policy manual nope\n", "f.cfg:3: selection_policy: sync instance 'nope' is not declared"},
		{fr + "selection_holdoff_interval -1\n", "f.cfg:2: selection_holdoff_interval: bad value '-1' (want whole seconds, 0 or more)"},
		{fr + "selection_holdoff_interval\n", "f.cfg:2: selection_holdoff_interval: expects 1 value(s), got 0"},
		{fr + "message_log a b\n", "f.cfg:2: message_log: expects 1 value(s), got 2"},
		{fr + "control_path relative.sock\n", "f.cfg:2: control_path: bad value 'relative.sock' (want an absolute path or @abstract name of at most 107 bytes)"},
		{fr + "control_socket_mode 0999\n", "f.cfg:2: control_socket_mode: bad value '0999' (want an octal mode such as 0660)"},
		{fr + "clock_control sometimes\n", "f.cfg:2: clock_control: bad value 'sometimes' (want slew-and-step, step-at-startup, no-step, no-adjust, step-forward or step-on-first-lock)"},
		{fr + "step_threshold abc\n", "f.cfg:2: step_threshold: bad value 'abc' (want seconds 0.1..10, e.g. 0.9)"},
		{fr + "step_threshold 11\n", "f.cfg:2: step_threshold: bad value '11' (want seconds 0.1..10, e.g. 0.9)"},
		{fr + "pid_filter_p -1\n", "f.cfg:2: pid_filter_p: bad value '-1' (want a number from 0 to 1000)"},
		{fr + "pid_filter_i NaN\n", "f.cfg:2: pid_filter_i: bad value 'NaN' (want a number from 0 to 1000)"},
		{fr + "hotplug_detection_mode udev\n", "f.cfg:2: hotplug_detection_mode: bad value 'udev' (want netlink or manual)"},
		{fr + "[fr1]\npriority 256\n", "f.cfg:3: priority: bad value '256' (want 0..255, lower is preferred)"},
		{fr + "[fr1]\ninterface a/b\n", "f.cfg:3: interface: bad interface name 'a/b'"},
		// Syntax.
		{fr + "[fr1\n", "f.cfg:2: malformed section header \"[fr1\""},
		{fr + "[a b]\n", "f.cfg:2: bad section name \"a b\""},
		{fr + "stats_log \x01\n", "f.cfg:2: line contains control characters or invalid UTF-8"},
		{fr + "message_log \"unterminated\n", "f.cfg:2: unterminated quote"},
		{fr + "x] 1\n", "f.cfg:2: unexpected square brackets in 'x]'"},
		{fr + strings.Repeat("x", 5000) + "\n", "f.cfg:2: line longer than 4096 bytes"},
		{fr + "clock_list" + strings.Repeat(" c", 64) + "\n", "f.cfg:2: clock_list: more than 63 values"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := ParseOptions("f.cfg", []byte(tc.text), noNTPConf)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant  %s", err, tc.want)
			}
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T, want *Error", err)
			}
		})
	}
}

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"  a\tb  c ", []string{"a", "b", "c"}},
		{"a # b", []string{"a"}},
		{"a#b", []string{"a"}},
		{`a "b c" 'd e'`, []string{"a", "b c", "d e"}},
		{`a "#x" 'q"r'`, []string{"a", "#x", `q"r`}},
		{`a b\ c \#d`, []string{"a", "b c", "#d"}},
		{`a ""`, []string{"a", ""}},
		{"# only", nil},
	}
	for _, tc := range tests {
		got, err := tokenize(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("tokenize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ptpd.cfg")
	if err := os.WriteFile(p, []byte("[general]\nsync_module freerun fr1\nbad_key x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOptions(p, noNTPConf)
	if err == nil || err.Error() != p+":3: unknown keyword 'bad_key' in [general]" {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("missing: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || err.Error() != big+": file is larger than 1048576 bytes" {
		t.Fatalf("big: %v", err)
	}
}

func TestStartError(t *testing.T) {
	tests := []struct{ text, want string }{
		{"sync_module freerun f\nsync_module ptp p\n[p]\nptp_domain 0\n", "test.cfg:2: ptp instance 'p' has no interface (set \"interface IF\" in [p] or [ptp])"},
		{"sync_module ptp p\n[ptp]\ninterface eth0\n", ""},
		{"sync_module ntp n\nsync_module pps s\n", ""},
	}
	for _, tc := range tests {
		err := parse(t, tc.text).StartError()
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
			t.Errorf("%q: StartError() = %v, want %q", tc.text, err, tc.want)
		}
	}
}
