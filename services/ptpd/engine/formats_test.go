package engine

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// The golden files under testdata/golden were written from sfptpd's
// printf formats, not from this package's output: each is what sfptpd's
// renderer prints for the values in the statuses below.
//
//	*.stats          sfptpd_log_render_rt_stat_text (engine's write_rt_stats_log)
//	*.json           sfptpd_log_render_rt_stat_json (engine's write_rt_stats_json)
//	state-ptp*       the PTP module's save-state formats (slave, master, other)
//	state-fr1        the freerun module's save-state format
//	sync-instances   the engine's write_sync_instances
//	topology-*       the modules' write-topology and sfptpd_log_topology_write_*
//	ptp-nodes        the PTP module's ptp-nodes table
//	interfaces       the engine's write_interfaces

var goldenTime = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

const goldenGM = "00a0:69ff:fe01:0203"

func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptpStatus() *instance.PTPStatus {
	return &instance.PTPStatus{Domain: 0, Transport: "IPv4", HWTimestamps: true, ProfileID: [6]byte{0, 0x1b, 0x19, 0, 1, 0},
		ProfileName: "default-e2e", ProfileVersion: "1.0", DelayMechanism: "end-to-end", TwoStep: true, SlaveOnly: true,
		ParentPort: 1, LocalPort: 1, GMClockAccuracy: 0x21, GMPriority1: 128, GMPriority2: 128, PTPTimescale: true, UTCOffset: 37,
		Nodes: []instance.Node{{State: "master", ClockID: goldenGM, PortNumber: 1}, {State: "master", ClockID: "00a0:69ff:fe01:0204", PortNumber: 2}}}
}

func ptpSlave() instance.Status {
	return instance.Status{Name: "ptp1", Module: "ptp", Interface: "eth0", State: instance.Slave, Clock: "phc0(eth0)",
		ClockID: "0011:22ff:fe33:4455", InSync: true, Disciplining: true, OffsetNS: -3.25, FreqAdjPPB: 1204.113,
		PathDelayNS: 512, ParentID: goldenGM, GrandmasterID: goldenGM, Source: "gm", ActiveInterface: "eth0",
		HasPI: true, PTerm: 1.95, ITerm: 1202.163, ClockClass: 6, AccuracyNS: 100, StepsRemoved: 1, UserPriority: 128,
		PTP: ptpStatus()}
}

func ptpBlocked() instance.Status {
	p := ptpStatus()
	return instance.Status{Name: "ptp2", Module: "ptp", Interface: "eth1", State: instance.Slave, Clock: "phc1(eth1)",
		OffsetNS: -0.0004, FreqAdjPPB: -17.5, PathDelayNS: 1000.0005, ParentID: goldenGM, GrandmasterID: goldenGM,
		Source: "gm", ActiveInterface: "eth1", Alarms: []string{"no-announce-pkts", instance.AlarmNoDelayResps, instance.AlarmNoSyncPkts},
		PTP: p}
}

func ntpSlave() instance.Status {
	return instance.Status{Name: "ntp1", Module: "ntp", State: instance.Slave, Clock: "system", Source: "ntp", OffsetNS: 1.5}
}

func servoEntry() instance.Status {
	return instance.Status{Name: "servo1", State: instance.Slave, Clock: "system", MasterClock: "phc0(eth0)",
		MasterTime: time.Date(2025, 6, 1, 12, 0, 0, 123, time.UTC), SlaveTime: time.Date(2025, 6, 1, 11, 59, 59, 999999000, time.UTC),
		Disciplining: true, InSync: true, Alarms: []string{instance.AlarmClockNearEpoch}, OffsetNS: 12.3456, FreqAdjPPB: -3}
}

