package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tickbox-fw/tickbox/internal/ctxtime"
	"github.com/tickbox-fw/tickbox/internal/testdaemon"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// daemonOrder is the order the daemons start in and the table lists.
var daemonOrder = []string{"ptpd", "mctpd", "mctpd-peer", "mdiod", "appliance", "hub"}

// setup is everything the run made: the directory, namespaces, ptp4l,
// the relay, the daemons, and what the load needs to know of them.
type setup struct {
	cfg     config
	dir     string
	keep    bool
	cleanup []func()

	daemons map[string]*daemon
	relay   *relay

	ptpMode      string // what ptpd runs, for the report
	ptpInstance  string
	ptpIface     string
	nsS          *ptptest.NS // ptpd's and the appliance's namespace
	ptpCtl       string      // ptpd's sfptpd control socket
	msgLog       string      // ptpd's message log
	mdiodIPC     string
	mdiodHP      string // mdiod's hotplug datagram socket
	mdiodConsole string
	hubConsole   string
	demuxA       string // mctpd's demux (EID 8)
	demuxB       string // mctpd-peer's (EID 9)
	phyID1       int    // PHY A's ID registers, read at start
	phyID2       int

	timeout    time.Duration
	pace       time.Duration
	maxPayload int
	tally      *tally
	late       atomic.Int64
	// stopResponder ends the echo responder (idempotent).
	stopResponder func()
}

func (s *setup) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	if s.keep {
		fmt.Fprintf(os.Stderr, "soak: logs kept in %s\n", s.dir)
	} else {
		os.RemoveAll(s.dir)
	}
}

func (s *setup) defer_(f func()) { s.cleanup = append(s.cleanup, f) }

