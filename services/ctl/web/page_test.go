package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestPoll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(f *fakeSource)
		check func(t *testing.T, s Snapshot)
	}{
		{"all up", func(*fakeSource) {}, func(t *testing.T, s Snapshot) {
			for _, st := range s.Services {
				if !st.Up || st.Uptime != 3723 || st.Version != "v1.2.3" || st.Status != nil {
					t.Errorf("service %+v", st)
				}
			}
			noErrors(t, s)
			if s.PTP.Selected != "ptp1" || len(s.PTP.Instances) != 2 || *s.PTP.Instances[0].OffsetNS != -12.5 || s.PTP.Instances[0].Master != "0011:22ff:fe33:4455" {
				t.Errorf("ptp %+v", s.PTP)
			}
			if got := s.PTP.Instances[1].Alarms; len(got) != 1 || got[0] != "no-sync" {
				t.Errorf("alarms %v", got)
			}
			if s.MCTP.Endpoint.EID != 8 || len(s.MCTP.Endpoint.Bindings) != 1 || s.MCTP.Endpoint.Bindings[0].MTU != 64 || len(s.MCTP.Routes) != 2 || !s.MCTP.Routes[1].Default {
				t.Errorf("mctp %+v %+v", s.MCTP.Endpoint, s.MCTP.Routes)
			}
			wantMsgs := "messages-in=4 messages-out=5 packets-in=10 packets-out=11 packets-forwarded=0 send-waits=0 demux in=5 demux out=4 demux delivered=4"
			wantDrops := "bad-header=2 no-route=1 demux drop-no-client=3 demux drop-short=0 demux overflows=0"
			if got := counterString(s.MCTP.Stats.Messages); got != wantMsgs {
				t.Errorf("messages %q, want %q", got, wantMsgs)
			}
			if got := counterString(s.MCTP.Stats.Drops); got != wantDrops {
				t.Errorf("drops %q, want %q", got, wantDrops)
			}
			if pt := s.MDIO.Ports; len(pt) != 2 || !*pt[0].Link || pt[0].Speed != 1000 || pt[0].Duplex != "full" || *pt[0].Changes != 1 ||
				pt[0].Backend != "sim:88e1512" || pt[0].PHYID != "0x01410dd1" || *pt[1].Link || *pt[1].Changes != 0 || pt[1].Backend != "sim:generic100" {
				t.Errorf("ports %+v", pt)
			}
			if len(s.MDIO.Events) != 1 || s.MDIO.Events[0].Text != "link up 1000MBit (master)" || s.MDIO.Events[0].What != "A" {
				t.Errorf("mdio events %+v", s.MDIO.Events)
			}
			if len(s.Appliance.Events) != 1 || s.Appliance.Events[0].Text != "insert (up): /run/ptpd/control sent" || s.Appliance.Events[0].What != "eth0 #2" {
				t.Errorf("appliance events %+v", s.Appliance.Events)
			}
		}},
		{"down service", func(f *fakeSource) { f.setDown("mdiod", "connect: connection refused") }, func(t *testing.T, s Snapshot) {
			for _, st := range s.Services {
				if up := st.Service != "mdiod"; st.Up != up {
					t.Errorf("%s up %v", st.Service, st.Up)
				}
				if st.Service == "mdiod" && !strings.Contains(st.Error, "connection refused") {
					t.Errorf("mdiod error %q", st.Error)
				}
			}
			if len(s.MDIO.Ports) != 0 || len(s.MDIO.Errors) != 2 {
				t.Fatalf("mdio %+v", s.MDIO)
			}
			for _, e := range s.MDIO.Errors {
				if !strings.Contains(e, "connection refused") {
					t.Errorf("mdio error %q", e)
				}
			}
			// The others are unaffected.
			if len(s.PTP.Errors)+len(s.MCTP.Errors)+len(s.Appliance.Errors) != 0 || s.PTP.Selected != "ptp1" {
				t.Errorf("other sections %+v %+v %+v", s.PTP, s.MCTP, s.Appliance)
			}
		}},
		{"died during the round", func(f *fakeSource) {
			// Its commands were answered, but status-get found it gone.
			f.setFunc("mdiod", "status-get", func(map[string]any) (hub.Reply, error) {
				return hub.Reply{}, errors.New("kea: dial unix /run/mdiod/control.sock: connect: no such file or directory")
			})
		}, func(t *testing.T, s Snapshot) {
			for _, st := range s.Services {
				if up := st.Service != "mdiod"; st.Up != up {
					t.Errorf("%s up %v", st.Service, st.Up)
				}
			}
			if s.MDIO.Ports == nil || len(s.MDIO.Ports) != 0 {
				t.Errorf("a down mdiod shows ports %+v", s.MDIO.Ports)
			}
			if len(s.MDIO.Events) != 1 {
				t.Errorf("the events seen before are history and stay: %+v", s.MDIO.Events)
			}
			if s.PTP.Selected != "ptp1" || len(s.MCTP.Routes) != 2 {
				t.Errorf("other sections %+v %+v", s.PTP, s.MCTP)
			}
		}},
		{"error replies", func(f *fakeSource) {
			f.setRaw("ptpd", "instances-get", hub.Reply{Result: 1, Text: "engine not running"})
			f.setRaw("mctpd", "routes-get", hub.Reply{Result: 1})
			f.setFunc("appliance", "events-get", func(map[string]any) (hub.Reply, error) {
				return hub.Reply{}, fmt.Errorf("appliance: reading reply: %w", errHung)
			})
		}, func(t *testing.T, s Snapshot) {
			want(t, s.PTP.Errors, "instances-get: engine not running (result 1)")
			want(t, s.MCTP.Errors, "routes-get: result 1")
			want(t, s.Appliance.Errors, "events-get: appliance: reading reply: hung")
			if s.PTP.Selected != "" || len(s.PTP.Instances) != 0 || s.MCTP.Endpoint == nil || s.MCTP.Stats == nil {
				t.Errorf("sections %+v %+v", s.PTP, s.MCTP)
			}
		}},
		{"unsupported command", func(f *fakeSource) { f.setFunc("mdiod", "events-get", nil) }, func(t *testing.T, s Snapshot) {
			want(t, s.MDIO.Errors, "events-get: 'events-get' command not supported. (result 2)")
			if len(s.MDIO.Ports) != 2 {
				t.Errorf("ports %+v", s.MDIO.Ports)
			}
		}},
		{"malformed replies", func(f *fakeSource) {
			f.setRaw("ptpd", "instances-get", hub.Reply{Arguments: json.RawMessage(`[1,2]`)})
			f.setRaw("mctpd", "endpoints-get", hub.Reply{Arguments: json.RawMessage(`{"eid":"eight","bindings":[1,{"name":7,"mtu":64}],"types":[300,-1,"x",5]}`)})
			f.setRaw("mctpd", "stats-get", hub.Reply{Arguments: json.RawMessage(`{"demux":{}}`)})
			f.setFunc("mdiod", "links-get", nil)
			f.setRaw("mdiod", "hw-info-get", hub.Reply{Arguments: json.RawMessage(`{"ports":[{"port":"A","phy":1},{"port":"B","phy":"2"}]}`)})
			f.setRaw("mdiod", "phy_status", hub.Reply{Arguments: json.RawMessage(`{"link":"up"}`)})
			f.setRaw("appliance", "events-get", hub.Reply{})
		}, func(t *testing.T, s Snapshot) {
			want(t, s.PTP.Errors, "instances-get: arguments are not a JSON object")
			want(t, s.MCTP.Errors, "stats-get: no mctp counters")
			want(t, s.Appliance.Errors, "events-get: no arguments")
			e := s.MCTP.Endpoint
			if e == nil || e.EID != 0 || len(e.Bindings) != 1 || e.Bindings[0].Name != "" || e.Bindings[0].MTU != 64 || len(e.Types) != 1 || e.Types[0] != 5 {
				t.Errorf("endpoint %+v", e)
			}
			// Port A's phy_status is unreadable; B has no valid phy to ask.
			if len(s.MDIO.Ports) != 2 || s.MDIO.Ports[0].Link != nil || s.MDIO.Ports[0].Error != "phy_status: no link state" || s.MDIO.Ports[1].Error != "" {
				t.Errorf("ports %+v", s.MDIO.Ports)
			}
		}},
		{"empty result", func(f *fakeSource) {
			f.setRaw("appliance", "events-get", hub.Reply{Result: 3, Text: "no events"})
		}, func(t *testing.T, s Snapshot) {
			noErrors(t, s)
			if s.Appliance.Events == nil || len(s.Appliance.Events) != 0 {
				t.Errorf("events %#v", s.Appliance.Events)
			}
		}},
		{"mdiod without links-get", func(f *fakeSource) { f.setFunc("mdiod", "links-get", nil) }, func(t *testing.T, s Snapshot) {
			noErrors(t, s)
			if pt := s.MDIO.Ports; len(pt) != 2 || !*pt[0].Link || pt[0].Speed != 1000 || pt[0].Role != "master" || pt[0].Changes != nil || pt[0].Backend != "sim:88e1512" || *pt[1].Link {
				t.Errorf("ports %+v", pt)
			}
		}},
		{"links-get fails", func(f *fakeSource) {
			f.setRaw("mdiod", "links-get", hub.Reply{Result: 1, Text: "mdiod is stopping"})
		}, func(t *testing.T, s Snapshot) {
			want(t, s.MDIO.Errors, "links-get: mdiod is stopping (result 1)")
			if len(s.MDIO.Ports) != 0 || len(s.MDIO.Events) != 1 {
				t.Errorf("mdio %+v", s.MDIO)
			}
		}},
		{"malformed links-get", func(f *fakeSource) {
			f.setRaw("mdiod", "links-get", hub.Reply{Arguments: json.RawMessage(`{"ports":[{"port":"A","link":"up","changes":"x","speed":1e300},7]}`)})
		}, func(t *testing.T, s Snapshot) {
			if pt := s.MDIO.Ports; len(pt) != 1 || pt[0].Name != "A" || pt[0].Link != nil || pt[0].Changes != nil || pt[0].Speed != 0 || pt[0].Backend != "sim:88e1512" {
				t.Errorf("ports %+v", pt)
			}
		}},
		{"one port's PHY fails", func(f *fakeSource) {
			f.setFunc("mdiod", "links-get", nil)
			f.setFunc("mdiod", "phy_status", func(args map[string]any) (hub.Reply, error) {
				if args["phy"] == int64(2) {
					return hub.Reply{Result: 1, Text: "PHY B (sim:generic100): no PHY answered"}, nil
				}
				return hub.Reply{Arguments: json.RawMessage(`{"link":true,"speed":100,"duplex":"full"}`)}, nil
			})
		}, func(t *testing.T, s Snapshot) {
			p := s.MDIO.Ports
			if len(p) != 2 || !*p[0].Link || p[0].Speed != 100 || p[1].Link != nil || p[1].Error != "phy_status: PHY B (sim:generic100): no PHY answered (result 1)" {
				t.Errorf("ports %+v", p)
			}
		}},
		{"every mctpd command fails", func(f *fakeSource) {
			f.setFunc("mctpd", "stats-get", nil)
			f.setRaw("mctpd", "endpoints-get", hub.Reply{})
			f.setFunc("mctpd", "routes-get", nil)
		}, func(t *testing.T, s Snapshot) {
			if len(s.MCTP.Errors) != 3 {
				t.Errorf("mctp errors %q", s.MCTP.Errors)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := healthy()
			tc.setup(f)
			p := New(f, Options{Logger: quiet()})
			p.Poll(context.Background())
			s := p.Snapshot(0)
			if s.Round != 1 || s.Time.IsZero() {
				t.Errorf("round %d at %v", s.Round, s.Time)
			}
			tc.check(t, s)
			// Whatever the daemons said, the snapshot encodes and the
			// page renders.
			if _, err := json.Marshal(s); err != nil {
				t.Fatal(err)
			}
			renderOK(t, p)
		})
	}
}

