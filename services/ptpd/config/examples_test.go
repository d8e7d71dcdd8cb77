package config

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadExample parses testdata/sfptpd/NAME, configs written for this test
// in the layout (sections and keywords) of sfptpd's shipped examples.
func loadExample(t *testing.T, name string, opts Options) *Config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sfptpd", name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseOptions(name, b, opts)
	if err != nil {
		t.Fatalf("%s does not load: %v", name, err)
	}
	return c
}

// summary is "name:module:mode:interface:clock" per instance.
func summary(c *Config) string {
	var s []string
	for _, in := range c.Instances {
		s = append(s, in.Name+":"+in.Module+":"+in.ModeWord+":"+in.Interface+":"+in.Clock)
	}
	return strings.Join(s, " ")
}

func warnings(c *Config) []string {
	var s []string
	for _, w := range c.Warnings {
		s = append(s, w.Msg)
	}
	return s
}

func TestSfptpdExamples(t *testing.T) {
	const sfcNICs = "non_solarflare_nics"
	const xlxNICs = "non_xilinx_nics"
	tests := []struct {
		file      string
		instances string
		ignored   []string
		warnings  int
		check     func(t *testing.T, c *Config)
	}{
		{"default.cfg", "fr1:freerun:::system", []string{sfcNICs}, 0, func(t *testing.T, c *Config) {
			if g := c.General; g.MessageLog != "syslog" || g.StatsLog != "" || !reflect.DeepEqual(g.ClockReadonly, []string{"system"}) {
				t.Errorf("general = %+v", g)
			}
		}},
		{"default-systemd.cfg", "fr1:freerun:::system", []string{xlxNICs}, 0, func(t *testing.T, c *Config) {
			if g := c.General; g.Daemon || !reflect.DeepEqual(g.ClockReadonly, []string{"system"}) {
				t.Errorf("general = %+v", g)
			}
		}},
		{"default-sysv.cfg", "fr1:freerun:::system", []string{"daemon", xlxNICs}, 0, func(t *testing.T, c *Config) {
			if !c.General.Daemon {
				t.Errorf("daemon not recorded")
			}
		}},
		{"freerun.cfg", "fr1:freerun:::", []string{sfcNICs}, 0, func(t *testing.T, c *Config) {
			if c.General.StatsLog != "stdout" || c.General.MessageLog != "stderr" {
				t.Errorf("general = %+v", c.General)
			}
		}},
		{"ntp.cfg", "ntp1:ntp:::", []string{"ntp_key"}, 1, nil},
		{"ptp_slave.cfg", "ptp1:ptp:slave:eth1:", []string{sfcNICs, "epoch_guard"}, 0, func(t *testing.T, c *Config) {
			if in := c.Instances[0]; in.Mode != "slave" || in.Domain != 0 || in.TxLatency != 0 || c.General.EpochGuard != "correct-clock" {
				t.Errorf("ptp1 = %+v", in)
			}
		}},
		{"ptp_master_freerun.cfg", "fr1:freerun::: ptp1:ptp:master:eth1:", []string{sfcNICs, "ptp_network_mode", "ptp_mgmt_msgs"}, 0, nil},
		{"ptp_master_ntp.cfg", "ptp1:ptp:master:eth1: ntp1:ntp:::", []string{xlxNICs, "ptp_network_mode", "ptp_mgmt_msgs", "ntp_key"}, 1, func(t *testing.T, c *Config) {
			p, n := c.Instances[0], c.Instances[1]
			if p.Priority != 20 || *p.Priority1 != 128 || *p.Priority2 != 128 || *p.AnnounceInterval != 1 || *p.SyncInterval != 0 || *p.DelayReqInterval != 0 || n.Priority != 10 {
				t.Errorf("instances = %+v", c.Instances)
			}
		}},
		{"ptp_slave_ntp_fallback.cfg", "ptp1:ptp:slave:eth1: ntp1:ntp:::", []string{sfcNICs, "ntp_key"}, 1, nil},
		{"ptp_slave_chrony_fallback.cfg", "ptp1:ptp:slave:eth1: crny1:crny:::", []string{xlxNICs, "control_script"}, 1, func(t *testing.T, c *Config) {
			if c.General.SelectionHoldoff != time.Minute || c.Instances[0].Priority != 10 || c.Instances[1].Priority != 20 {
				t.Errorf("config = %+v", c)
			}
		}},
		{"ptp_slave_multiple.cfg", "ptp1:ptp:slave:eth1: ptp2:ptp:slave:eth1: ptp3:ptp:slave:eth1:", []string{sfcNICs, "ptp_network_mode"}, 0, func(t *testing.T, c *Config) {
			for i, in := range c.Instances {
				if in.Domain != 100+i {
					t.Errorf("%s domain %d", in.Name, in.Domain)
				}
			}
		}},
		{"ptp_boundary.cfg", "ptps:ptp:slave:eth1: ptpm:ptp:master:eth2:", []string{xlxNICs, "ptp_network_mode"}, 0, func(t *testing.T, c *Config) {
			if c.Instances[0].Domain != 101 || c.Instances[1].Domain != 101 {
				t.Errorf("instances = %+v", c.Instances)
			}
		}},
		{"ptp_domain_bridge.cfg", "ptp1:ptp:slave:eth1: ptpm:ptp:master:eth1:", []string{sfcNICs, "ptp_network_mode"}, 0, func(t *testing.T, c *Config) {
			if c.Instances[0].Domain != 101 || c.Instances[1].Domain != 0 {
				t.Errorf("instances = %+v", c.Instances)
			}
		}},
		{"ptp_slave_lacp.cfg", "ptp1:ptp:slave::", []string{"lacp_bypass"}, 1, nil},
		{"pps_slave.cfg", "pps1:pps:::  ntp1:ntp:::", []string{sfcNICs, "time_of_day", "master_clock_class", "master_time_source", "master_accuracy", "pps_delay", "ntp_key"}, 1, func(t *testing.T, c *Config) {
			if c.General.SelectionPolicy != PolicyManual || c.General.SelectionInstance != "pps1" || c.Instances[0].TimeOfDay != "ntp1" || c.Instances[0].Priority != 10 {
				t.Errorf("config = %+v", c)
			}
		}},
		{"pps_slave_X4542.cfg", "pps1:pps::: crny1:crny::: ptp1:ptp:slave::", []string{"clock_control", sfcNICs, "time_of_day", "function", "pin",
			"master_clock_class", "master_time_source", "master_accuracy", "pps_delay", "ptp_network_mode"}, 2, func(t *testing.T, c *Config) {
			if c.General.ClockControl != ClockStepAtStartup || c.Instances[0].TimeOfDay != "crny1" || c.Instances[2].Priority != 40 {
				t.Errorf("config = %+v", c)
			}
		}},
		{"pps_master_X4542.cfg", "fr1:freerun::: pps1:pps::: ptp1:ptp:master-only::", []string{sfcNICs, "function", "pin", "ptp_network_mode"}, 1, func(t *testing.T, c *Config) {
			if c.Instances[2].Mode != "master" || c.Instances[0].Priority != 10 {
				t.Errorf("config = %+v", c)
			}
		}},
		{"many_instances.cfg", "ptp_gm100:ptp:slave:: ptp_gm101:ptp:slave:: ptp_peer:ptp:slave:: ntp1:ntp::: crny1:crny::: pps1:pps::: fr1:freerun:::",
			[]string{xlxNICs}, 6, func(t *testing.T, c *Config) {
				if c.Instances[0].Domain != 100 || c.Instances[1].Domain != 101 || c.Instances[2].Domain != 0 ||
					c.Warnings[0].Msg != "empty section [ntpd] names no declared sync instance; skipped" {
					t.Errorf("config = %+v", c)
				}
			}},
		{"option-examples.cfg", "ptp1:ptp:slave:eth0: pps1:pps::: crny1:crny::: ntp1:ntp:::", []string{"daemon", "lock", "epoch_guard", "clock_list",
			"timestamping_interfaces", "timestamping_disable_on_exit", xlxNICs, "local_sync_threshold", "selection_policy_rules",
			"hotplug_detection_mode", "trace_level", "ptp_pps_log", "pps_delay", "ptp_mgmt_msgs", "ptp_max_foreign_records", "time_of_day",
			"ptp_pkt_dump", "ptp_network_mode", "ptp_ttl", "ptp_utc_valid_handling", "ptp_timing_acl_allow", "ptp_timing_acl_deny",
			"ptp_timing_acl_order", "ptp_mgmt_acl_allow", "ptp_mgmt_acl_deny", "ptp_mgmt_acl_order", "ptp_sync_pkt_timeout",
			"ptp_delayresp_timeout", "ptp_trace", "master_clock_class", "master_time_source", "master_accuracy", "outlier_filter_type",
			"outlier_filter_size", "outlier_filter_adaption", "pid_filter_p", "pid_filter_i", "fir_filter_size", "ntp_key", "control_script"}, 2,
			func(t *testing.T, c *Config) {
				g := c.General
				if g.MessageLog != "syslog" || g.JSONStats != "/tmp/stats.jsonl" || !g.Daemon || g.Lock || g.EpochGuard != "prevent-sync" ||
					!g.PersistentClockCorrection || len(g.ClockList) != 5 || g.Hotplug != HotplugNetlink || g.PIDFilterP != 0.4 {
					t.Errorf("general = %+v", g)
				}
				p, n := c.Instances[0], c.Instances[3]
				if p.SyncThreshold != time.Microsecond || *p.AnnounceTimeout != 6 || *p.DelayReqInterval != 0 || p.AnnounceInterval != nil ||
					n.NTPPollInterval != time.Second || n.Priority != 20 {
					t.Errorf("instances = %+v", c.Instances)
				}
			}},
	}
	files, err := filepath.Glob("testdata/sfptpd/*.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Fatalf("%d example files, %d test cases", len(files), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			c := loadExample(t, tc.file, noNTPConf)
			if got := summary(c); got != strings.Join(strings.Fields(tc.instances), " ") {
				t.Errorf("instances = %q\nwant        %q", got, tc.instances)
			}
			if got := c.IgnoredKeywords(); !reflect.DeepEqual(got, tc.ignored) {
				t.Errorf("ignored = %q\nwant      %q", got, tc.ignored)
			}
			if len(c.Warnings) != tc.warnings {
				t.Errorf("warnings = %q, want %d", warnings(c), tc.warnings)
			}
			for _, ig := range c.Ignored {
				if ig.File != tc.file || ig.Line <= 0 || ig.Reason == "" || ig.Section == "" {
					t.Errorf("ignored record %+v", ig)
				}
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestAllKeywords loads a file using every keyword of the table, each in
// a section of its module, and checks that no row lacks a use there: a
// keyword added to the table without a test fails here.
func TestAllKeywords(t *testing.T) {
	const name = "testdata/all-keywords.cfg"
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseOptions("all.cfg", b, noNTPConf)
	if err != nil {
		t.Fatal(err)
	}
	// Which module each section belongs to.
	sectionModule := map[string]string{"general": "general"}
	for _, m := range Modules() {
		sectionModule[m] = m
	}
	for _, in := range c.Instances {
		sectionModule[in.Name] = in.Module
	}
	used := map[string]bool{}
	section := "general"
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if t := strip(sc.Text()); strings.HasPrefix(t, "[") {
			section = strings.Trim(t, "[]")
			continue
		}
		toks, err := tokenize(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) > 0 {
			used[sectionModule[section]+"/"+toks[0]] = true
		}
	}
	kws := Keywords()
	if len(kws) < 165 {
		t.Fatalf("only %d keywords in the table", len(kws))
	}
	for _, k := range kws {
		if !used[k.Module+"/"+k.Name] {
			t.Errorf("keyword %s of [%s] is not used in %s", k.Name, k.Module, name)
		}
		if k.Meaning == "" {
			t.Errorf("keyword %s of [%s] has no meaning or reason", k.Name, k.Module)
		}
	}
	// Spot checks of values in sfptpd's units.
	g := c.General
	if g.SelectionHoldoff != 30*time.Second || g.MessageLog != "/var/log/sfptpd messages.log" || g.ClockControl != ClockNoStep ||
		g.PersistentClockCorrection || g.LimitFreqAdjPPB != 50000 || g.Hotplug != HotplugManual || g.TraceLevel != 0 ||
		!reflect.DeepEqual(g.ClockReadonly, []string{"system", "phc1"}) {
		t.Errorf("general = %+v", g)
	}
	p1, _ := c.Instance("ptp1")
	if p1.Mode != "master" || p1.ModeWord != "master-only" || p1.TxLatency != 120 || p1.RxLatency != -80 || p1.Domain != 4 ||
		*p1.AnnounceInterval != 2 || *p1.AnnounceTimeout != 4 || *p1.SyncInterval != -3 || *p1.DelayReqInterval != -2 ||
		*p1.Priority1 != 100 || *p1.Priority2 != 101 || p1.DelayFilter != 9 || p1.Timestamping != "hw" || p1.MaxFreqPPB != 50000 {
		t.Errorf("ptp1 = %+v", p1)
	}
	n1, _ := c.Instance("ntp1")
	if n1.NTPPollInterval != 16*time.Second || n1.SyncThreshold != 10*time.Millisecond || len(n1.NTPServers) != 3 {
		t.Errorf("ntp1 = %+v", n1)
	}
	fr, _ := c.Instance("fr1")
	if fr.Clock != ClockSystem || fr.PIDFilterP != 0.5 {
		t.Errorf("fr1 = %+v", fr)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings = %v", warnings(c))
	}
	// Every ignored row is recorded where used, every supported row is
	// not (except the recorded approximations).
	rec := map[string]bool{}
	for _, ig := range c.Ignored {
		rec[ig.Keyword] = true
	}
	for _, k := range kws {
		if k.Status == Ignored && !rec[k.Name] {
			t.Errorf("ignored keyword %s not recorded", k.Name)
		}
	}
}

func TestNTPConfFallback(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ntpConf := write("ntp.conf", "# ntpd\ndriftfile /var/lib/ntp/drift\nserver 127.127.1.0\nfudge 127.127.1.0 stratum 10\nserver 0.debian.pool.example iburst\npool 1.pool.example\nserver 0.debian.pool.example\nrestrict default\n")
	chrony := write("chrony.conf", "! chrony\npool 2.pool.example iburst maxsources 4\nserver [2001:db8::7]:123\n; server commented.example\nserver 192.0.2.9 iburst\n")
	empty := write("empty.conf", "driftfile /x\n")
	missing := filepath.Join(dir, "missing.conf")
	const cfg = "sync_module ntp n\nsync_module crny c\n[c]\nntp_server own.example\n"
	tests := []struct {
		name    string
		files   []string
		servers []string
		from    string
		warn    string
	}{
		{"first existing file wins", []string{missing, ntpConf, chrony}, []string{"0.debian.pool.example", "1.pool.example"}, ntpConf, ""},
		{"chrony syntax", []string{missing, chrony}, []string{"2.pool.example", "[2001:db8::7]:123", "192.0.2.9"}, chrony, ""},
		{"file without servers", []string{empty, ntpConf}, nil, empty, "ntp instance 'n' has no ntp_server and " + empty + " names no server or pool: it has no NTP server"},
		{"no file", []string{missing}, nil, "", "ntp instance 'n' has no ntp_server and none of " + missing + " exists: it has no NTP server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseOptions("n.cfg", []byte(cfg), Options{NTPConfFiles: tc.files})
			if err != nil {
				t.Fatal(err)
			}
			n, crny := c.Instances[0], c.Instances[1]
			if !reflect.DeepEqual(n.NTPServers, tc.servers) || n.NTPServersFrom != tc.from {
				t.Errorf("ntp servers %q from %q", n.NTPServers, n.NTPServersFrom)
			}
			if !reflect.DeepEqual(crny.NTPServers, []string{"own.example"}) || crny.NTPServersFrom != "" {
				t.Errorf("crny instance took the fallback: %+v", crny)
			}
			var w string
			if len(c.Warnings) == 1 {
				w = c.Warnings[0].Msg
			} else if len(c.Warnings) > 1 {
				t.Fatalf("warnings %v", warnings(c))
			}
			if w != tc.warn {
				t.Errorf("warning %q\nwant    %q", w, tc.warn)
			}
		})
	}
}

// TestREADME checks that the keyword table in the README lists every
// keyword with its status, so that the documentation cannot drift from
// the parser.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, k := range Keywords() {
		row := "| `" + k.Name + "` | " + k.Module + " | " + k.Status.String() + " |"
		if !strings.Contains(text, row) {
			t.Errorf("README lacks the row %q", row)
		}
	}
}