func newSetup(c config) (*setup, error) {
	dir, err := os.MkdirTemp("", "soak")
	if err != nil {
		return nil, err
	}
	s := &setup{cfg: c, dir: dir, keep: c.keep, daemons: map[string]*daemon{}, tally: newTally(),
		timeout: c.timeout, pace: c.pace, maxPayload: c.maxPayload}
	bins, err := testdaemon.BuildInto(dir, "ptpd", "mctpd", "mdiod", "appliance", "ctl")
	if err != nil {
		return s, err
	}
	start := func(name, kea string, argv ...string) error {
		d, err := startDaemon(dir, name, kea, argv...)
		if err != nil {
			return err
		}
		s.daemons[name] = d
		s.defer_(d.kill)
		return d.waitUp(60 * time.Second)
	}

	// ptpd's namespace, linked to the grandmaster's.
	nsM, err := ptptest.NewNS("tbsoakm")
	if err != nil {
		return s, err
	}
	s.defer_(func() { nsM.Close() })
	s.nsS, err = ptptest.NewNS("tbsoaks")
	if err != nil {
		return s, err
	}
	s.defer_(func() { s.nsS.Close() })
	s.ptpIface = "tbsoak0"
	if err := ptptest.Veth(nsM, "tbsoakm0", "169.254.47.1/24", s.nsS, s.ptpIface, "169.254.47.2/24"); err != nil {
		return s, err
	}
	s.ptpCtl = filepath.Join(dir, "ptpd.ctl")
	s.msgLog = filepath.Join(dir, "ptpd-messages.log")
	general := fmt.Sprintf("[general]\ncontrol_path %s\nstate_path %s\nmessage_log %s\nstats_log %s\njson_stats %s\nhotplug_detection_mode manual\n",
		s.ptpCtl, filepath.Join(dir, "ptpd-state"), s.msgLog, filepath.Join(dir, "ptpd-stats.log"), filepath.Join(dir, "ptpd-stats.json"))
	var ptpdCfg string
	if why := ptptest.Available(); why == "" {
		gm, err := ptptest.StartPtp4l(nsM, ptptest.Ptp4lConfig{Iface: "tbsoakm0", Dir: dir, Options: ptptest.MasterOptions()})
		if err != nil {
			return s, err
		}
		s.defer_(gm.Stop)
		s.ptpInstance = "ptp1"
		s.ptpMode = "PTP instance ptp1, slave of a free-running ptp4l over a veth pair"
		ptpdCfg = general + "sync_module ptp ptp1\n\n[ptp1]\nptp_mode slave\ninterface " + s.ptpIface + "\nptp_domain 0\n"
	} else {
		s.ptpInstance = "fr1"
		s.ptpMode = "freerun instance fr1 (no PTP peer: " + why + ")"
		ptpdCfg = general + "sync_module freerun fr1\nselection_policy manual fr1\n"
	}
	cfgPath := filepath.Join(dir, "ptpd.cfg")
	if err := os.WriteFile(cfgPath, []byte(ptpdCfg), 0o644); err != nil {
		return s, err
	}
	sock := func(n string) string { return filepath.Join(dir, n) }
	if err := start("ptpd", sock("ptpd.sock"), "ip", "netns", "exec", s.nsS.Name, bins["ptpd"],
		"-f", cfgPath, "-kea", sock("ptpd.sock"), "-virtual-clock", "500us,30", "-stats-interval", "1s"); err != nil {
		return s, err
	}

	// Two mctpds joined by the relay's ptys.
	s.relay, err = newRelay(sock("ttyA"), sock("ttyB"))
	if err != nil {
		return s, err
	}
	s.defer_(s.relay.close)
	s.demuxA = fmt.Sprintf("soak%d-a", os.Getpid())
	s.demuxB = fmt.Sprintf("soak%d-b", os.Getpid())
	for _, m := range []struct {
		name, eid, demux, tty string
	}{{"mctpd", fmt.Sprint(eidA), s.demuxA, "ttyA"}, {"mctpd-peer", fmt.Sprint(eidB), s.demuxB, "ttyB"}} {
		if err := start(m.name, sock(m.name+".sock"), bins["mctpd"], "-e", m.eid, "-demux", m.demux, "-tagged-demux", m.demux+"-tagged",
			"-kea", sock(m.name+".sock"), "-state", sock(m.name+"-state"), "serial", sock(m.tty)); err != nil {
			return s, err
		}
	}

	s.mdiodIPC, s.mdiodHP, s.mdiodConsole = sock("mdiod.socket"), sock("mdiod-hotplug.sock"), sock("mdiod-console.sock")
	if err := start("mdiod", sock("mdiod.sock"), bins["mdiod"], "-port", "A=sim:88e1512,link=up", "-port", "B=sim:generic100",
		"-kea", sock("mdiod.sock"), "-ipc-server", s.mdiodIPC, "-console", s.mdiodConsole, "-hotplug", s.mdiodHP); err != nil {
		return s, err
	}
	if err := start("appliance", sock("appliance.sock"), "ip", "netns", "exec", s.nsS.Name, bins["appliance"],
		"-sfptpd-socket", s.ptpCtl, "-target", s.mdiodHP, "-kea", sock("appliance.sock")); err != nil {
		return s, err
	}

	// The hub fronts them all.
	var cs []string
	for _, n := range daemonOrder[:len(daemonOrder)-1] {
		cs = append(cs, fmt.Sprintf("%q: {\"socket-type\": \"unix\", \"socket-name\": %q}", n, s.daemons[n].kea))
	}
	hubCfg := sock("hub.json")
	if err := os.WriteFile(hubCfg, []byte(`{"Control-agent": {"control-sockets": {`+strings.Join(cs, ", ")+`}}}`), 0o644); err != nil {
		return s, err
	}
	s.hubConsole = sock("hub-console.sock")
	if err := start("hub", sock("hub.sock"), bins["ctl"], "serve", "-config", hubCfg, "-kea", sock("hub.sock"),
		"-dgram", "", "-ipc", "", "-console", s.hubConsole, "-http", "", "-password-file", "",
		// A slow daemon is then lost, as it would be directly, rather
		// than answered with the hub's timeout error.
		"-forward-timeout", s.timeout.String()); err != nil {
		return s, err
	}

	// What the checks compare with: PHY A's ID registers.
	for _, r := range []struct {
		addr int
		out  *int
	}{{2, &s.phyID1}, {3, &s.phyID2}} {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		rep, err := s.daemons["mdiod"].call(ctx, fmt.Sprintf(`{"command":"mdio_read","arguments":{"phy":1,"address":%d}}`, r.addr))
		cancel()
		if err != nil {
			return s, err
		}
		if err := json.Unmarshal(rep.Arguments, r.out); err != nil {
			return s, fmt.Errorf("mdio_read: %w", err)
		}
	}
	if s.phyID1 != 0x0141 {
		return s, fmt.Errorf("simulated 88E1512 reads ID1 %#x, not Marvell's 0x0141", s.phyID1)
	}

	// The PTP instance locks before the load starts, and the serial
	// line carries traffic both ways.
	if err := waitCond(60*time.Second, func() bool { st, err := s.ptpState(); return err == nil && st.ok() }); err != nil {
		st, e := s.ptpState()
		return s, fmt.Errorf("ptpd's %s not ready (%+v, %v): %w", s.ptpInstance, st, e, err)
	}
	// One echo responder serves the whole run: two would both answer.
	resp, err := demux.DialTagged(s.demuxB+"-tagged", echoType)
	if err != nil {
		return s, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); echoResponder(ctx, s, resp) }()
	s.stopResponder = func() { cancel(); <-done }
	s.defer_(s.stopResponder)
	if err := waitCond(s.timeout, func() bool { return s.probeEcho(2*time.Second) == nil }); err != nil {
		return s, fmt.Errorf("no MCTP echo between the mctpds: %w\n%s\n%s", err, s.daemons["mctpd"].logTail(10), s.daemons["mctpd-peer"].logTail(10))
	}
	// The appliance has told both targets of the interfaces.
	if err := waitCond(s.timeout, func() bool { p, err := s.appliancePending(); return err == nil && p == 0 }); err != nil {
		return s, fmt.Errorf("appliance's start-up datagrams: %w", err)
	}
	return s, nil
}