// TestMDIOHWInfo: hw-info-get (which reads every PHY's ID) is asked
// once, and again after mdiod failed to answer or its ports changed;
// links-get every round.
func TestMDIOHWInfo(t *testing.T) {
	t.Parallel()
	f := healthy()
	p := New(f, Options{Logger: quiet()})
	count := func(cmd string) int {
		n := 0
		for _, c := range f.Calls() {
			if strings.HasPrefix(c, "mdiod "+cmd+" ") {
				n++
			}
		}
		return n
	}
	steps := []struct {
		name       string
		do         func()
		links, hw  int
		backendOfA string
	}{
		{"first round", func() {}, 1, 1, "sim:88e1512"},
		{"second round", func() {}, 2, 1, "sim:88e1512"},
		{"mdiod down", func() { f.setDown("mdiod", "connect: connection refused") }, 3, 1, ""},
		{"mdiod back", func() {
			f.setDown("mdiod", "")
			f.set("mdiod", "hw-info-get", map[string]any{"ports": []any{map[string]any{"port": "A", "phy": 1, "backend": "ioctl:eth0:1", "phy_id": "0x01410dd1"}}})
		}, 4, 2, "ioctl:eth0:1"},
		{"a port added", func() {
			f.set("mdiod", "links-get", map[string]any{"ports": []any{map[string]any{"port": "A", "link": true}, map[string]any{"port": "C", "link": false}}})
		}, 5, 3, "ioctl:eth0:1"},
	}
	for _, st := range steps {
		st.do()
		p.Poll(context.Background())
		s := p.Snapshot(0)
		a := ""
		if len(s.MDIO.Ports) > 0 {
			a = s.MDIO.Ports[0].Backend
		}
		if l, h := count("links-get"), count("hw-info-get"); l != st.links || h != st.hw || a != st.backendOfA {
			t.Errorf("%s: links-get %d hw-info-get %d, backend of A %q; want %d %d %q", st.name, l, h, a, st.links, st.hw, st.backendOfA)
		}
	}
}

