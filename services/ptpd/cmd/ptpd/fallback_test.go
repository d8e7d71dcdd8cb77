package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// fallbackCfg is sfptpd's "PTP slave with NTP fallback" set-up, in
// sfptpd's own syntax and with the keywords its shipped example uses
// (non_solarflare_nics, ntp_key), plus tickbox's ntp_server: ptpd has
// no ntpd to ask for its peers. The holdoff is shortened from sfptpd's
// 10 s to keep the test short; the rule is the same.
const fallbackCfg = `[general]
sync_module ptp ptp1
sync_module ntp ntp1
selection_policy automatic
selection_holdoff_interval 2
message_log DIR/messages.log
stats_log DIR/stats.log
json_stats DIR/stats.json
state_path DIR/state
control_path CONTROL
non_solarflare_nics off
hotplug_detection_mode netlink

[ntp1]
ntp_key 8 MySharedNTPDaemonKey
ntp_server 169.254.31.1
ntp_poll_interval 1

[ptp1]
ptp_mode slave

[ptp]
interface tbfs0
ptp_domain 0
`

// TestFallbackToNTP runs ptpd as sfptpd's ptp_slave_ntp_fallback example
// would: a real ptp4l grandmaster and a real chronyd (serving its clock
// as stratum 8, never adjusting it: -x) share a namespace and a veth
// with ptpd, which runs on a virtual clock. PTP is selected while ptp4l
// runs, NTP takes over when ptp4l stops, PTP is selected again when it
// comes back; json_stats, the state files and the message log follow
// along in sfptpd's formats.
func TestFallbackToNTP(t *testing.T) {
	t.Parallel()
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, "network namespaces: "+why)
	}
	chronyd := testutil.NeedTool(t, "chronyd", "chrony")
	nsM, err := ptptest.NewNS("tbfm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsM.Close() })
	nsS, err := ptptest.NewNS("tbfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsS.Close() })
	if err := ptptest.Veth(nsM, "tbfm0", "169.254.31.1/24", nsS, "tbfs0", "169.254.31.2/24"); err != nil {
		t.Fatal(err)
	}

	// chronyd in the master's namespace: -x never touches the clock,
	// "local stratum 8" serves the clock with no upstream source.
	cdir := testutil.ShortDir(t)
	conf := fmt.Sprintf("local stratum 8\nallow 169.254.31.0/24\nbindaddress 169.254.31.1\ncmdport 0\npidfile %s/chronyd.pid\ndriftfile %s/drift\n", cdir, cdir)
	if err := os.WriteFile(filepath.Join(cdir, "chrony.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	chrony := nsM.Command(chronyd, "-x", "-d", "-f", filepath.Join(cdir, "chrony.conf"))
	chronyOut := &testutil.LockedBuffer{}
	chrony.Stdout, chrony.Stderr = chronyOut, chronyOut
	chrony.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := chrony.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chrony.Process.Kill(); chrony.Wait() })
	// ptpd starts once chronyd serves, so that its first poll is not
	// refused (which it would rightly log as a warning).
	testutil.WaitFor(t, "chronyd listening on port 123", 20*time.Second, func() bool {
		out, _ := nsM.Command("ss", "-Hlun", "sport", "= :123").Output()
		return strings.Contains(string(out), "169.254.31.1:123")
	})

	// ptp4l as grandmaster: clock class 6 and an accuracy of 100 ns, a
	// reference locked to a primary source, which is what a PTP network
	// offers over NTP. (With ptp4l's defaults, class 248 and an unknown
	// accuracy, sfptpd's rules prefer a synchronised NTP server; so do
	// ptpd's.)
	pdir := testutil.ShortDir(t)
	startGM := func() *ptptest.Proc {
		gm, err := ptptest.StartPtp4l(nsM, ptptest.Ptp4lConfig{Iface: "tbfm0", Dir: pdir,
			Options: append(ptptest.MasterOptions(), "clockClass 6", "clockAccuracy 0x21")})
		if err != nil {
			t.Fatal(err)
		}
		return gm
	}
	gm := startGM()
	t.Cleanup(func() { gm.Stop() })

	d := startPtpdIn(t, []string{"ip", "netns", "exec", nsS.Name}, fallbackCfg)
	instances := func() map[string]map[string]any {
		m := testutil.KeaCommand(t, d.kea, "instances-get", nil)
		args, _ := m["arguments"].(map[string]any)
		list, _ := args["instances"].([]any)
		out := map[string]map[string]any{}
		for _, e := range list {
			if in, ok := e.(map[string]any); ok {
				name, _ := in["name"].(string)
				out[name] = in
			}
		}
		return out
	}
	selected := func() string {
		for name, in := range instances() {
			if in["selected"] == true {
				return name
			}
		}
		return ""
	}
	waitSelected := func(want, why string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if selected() == want {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: %s not selected; instances %v\nptpd:\n%s\nchronyd:\n%s", why, want, instances(), tail(d.out.String(), 60), chronyOut)
	}
	waitState := func(name, state string) {
		t.Helper()
		testutil.WaitFor(t, name+" "+state, 60*time.Second, func() bool { return instances()[name]["state"] == state })
	}

	// Both references are up: PTP is the better one.
	waitState("ptp1", "slave")
	waitState("ntp1", "slave")
	waitSelected("ptp1", "grandmaster and NTP server running")
	time.Sleep(time.Second)
	mark1 := len(readFile(t, filepath.Join(d.dir, "stats.json")))

	// The grandmaster stops: NTP takes over after the holdoff.
	gm.Stop()
	waitSelected("ntp1", "grandmaster stopped")
	time.Sleep(time.Second)
	mark2 := len(readFile(t, filepath.Join(d.dir, "stats.json")))

	// It comes back: PTP is selected again.
	gm = startGM()
	waitSelected("ptp1", "grandmaster back")
	// Let some stats intervals pass with PTP selected again.
	time.Sleep(time.Second)

	stats := readFile(t, filepath.Join(d.dir, "stats.json"))
	checkJSONStats(t, stats[:mark1], "ptp1")
	checkJSONStats(t, stats[mark1:mark2], "ntp1")
	checkJSONStats(t, stats[mark2:], "ptp1")

	// The state files name the selected instance.
	syncInst := readFile(t, filepath.Join(d.dir, "state", "sync-instances"))
	for _, name := range []string{"ptp1", "ntp1"} {
		if !strings.Contains(syncInst, name) {
			t.Errorf("sync-instances lacks %s:\n%s", name, syncInst)
		}
		if _, err := os.Stat(filepath.Join(d.dir, "state", "state-"+name)); err != nil {
			t.Errorf("state file: %v", err)
		}
	}

	// The message log is sfptpd's, and tells the story.
	msgs := readFile(t, filepath.Join(d.dir, "messages.log"))
	checkMessageLog(t, msgs)
	for _, want := range []string{"ntp1", "ptp1"} {
		if !regexp.MustCompile(`(?i)select\w* .*` + want).MatchString(msgs) {
			t.Errorf("message log does not show %s being selected:\n%s", want, tail(msgs, 40))
		}
	}
	if bad := warnings(msgs); len(bad) > 0 {
		// A lost grandmaster is worth a warning; nothing else is.
		for _, l := range bad {
			if !strings.Contains(l, "ptp1") {
				t.Errorf("unexpected warning: %s", l)
			}
		}
	}
}

// checkJSONStats checks that every line is sfptpd's json_stats shape and
// that the given instance is the one disciplining the clock.
func checkJSONStats(t *testing.T, text, disciplining string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	n, disc := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		var l struct {
			Instance    string `json:"instance"`
			Time        string `json:"time"`
			ClockMaster struct {
				Name string `json:"name"`
			} `json:"clock-master"`
			ClockSlave struct {
				Name string `json:"name"`
			} `json:"clock-slave"`
			IsDisciplining *bool          `json:"is-disciplining"`
			InSync         *bool          `json:"in-sync"`
			Alarms         []string       `json:"alarms"`
			Stats          map[string]any `json:"stats"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("json_stats line %q: %v", line, err)
		}
		if l.Instance == "" || l.IsDisciplining == nil || l.InSync == nil || l.Stats == nil || l.ClockSlave.Name == "" {
			t.Fatalf("json_stats line lacks sfptpd's keys: %s", line)
		}
		if _, err := time.Parse("2006-01-02 15:04:05.000000", l.Time); err != nil {
			t.Fatalf("json_stats time %q: %v", l.Time, err)
		}
		if l.Instance == "ptp1" && l.ClockMaster.Name != "gm" {
			t.Fatalf("PTP instance's clock-master is %q, sfptpd writes \"gm\": %s", l.ClockMaster.Name, line)
		}
		if _, ok := l.Stats["offset"]; !ok {
			t.Fatalf("json_stats line has no offset: %s", line)
		}
		n++
		if *l.IsDisciplining {
			if l.Instance != disciplining {
				// The switch happens within the window's first lines.
				continue
			}
			disc++
		}
	}
	if n == 0 || disc == 0 {
		t.Fatalf("json_stats: %d lines, %d with %s disciplining:\n%s", n, disc, disciplining, tail(text, 10))
	}
}

// messageLine is sfptpd's message log line.
var messageLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}: (emergency|alert|critical|error|warning|notice|info|debug): `)

func checkMessageLog(t *testing.T, text string) {
	t.Helper()
	n := 0
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if !messageLine.MatchString(l) {
			t.Fatalf("message log line is not sfptpd's form: %q", l)
		}
		n++
	}
	if n < 3 {
		t.Fatalf("message log has %d lines", n)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