// keaNames are the daemons the Kea load picks from: all of them
// directly, the fronted ones through the hub.
func (s *setup) keaNames(viaHub bool) []string {
	if viaHub {
		return daemonOrder[:len(daemonOrder)-1]
	}
	return daemonOrder
}

type ptpState struct {
	Name     string
	State    string
	Selected bool
}

func (p ptpState) ok() bool {
	if p.Name == "ptp1" {
		return p.State == "slave" && p.Selected
	}
	return p.Name != "" && p.Selected
}

func (s *setup) ptpState() (ptpState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	r, err := s.daemons["ptpd"].call(ctx, `{"command":"instances-get"}`)
	if err != nil {
		return ptpState{}, err
	}
	var a struct{ Instances []ptpState }
	if err := json.Unmarshal(r.Arguments, &a); err != nil {
		return ptpState{}, err
	}
	for _, in := range a.Instances {
		if in.Name == s.ptpInstance {
			return in, nil
		}
	}
	return ptpState{}, fmt.Errorf("no instance %s", s.ptpInstance)
}

// rotations counts logrotate rounds.
type rotations struct {
	sent, ok, failed int
	errs             []string
}

// rotateLoop renames ptpd's message log every interval, as logrotate
// does, sends logrotate on the sfptpd control socket and checks that
// the old file got the command's notice and a new file at the path
// says the logs were reopened.
func (s *setup) rotateLoop(ctx context.Context, r *rotations) {
	prev := s.msgLog + ".1"
	for ctxtime.Sleep(ctx, s.cfg.rotate) {
		if err := os.Rename(s.msgLog, prev); err != nil {
			r.failed++
			r.errs = append(r.errs, err.Error())
			continue
		}
		r.sent++
		if err := dgram.Send(s.ptpCtl, "logrotate"); err != nil {
			r.failed++
			r.errs = append(r.errs, err.Error())
			continue
		}
		err := waitCond(s.timeout, func() bool {
			n, _ := os.ReadFile(s.msgLog)
			o, _ := os.ReadFile(prev)
			return strings.Contains(string(n), "logrotate: log files reopened") &&
				strings.Contains(string(o), "received 'logrotate' control command: rotating logs")
		})
		if err != nil {
			r.failed++
			if len(r.errs) < 5 {
				r.errs = append(r.errs, fmt.Sprintf("round %d: message log not reopened: %v", r.sent, err))
			}
			continue
		}
		r.ok++
	}
}

// hotplugs counts the veth pairs made and removed.
type hotplugs struct {
	adds, dels int
	present    bool
	errs       []error
}

const hpA, hpB = "soakhp0", "soakhp1"

// hotplugLoop creates a veth pair in the appliance's namespace, deletes
// it at the next tick, and so on.
func (s *setup) hotplugLoop(ctx context.Context, h *hotplugs) {
	for ctxtime.Sleep(ctx, s.cfg.hotplug) {
		var err error
		if h.present {
			if err = ipCmd("-n", s.nsS.Name, "link", "del", hpA); err == nil {
				h.dels++
				h.present = false
			}
		} else {
			if err = ipCmd("-n", s.nsS.Name, "link", "add", hpA, "type", "veth", "peer", "name", hpB); err == nil {
				h.adds++
				h.present = true
			}
		}
		if err != nil {
			h.errs = append(h.errs, err)
			return
		}
	}
}

