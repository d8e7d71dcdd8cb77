package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
					g.StatsLog != "" || g.JSONStats != "" || g.Hotplug != HotplugNetlink || g.ClockControl != ClockSlewAndStep {
					t.Fatalf("general = %+v", g)
				}
				want := []Instance{{Name: "fr1", Module: "freerun", Line: 2, Priority: 128, ClockControl: ClockSlewAndStep,
					StepThreshold: DefaultStepThreshold, PIDFilterP: DefaultPIDFilterP, PIDFilterI: DefaultPIDFilterI}}
				if !reflect.DeepEqual(c.Instances, want) {
					t.Fatalf("instances = %+v", c.Instances)
				}
			},
		},
		{
			name: "everything",
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
				if p2.Interface != "eth1" || p2.Domain != 7 || p2.Mode != "master" || p2.Priority != 10 || p2.PIDFilterP != 0.2 {
					t.Errorf("ptp2 = %+v", p2)
				}
				if fr.Module != "freerun" || fr.Priority != 200 || fr.Interface != "eth2" || fr.Line != 4 {
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test.cfg", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseErrors(t *testing.T) {
	const fr = "sync_module freerun fr1\n"
	tests := []struct{ text, want string }{
		{"", "f.cfg: no sync instances: declare one in [general], e.g. \"sync_module freerun fr1\""},
		{fr + "bogus 1\n", "f.cfg:2: unknown keyword 'bogus' in [general]"},
		{fr + "[fr1]\nptp_domain 1\n", "f.cfg:3: ptp_domain: not an option of freerun instance 'fr1'"},
		{fr + "[fr1]\nselection_policy automatic\n", "f.cfg:3: unknown keyword 'selection_policy' in [fr1]"},
		{fr + "[ptp]\nfoo 1\n", "f.cfg:3: unknown keyword 'foo' in [ptp]"},
		{fr + "[ptp]\nptp_domain 300\n", "f.cfg:3: ptp_domain: bad value '300' (want 0..255)"},
		{"sync_module ntp n1\n", "f.cfg:1: sync_module: unknown module 'ntp' (want ptp or freerun)"},
		{"sync_module freerun\n", "f.cfg:1: sync_module: expects a module and at least one instance name"},
		{fr + "sync_module freerun fr1\n", "f.cfg:2: sync_module: instance 'fr1' already declared at line 1"},
		{"sync_module freerun bad/name\n", "f.cfg:1: sync_module: bad instance name 'bad/name'"},
		{"sync_module ptp p1\n", "f.cfg:1: ptp instance 'p1' has no interface (set \"interface IF\" in [p1] or [ptp])"},
		{fr + "selection_policy sometimes\n", "f.cfg:2: selection_policy: bad value 'sometimes' (want automatic, manual or manual-startup)"},
		{fr + "selection_policy manual\n", "f.cfg:2: selection_policy: manual expects one instance name"},
		{fr + "selection_policy automatic fr1\n", "f.cfg:2: selection_policy: automatic takes no instance"},
		{fr + "\nselection_policy manual nope\n", "f.cfg:3: selection_policy: sync instance 'nope' is not declared"},
		{fr + "selection_holdoff_interval -1\n", "f.cfg:2: selection_holdoff_interval: bad value '-1' (want whole seconds, 0..3600)"},
		{fr + "selection_holdoff_interval\n", "f.cfg:2: selection_holdoff_interval: expects 1 value(s), got 0"},
		{fr + "message_log a b\n", "f.cfg:2: message_log: expects 1 value(s), got 2"},
		{fr + "control_path relative.sock\n", "f.cfg:2: control_path: bad value 'relative.sock' (want an absolute path or @abstract name of at most 107 bytes)"},
		{fr + "control_socket_mode 0999\n", "f.cfg:2: control_socket_mode: bad value '0999' (want an octal mode such as 0660)"},
		{fr + "clock_control sometimes\n", "f.cfg:2: clock_control: bad value 'sometimes' (want slew-and-step, step-at-startup, no-step or no-adjust)"},
		{fr + "step_threshold abc\n", "f.cfg:2: step_threshold: bad value 'abc' (want seconds, e.g. 0.9)"},
		{fr + "pid_filter_p -1\n", "f.cfg:2: pid_filter_p: bad value '-1' (want a number from 0 to 1000)"},
		{fr + "pid_filter_i NaN\n", "f.cfg:2: pid_filter_i: bad value 'NaN' (want a number from 0 to 1000)"},
		{fr + "hotplug_detection_mode udev\n", "f.cfg:2: hotplug_detection_mode: bad value 'udev' (want netlink or manual)"},
		{fr + "[fr1]\npriority 256\n", "f.cfg:3: priority: bad value '256' (want 0..255, lower is preferred)"},
		{fr + "[fr1]\ninterface a/b\n", "f.cfg:3: interface: bad interface name 'a/b'"},
		{fr + "[ptp1]\n", "f.cfg:2: section [ptp1] is not a declared sync instance (declare it in [general] with \"sync_module ptp|freerun ptp1\")"},
		{fr + "[other]\ninterface x\n", "f.cfg:2: section [other] is not a declared sync instance (declare it in [general] with \"sync_module ptp|freerun other\")"},
		{fr + "[fr1\n", "f.cfg:2: malformed section header \"[fr1\""},
		{fr + "[fr1]\n[fr1]\n", "f.cfg:3: section [fr1] repeated (first at line 2)"},
		{fr + "[a b]\n", "f.cfg:2: bad section name \"a b\""},
		{fr + "stats_log \x01\n", "f.cfg:2: line contains control characters or invalid UTF-8"},
		{fr + strings.Repeat("x", 5000) + "\n", "f.cfg:2: line longer than 4096 bytes"},
		{fr + "[ptp]\nptp_mode both\n", "f.cfg:3: ptp_mode: bad value 'both' (want slave or master)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := Parse("f.cfg", []byte(tc.text))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant  %s", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ptpd.cfg")
	if err := os.WriteFile(p, []byte("[general]\nsync_module freerun fr1\nbad_key x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
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
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big: %v", err)
	}
}

// FuzzConfig checks that the parser never panics, that every error is
// located as FILE: or FILE:LINE: with a line inside the file, and that a
// valid result is internally consistent.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("[general]\nsync_module freerun fr1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fz.cfg", data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "fz.cfg:") {
				t.Fatalf("error not located: %q", msg)
			}
			if e, ok := err.(*Error); ok && e.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("line %d beyond the file: %q", e.Line, msg)
			}
			return
		}
		if len(c.Instances) == 0 {
			t.Fatal("valid config without instances")
		}
		seen := map[string]bool{}
		for _, in := range c.Instances {
			if seen[in.Name] || !validName(in.Name) {
				t.Fatalf("bad or duplicate instance %q", in.Name)
			}
			seen[in.Name] = true
			if in.Module != "ptp" && in.Module != "freerun" {
				t.Fatalf("module %q", in.Module)
			}
			if in.Module == "ptp" && in.Interface == "" {
				t.Fatalf("ptp instance %q without interface", in.Name)
			}
		}
		if n := c.General.SelectionInstance; n != "" && !seen[n] {
			t.Fatalf("selection instance %q not declared", n)
		}
	})
}