// TestUnconfigured: a daemon the hub does not front has no section and
// is never asked.
func TestUnconfigured(t *testing.T) {
	t.Parallel()
	f := healthy()
	f.services = []string{"ptpd"}
	p := New(f, Options{Logger: quiet()})
	p.Poll(context.Background())
	s := p.Snapshot(0)
	if s.PTP == nil || s.MCTP != nil || s.MDIO != nil || s.Appliance != nil || len(s.Services) != 1 {
		t.Fatalf("snapshot %+v", s)
	}
	for _, c := range f.Calls() {
		if !strings.HasPrefix(c, "ptpd ") {
			t.Errorf("asked %s", c)
		}
	}
}

// TestTimeout: a daemon that does not answer costs one round its
// timeout, shows as such, and does not hold back the others.
func TestTimeout(t *testing.T) {
	t.Parallel()
	f := healthy()
	f.setFunc("mctpd", "stats-get", nil)
	block := make(chan struct{})
	defer close(block)
	hung := &hangingSource{fakeSource: f, service: "mctpd", block: block}
	p := New(hung, Options{Logger: quiet(), Timeout: 200 * time.Millisecond})
	start := time.Now()
	p.Poll(context.Background())
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("round took %v", d)
	}
	s := p.Snapshot(0)
	for _, e := range s.MCTP.Errors {
		if !strings.Contains(e, "deadline exceeded") {
			t.Errorf("mctp error %q", e)
		}
	}
	if len(s.MCTP.Errors) != 3 || s.PTP.Selected != "ptp1" || len(s.MDIO.Ports) != 2 {
		t.Errorf("snapshot %+v %+v %+v", s.MCTP, s.PTP, s.MDIO)
	}
}