// hotplugCleanup deletes a pair left in place.
func (s *setup) hotplugCleanup(h *hotplugs) error {
	err := errors.Join(h.errs...)
	if h.present {
		if e := ipCmd("-n", s.nsS.Name, "link", "del", hpA); e != nil {
			return errors.Join(err, e)
		}
		h.dels++
		h.present = false
	}
	return err
}

// applianceStatus is the part of the appliance's status-get the soak
// reads.
type applianceStatus struct {
	Inserts, Removes uint64
	Targets          []struct {
		Path                  string
		Sent, Failed, Dropped uint64
		Pending               int
	}
}

func (s *setup) applianceStatus() (applianceStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	r, err := s.daemons["appliance"].call(ctx, `{"command":"status-get"}`)
	if err != nil {
		return applianceStatus{}, fmt.Errorf("appliance: %w", err)
	}
	var st applianceStatus
	if err := json.Unmarshal(r.Arguments, &st); err != nil {
		return st, fmt.Errorf("appliance status-get: %w", err)
	}
	return st, nil
}

func (s *setup) appliancePending() (int, error) {
	st, err := s.applianceStatus()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range st.Targets {
		n += t.Pending
	}
	return n, nil
}

// counters are the datagram counts compared at the end.
type counters struct {
	ptpdDgram, mdiodDgram uint64
	appliance             applianceStatus
}

func (s *setup) dgramRequests(name string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	r, err := s.daemons[name].call(ctx, `{"command":"status-get"}`)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	var st struct {
		Requests map[string]map[string]uint64
	}
	if err := json.Unmarshal(r.Arguments, &st); err != nil {
		return 0, fmt.Errorf("%s status-get: %w", name, err)
	}
	var n uint64
	for _, v := range st.Requests["dgram"] {
		n += v
	}
	return n, nil
}

func (s *setup) counters() (counters, error) {
	var c counters
	var err error
	if c.ptpdDgram, err = s.dgramRequests("ptpd"); err != nil {
		return c, err
	}
	if c.mdiodDgram, err = s.dgramRequests("mdiod"); err != nil {
		return c, err
	}
	c.appliance, err = s.applianceStatus()
	return c, err
}

// checkDatagrams sets what the appliance and the logrotate loop sent
// against what the appliance saw and what ptpd and mdiod ran.
func (s *setup) checkDatagrams(a, b counters, rotations int, h *hotplugs) error {
	var errs []error
	ins, rem := b.appliance.Inserts-a.appliance.Inserts, b.appliance.Removes-a.appliance.Removes
	fmt.Printf("hotplug: %d veth pairs created, %d deleted; appliance counted %d inserts, %d removes\n", h.adds, h.dels, ins, rem)
	if ins != uint64(2*h.adds) || rem != uint64(2*h.dels) {
		errs = append(errs, fmt.Errorf("appliance counted %d inserts and %d removes for %d pairs created and %d deleted", ins, rem, h.adds, h.dels))
	}
	sent := map[string]uint64{}
	for _, tb := range b.appliance.Targets {
		for _, ta := range a.appliance.Targets {
			if ta.Path != tb.Path {
				continue
			}
			d := tb.Sent - ta.Sent
			sent[tb.Path] = d
			fmt.Printf("  to %s: %d sent, %d failed attempts, %d dropped\n", filepath.Base(tb.Path), d, tb.Failed-ta.Failed, tb.Dropped-ta.Dropped)
			if d != ins+rem || tb.Dropped != ta.Dropped {
				errs = append(errs, fmt.Errorf("appliance target %s: %d sent and %d dropped for %d events", tb.Path, d, tb.Dropped-ta.Dropped, ins+rem))
			}
		}
	}
	pd, md := b.ptpdDgram-a.ptpdDgram, b.mdiodDgram-a.mdiodDgram
	fmt.Printf("datagrams run: ptpd %d (%d logrotate + %d hotplug), mdiod %d (%d hotplug)\n", pd, rotations, sent[s.ptpCtl], md, sent[s.mdiodHP])
	if pd != uint64(rotations)+sent[s.ptpCtl] {
		errs = append(errs, fmt.Errorf("ptpd ran %d datagrams, %d were sent", pd, uint64(rotations)+sent[s.ptpCtl]))
	}
	if md != sent[s.mdiodHP] {
		errs = append(errs, fmt.Errorf("mdiod ran %d datagrams, %d were sent", md, sent[s.mdiodHP]))
	}
	return errors.Join(errs...)
}