func TestStatsGolden(t *testing.T) {
	tests := []struct {
		name    string
		st      instance.Status
		blocked bool
	}{
		{"ptp_slave", ptpSlave(), false},
		{"ptp_blocked_alarms", ptpBlocked(), true},
		{"ntp_slave", ntpSlave(), false},
		{"servo", servoEntry(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !HasRTStats(tc.st) {
				t.Fatal("no realtime stats entry")
			}
			if got, want := StatsLine(goldenTime, tc.st, tc.blocked), golden(t, tc.name+".stats"); got != want {
				t.Errorf("text stats\n got %q\nwant %q", got, want)
			}
			if got, want := string(JSONStatsLine(goldenTime, tc.st)), golden(t, tc.name+".json"); got != want {
				t.Errorf("json_stats\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestNoRTStats: sfptpd's freerun module writes no stats lines, and PTP
// writes them only as a slave.
func TestNoRTStats(t *testing.T) {
	fr := instance.Status{Name: "fr1", Module: "freerun", State: instance.Freerun, Clock: "system", InSync: true}
	master := ptpSlave()
	master.State = instance.Master
	listening := ptpSlave()
	listening.State = instance.Listening
	for _, st := range []instance.Status{fr, master, listening} {
		if HasRTStats(st) {
			t.Errorf("%s in state %s has a realtime stats entry", st.Name, st.State)
		}
	}
}

// TestJSONStatsRoundTrip parses written lines the way sfptpd's example
// reader does and gets back what was written.
func TestJSONStatsRoundTrip(t *testing.T) {
	tests := []struct {
		st          instance.Status
		master      JSONClock
		slave       JSONClock
		keys        []string
		alarms      []string
		disciplined bool
	}{
		{ptpSlave(), JSONClock{Name: "gm"}, JSONClock{Name: "phc0(eth0)", PrimaryInterface: "eth0"},
			[]string{"offset", "freq-adj", "one-way-delay", "parent-id", "gm-id", "active-interface", "p-term", "i-term"}, []string{}, true},
		{ptpBlocked(), JSONClock{Name: "gm"}, JSONClock{Name: "phc1(eth1)", PrimaryInterface: "eth1"},
			[]string{"offset", "freq-adj", "one-way-delay", "parent-id", "gm-id", "active-interface"},
			[]string{"no-sync-pkts", "no-delay-resps", "no-announce-pkts"}, false},
		{ntpSlave(), JSONClock{Name: "ntp"}, JSONClock{Name: "system"}, []string{"offset"}, []string{}, false},
		{servoEntry(), JSONClock{Name: "phc0(eth0)", Time: "2025-06-01 12:00:00.000000123", PrimaryInterface: "eth0"},
			JSONClock{Name: "system", Time: "2025-06-01 11:59:59.999999000"}, []string{"offset", "freq-adj"}, []string{"clock-near-epoch"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.st.Name, func(t *testing.T) {
			p, err := ParseJSONStats(JSONStatsLine(goldenTime, tc.st))
			if err != nil {
				t.Fatal(err)
			}
			if p.Instance != tc.st.Name || p.Time != "2025-06-01 12:00:00.123456" || p.Master != tc.master || p.Slave != tc.slave ||
				p.Disciplining != tc.disciplined || p.InSync != tc.st.InSync || strings.Join(p.Alarms, ",") != strings.Join(tc.alarms, ",") {
				t.Fatalf("parsed %+v", p)
			}
			var keys []string
			for _, s := range p.Stats {
				keys = append(keys, s.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tc.keys, ",") {
				t.Fatalf("stats keys %v, want %v", keys, tc.keys)
			}
			want := map[string]float64{"offset": tc.st.OffsetNS, "freq-adj": tc.st.FreqAdjPPB, "one-way-delay": tc.st.PathDelayNS,
				"p-term": tc.st.PTerm, "i-term": tc.st.ITerm}
			for _, s := range p.Stats {
				if v, ok := want[s.Key]; ok {
					// Six decimals: the value comes back within half a
					// millionth.
					if !s.IsNum || math.Abs(s.Num-v) > 5e-7 {
						t.Errorf("%s = %+v, want %v", s.Key, s, v)
					}
				}
			}
			if s, ok := p.Stat("parent-id"); tc.st.PTP != nil && (!ok || s.Str != tc.st.ParentID) {
				t.Errorf("parent-id %+v", s)
			}
		})
	}
	if _, err := ParseJSONStats([]byte(`{"instance":"x","time":"t","clock-master":{"name":"gm"},"clock-slave":{"name":"s"},"is-disciplining":true,"in-sync":true,"alarms":[]}`)); err == nil {
		t.Fatal("a line without stats parsed")
	}
}

func TestStateFilesGolden(t *testing.T) {
	master := instance.Status{Name: "ptp3", Module: "ptp", Interface: "eth2", State: instance.Master, Clock: "system", ClockID: "system",
		ActiveInterface: "eth2", GrandmasterID: "0011:22ff:fe33:9999", ParentID: "0011:22ff:fe33:9999", ClockClass: 248,
		PTP: &instance.PTPStatus{Domain: 4, Transport: "IPv4", ProfileID: [6]byte{0, 0x1b, 0x19, 0, 1, 0}, ProfileName: "default-e2e",
			ProfileVersion: "1.0", DelayMechanism: "end-to-end", TwoStep: true, GMClockAccuracy: 0xfe, GMPriority1: 128, GMPriority2: 128}}
	listening := instance.Status{Name: "ptp4", Module: "ptp", Interface: "eth3", State: instance.Listening, Clock: "phc2(eth3)",
		ClockID: "0011:22ff:fe33:7777", ActiveInterface: "eth3", Alarms: []string{instance.AlarmNoInterface, instance.AlarmNoSyncPkts},
		PTP: &instance.PTPStatus{Transport: "IPv4", HWTimestamps: true, DelayMechanism: "end-to-end"}}
	fr := instance.Status{Name: "fr1", Module: "freerun", State: instance.Freerun, Clock: "system", ClockID: "system", InSync: true}
	tests := []struct {
		file      string
		st        instance.Status
		selected  bool
		clockCtrl bool
	}{
		{"state-ptp1", ptpSlave(), true, true},
		{"state-ptp3", master, false, false},
		{"state-ptp4", listening, false, false},
		{"state-fr1", fr, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			if got, want := stateText(tc.st, tc.selected, tc.clockCtrl), golden(t, tc.file); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}

	boundary := ptpSlave()
	boundary.Clock, boundary.ClockID, boundary.PTP.HWTimestamps = "system", "system", false
	boundary.ParentID, boundary.StepsRemoved, boundary.PTP.ParentPort, boundary.OffsetNS = "0011:22ff:fe00:0001", 3, 3, 250
	boundary.Alarms = []string{instance.AlarmNoDelayResps}
	topo := []struct {
		file string
		st   instance.Status
	}{
		{"topology-ptp-slave", ptpSlave()},
		{"topology-boundary", boundary},
		{"topology-freerun", fr},
		{"topology-master", master},
	}
	for _, tc := range topo {
		t.Run(tc.file, func(t *testing.T) {
			if got, want := topologyText(tc.st), golden(t, tc.file); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}

	listening.UserPriority, listening.AccuracyNS = 10, math.Inf(1)
	listening.ClockClass = 255
	fr.UserPriority, fr.ClockClass, fr.AccuracyNS = 200, 248, math.Inf(1)
	snaps := []snapshot{
		{st: ptpSlave(), selected: true, running: true, rank: 1},
		{st: listening, running: true, rank: 3},
		{st: fr, manual: true, running: true, rank: 2},
	}
	t.Run("sync-instances", func(t *testing.T) {
		if got, want := syncInstancesText(snaps), golden(t, "sync-instances"); got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("ptp-nodes", func(t *testing.T) {
		// Only ptp1 has heard nodes; a listening port without any adds
		// no rows, freerun has no table.
		listening.PTP.Nodes = nil
		if got, want := ptpNodesText([]snapshot{snaps[0], {st: listening, running: true}, snaps[2]}), golden(t, "ptp-nodes"); got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("interfaces", func(t *testing.T) {
		ifs := []Interface{
			{Name: "eth0", PTPCaps: "hw & sw", RxTimestampCaps: "hw & sw", MAC: "00:11:22:33:44:55"},
			{Name: "wlan0", PTPCaps: "sw", RxTimestampCaps: "sw", MAC: "02:00:00:aa:bb:cc"},
		}
		if got, want := interfacesText(ifs), golden(t, "interfaces"); got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	})
}

// TestRankSnapshots: the rank column is the selection order.
func TestRankSnapshots(t *testing.T) {
	a, b, c := ptpSlave(), ptpSlave(), ptpSlave()
	b.State = instance.Listening
	c.UserPriority = 1
	cs := []candidate{{rec: &record{index: 0}, st: a}, {rec: &record{index: 1}, st: b}, {rec: &record{index: 2}, st: c}}
	snaps := make([]snapshot, 3)
	rankSnapshots(snaps, cs)
	if snaps[0].rank != 2 || snaps[1].rank != 3 || snaps[2].rank != 1 {
		t.Fatalf("ranks %d %d %d", snaps[0].rank, snaps[1].rank, snaps[2].rank)
	}
}

// TestConfigText: the config copy is what sfptpd writes while it parses
// its file (sfptpd_config_parse_file and config_parse_option feeding
// sfptpd_log_lexed_config): "# Reconstructed from: FILE\n", "\n[SECTION]\n"
// for each header, and each option line's tokens joined by one blank,
// the keyword's dashes made underscores, quotes resolved, comments and
// blank lines gone, and the values of a confidential option (ntp_key)
// printed as "********".
func TestConfigText(t *testing.T) {
	cfg, err := config.Parse("/etc/sfptpd.cfg", []byte(`# sfptpd-style configuration
[general]
sync_module ptp ptp1
sync_module ntp ntp1
message-log   "/var/log/sfptpd messages.log"   # quoted, with a blank
json_stats /run/ptpd/stats.json

[ptp1]
interface eth0
ptp_domain	4
priority 10
[ntp1]
ntp_key 8 MySharedNTPDaemonKey
ntp_server 192.0.2.1
`))
	if err != nil {
		t.Fatal(err)
	}
	want := `# Reconstructed from: /etc/sfptpd.cfg

[general]
sync_module ptp ptp1
sync_module ntp ntp1
message_log /var/log/sfptpd messages.log
json_stats /run/ptpd/stats.json

[ptp1]
interface eth0
ptp_domain 4
priority 10

[ntp1]
ntp_key ******** ********
ntp_server 192.0.2.1
`
	if got := ConfigText(cfg); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestSystemInterfaces reads this host's interfaces: the loopback is not
// listed and every capability word is one of sfptpd's.
func TestSystemInterfaces(t *testing.T) {
	ifs, err := SystemInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	words := map[string]bool{"-": true, "sw": true, "hw": true, "hw & sw": true}
	for _, in := range ifs {
		if in.Name == "lo" || len(in.MAC) == 0 || !words[in.PTPCaps] || !words[in.RxTimestampCaps] {
			t.Errorf("interface %+v", in)
		}
	}
	if got := interfacesText(ifs); !strings.HasPrefix(got, "|        interface | ptp-caps | pkt-timestamping-caps |       mac-address |\n") {
		t.Errorf("interfaces file %q", got)
	}
}

func TestTSCaps(t *testing.T) {
	const (
		sw = 1<<1 | 1<<3 | 1<<4 // TX_SOFTWARE | RX_SOFTWARE | SOFTWARE
		hw = 1<<0 | 1<<2 | 1<<6 // TX_HARDWARE | RX_HARDWARE | RAW_HARDWARE
	)
	tests := []struct {
		flags   uint32
		phc     int32
		ptp, rx string
	}{
		{0, -1, "-", "-"},
		{sw, -1, "sw", "sw"},
		{sw | hw, 0, "hw & sw", "hw & sw"},
		{sw | hw, -1, "sw", "hw & sw"}, // no PHC: no hardware PTP
		{hw, 2, "hw", "hw"},
	}
	for _, tc := range tests {
		if p, r := tsCaps(tc.flags, tc.phc); p != tc.ptp || r != tc.rx {
			t.Errorf("tsCaps(%#x, %d) = %q, %q; want %q, %q", tc.flags, tc.phc, p, r, tc.ptp, tc.rx)
		}
	}
}