type hangingSource struct {
	*fakeSource
	service string
	block   chan struct{}
}

func (h *hangingSource) Command(ctx context.Context, service, command string, args map[string]any) (hub.Reply, error) {
	if service == h.service && command != "status-get" {
		select {
		case <-ctx.Done():
			return hub.Reply{}, fmt.Errorf("%s: %w", service, ctx.Err())
		case <-h.block:
		}
	}
	return h.fakeSource.Command(ctx, service, command, args)
}

// TestMDIOEvents: the since cursor asks only for new events, the page
// keeps the last Options.Events, and a restarted mdiod (its sequence
// back at a lower number) is read again from its first event.
func TestMDIOEvents(t *testing.T) {
	t.Parallel()
	f := healthy()
	var (
		evs   []any
		last  int
		since []any
	)
	add := func(n int) {
		for i := 0; i < n; i++ {
			last++
			evs = append(evs, map[string]any{"seq": last, "time": "2026-01-02T03:04:05Z", "port": "A", "link": last%2 == 1, "msg": fmt.Sprintf("event %d", last)})
		}
	}
	f.setFunc("mdiod", "events-get", func(args map[string]any) (hub.Reply, error) {
		since = append(since, args["since"])
		s, _ := args["since"].(uint64)
		var out []any
		for _, e := range evs {
			if uint64(e.(map[string]any)["seq"].(int)) > s {
				out = append(out, e)
			}
		}
		b, _ := json.Marshal(map[string]any{"events": out, "last-seq": last})
		return hub.Reply{Arguments: b}, nil
	})
	p := New(f, Options{Logger: quiet(), Events: 3})
	texts := func() string {
		p.Poll(context.Background())
		var out []string
		for _, e := range p.Snapshot(0).MDIO.Events {
			out = append(out, e.Text)
		}
		return strings.Join(out, ",")
	}
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"first", func() { add(2) }, "event 1,event 2"},
		{"nothing new", func() {}, "event 1,event 2"},
		{"more than kept", func() { add(3) }, "event 3,event 4,event 5"},
		{"restart", func() { evs, last = nil, 0; add(1) }, "event 1"},
	}
	for _, st := range steps {
		st.do()
		if got := texts(); got != st.want {
			t.Errorf("%s: events %q, want %q", st.name, got, st.want)
		}
	}
	wantSince := "[0 2 2 5 0]"
	if got := fmt.Sprint(since); got != wantSince {
		t.Errorf("since cursors %s, want %s", got, wantSince)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		interval time.Duration
		span     time.Duration
		rounds   int
		step     time.Duration
		wantLen  int
	}{
		{"fewer than the span", time.Second, 10 * time.Minute, 30, time.Second, 30},
		{"the span bounds it", time.Second, 10 * time.Minute, 1000, time.Second, 601},
		{"the ring bounds it", time.Second, 10 * time.Minute, 1000, 100 * time.Millisecond, 602},
		{"a tiny interval is capped", 10 * time.Microsecond, 10 * time.Minute, 70000, 10 * time.Microsecond, maxHistory},
		{"a gap empties it", time.Second, time.Minute, 10, 2 * time.Minute, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			f := healthy()
			p := New(f, Options{Logger: quiet(), Interval: tc.interval, History: tc.span, Now: clk.Now})
			if len(p.hist.ring) > maxHistory {
				t.Fatalf("ring of %d", len(p.hist.ring))
			}
			for i := 0; i < tc.rounds; i++ {
				if tc.rounds > 2000 {
					// Fill the ring directly: a round per sample
					// would take long under -race.
					p.hist.add(sample{t: float64(clk.Now().UnixNano()) / 1e9})
				} else {
					p.Poll(context.Background())
				}
				clk.Add(tc.step)
			}
			h := p.Snapshot(0).History
			if len(h.T) != tc.wantLen || len(h.OffsetNS) != tc.wantLen || len(h.FreqPPB) != tc.wantLen || !h.Full {
				t.Fatalf("history of %d/%d/%d (full %v), want %d", len(h.T), len(h.OffsetNS), len(h.FreqPPB), h.Full, tc.wantLen)
			}
			for i := 1; i < len(h.T); i++ {
				if h.T[i] <= h.T[i-1] {
					t.Fatalf("not in order at %d: %v %v", i, h.T[i-1], h.T[i])
				}
			}
			if span := h.T[len(h.T)-1] - h.T[0]; span > tc.span.Seconds()+1e-9 {
				t.Errorf("history spans %v s, more than %v", span, tc.span)
			}
			if tc.rounds <= 2000 && (h.OffsetNS[0] == nil || *h.OffsetNS[0] != -12.5 || *h.FreqPPB[0] != 1204.113) {
				t.Errorf("first sample %v %v", h.OffsetNS[0], h.FreqPPB[0])
			}
			// since returns only the newer samples.
			if n := len(h.T); n > 1 {
				part := p.Snapshot(h.T[n-2]).History
				if part.Full || len(part.T) != 1 || part.T[0] != h.T[n-1] {
					t.Errorf("since %v: %+v", h.T[n-2], part)
				}
			}
		})
	}
}

// TestHistoryGaps: a round with ptpd down or nothing selected adds a
// null sample, which the plot draws as a gap.
func TestHistoryGaps(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f := healthy()
	p := New(f, Options{Logger: quiet(), Now: clk.Now})
	round := func() { p.Poll(context.Background()); clk.Add(time.Second) }
	round()
	f.setDown("ptpd", "connect: no such file or directory")
	round()
	f.setDown("ptpd", "")
	f.set("ptpd", "instances-get", map[string]any{"instances": []any{map[string]any{"name": "ptp1", "state": "listening", "selected": false}}})
	round()
	h := p.Snapshot(0).History
	got := fmt.Sprint(len(h.T), h.OffsetNS[0] != nil, h.OffsetNS[1] == nil, h.OffsetNS[2] == nil, h.FreqPPB[1] == nil)
	if got != "3 true true true true" {
		t.Errorf("history %s: %+v", got, h)
	}
}

// TestRun: the poller runs rounds until its context ends, and logs a
// daemon going down and coming back once each.
func TestRun(t *testing.T) {
	t.Parallel()
	f := healthy()
	logs := testutil.NewLogs()
	p := New(f, Options{Logger: slog.New(logs), Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	testutil.WaitFor(t, "three rounds", 10*time.Second, func() bool { return p.Snapshot(0).Round >= 3 })
	f.setDown("appliance", "connect: connection refused")
	r := p.Snapshot(0).Round
	testutil.WaitFor(t, "five more rounds", 10*time.Second, func() bool { return p.Snapshot(0).Round >= r+5 })
	f.setDown("appliance", "")
	r = p.Snapshot(0).Round
	testutil.WaitFor(t, "five more rounds", 10*time.Second, func() bool { return p.Snapshot(0).Round >= r+5 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if n := len(logs.Find("status page: service appliance failing")); n != 1 {
		t.Errorf("%d down logs:\n%s", n, logs.Dump())
	}
	if n := len(logs.Find("status page: service appliance answering again")); n != 1 {
		t.Errorf("%d back logs:\n%s", n, logs.Dump())
	}
	select {
	case <-p.done:
	default:
		t.Error("done not closed after Run")
	}
}

func counterString(cs []Counter) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s=%d", c.Name, c.Value))
	}
	return strings.Join(out, " ")
}

func noErrors(t *testing.T, s Snapshot) {
	t.Helper()
	for _, sec := range []*Section{&s.PTP.Section, &s.MCTP.Section, &s.MDIO.Section, &s.Appliance.Section} {
		if len(sec.Errors) > 0 {
			t.Errorf("%s: %q", sec.Service, sec.Errors)
		}
	}
}

func want(t *testing.T, got []string, w ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(w, "\n") {
		t.Errorf("errors %q, want %q", got, w)
	}
}
