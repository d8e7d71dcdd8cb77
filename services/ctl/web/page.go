package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// Source is satisfied by *hub.Hub.
var _ Source = (*hub.Hub)(nil)

// Source is what the page asks: the subset of *hub.Hub it uses.
type Source interface {
	// Services lists the configured services in configuration order.
	Services() []string
	// ServicesGet asks every service for status-get and version-get.
	ServicesGet(ctx context.Context) []hub.ServiceState
	// Command sends one command to a service and decodes its reply.
	Command(ctx context.Context, service, command string, args map[string]any) (hub.Reply, error)
}

// Names are the service names, as the hub's configuration spells them,
// of the daemons whose sections the page shows.
type Names struct {
	PTP       string // "ptpd"
	MCTP      string // "mctpd"
	MDIO      string // "mdiod"
	Appliance string // "appliance"
}

// Options configure a Page. Zero values take the defaults.
type Options struct {
	// Interval between polling rounds: 1 s.
	Interval time.Duration
	// Timeout bounds one round; a daemon that has not answered by then
	// shows the timeout as its error: 5 s.
	Timeout time.Duration
	// History is how far back the offset and frequency plots reach:
	// 10 minutes. The ring holds at most History/Interval+2 samples
	// (and never more than 65536).
	History time.Duration
	// Events is how many of the last mdiod and appliance events are
	// kept and shown: 20.
	Events int
	// Names of the daemons' services; empty names take the defaults.
	Names Names
	// MaxStreams bounds concurrent event streams (api/events); more
	// are answered 503 and the page polls instead: 32.
	MaxStreams int
	// Logger for daemons that go down or come back; slog.Default.
	Logger *slog.Logger
	// Now is the clock of the history: time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.History <= 0 {
		o.History = 10 * time.Minute
	}
	if o.Events <= 0 {
		o.Events = 20
	}
	if o.Events > maxItems {
		o.Events = maxItems
	}
	for _, n := range []struct {
		p   *string
		def string
	}{{&o.Names.PTP, "ptpd"}, {&o.Names.MCTP, "mctpd"}, {&o.Names.MDIO, "mdiod"}, {&o.Names.Appliance, "appliance"}} {
		if *n.p == "" {
			*n.p = n.def
		}
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 32
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Section is what every daemon's section has: its service name and the
// errors of the last round (a daemon that is down, a command that
// failed, a reply that could not be read), each prefixed with the
// command.
type Section struct {
	Service string   `json:"service"`
	Errors  []string `json:"errors,omitempty"`
}

func (s *Section) fail(cmd string, err error) {
	s.Errors = append(s.Errors, prefixed(cmd, err))
}

// prefixed is err's text led by the command, unless it names it already
// (the hub's errors do: "mdiod hw-info-get: kea: dial unix ...").
func prefixed(cmd string, err error) string {
	msg := err.Error()
	if !strings.Contains(msg, cmd+":") {
		msg = cmd + ": " + msg
	}
	return clip(msg)
}

// PTP is ptpd's section.
type PTP struct {
	Section
	// Selected names the selected instance ("" for none).
	Selected  string     `json:"selected"`
	Instances []Instance `json:"instances"`
}

// MCTP is mctpd's section.
type MCTP struct {
	Section
	Endpoint *Endpoint  `json:"endpoint"`
	Routes   []Route    `json:"routes"`
	Stats    *MCTPStats `json:"stats"`
}

// MDIO is mdiod's section.
type MDIO struct {
	Section
	Ports  []Port  `json:"ports"`
	Events []Event `json:"events"`
}

// Appliance is the appliance agent's section.
type Appliance struct {
	Section
	Events []Event `json:"events"`
}

// Snapshot is the state of the last round.
type Snapshot struct {
	// Time of the round (zero before the first).
	Time time.Time `json:"time"`
	// Round counts the rounds from 1.
	Round      uint64             `json:"round"`
	IntervalMS int64              `json:"interval-ms"`
	HistoryS   int64              `json:"history-s"`
	Services   []hub.ServiceState `json:"services"`
	// A section is null when its daemon is not configured.
	PTP       *PTP       `json:"ptp"`
	MCTP      *MCTP      `json:"mctp"`
	MDIO      *MDIO      `json:"mdio"`
	Appliance *Appliance `json:"appliance"`
	History   History    `json:"history"`
}

// Page is the status page: its poller and its HTTP handler.
type Page struct {
	src  Source
	opts Options
	doc  document

	// done is closed when Run returns: the event streams end with it.
	done     chan struct{}
	doneOnce sync.Once

	mu      sync.Mutex
	snap    Snapshot // History left empty: hist has it
	hist    *history
	streams map[chan struct{}]struct{}

	// The poller's own state (Run and Poll are not run concurrently).
	pollMu     sync.Mutex
	mdioSeq    uint64
	mdioEvents []Event
	mdioHW     map[string]Port // hw-info-get's ports by name
	lastErrors map[string]string
}

// New returns a page that asks src. Start its poller with Run.
func New(src Source, opts Options) *Page {
	opts = opts.withDefaults()
	p := &Page{
		src: src, opts: opts, doc: buildDocument(), done: make(chan struct{}),
		hist:       newHistory(opts.History, opts.Interval),
		streams:    map[chan struct{}]struct{}{},
		lastErrors: map[string]string{},
	}
	p.snap = Snapshot{IntervalMS: opts.Interval.Milliseconds(), HistoryS: int64(opts.History.Seconds()), Services: []hub.ServiceState{}}
	return p
}

// Run polls every Options.Interval until ctx ends, then ends the event
// streams and returns nil. Run it once.
func (p *Page) Run(ctx context.Context) error {
	defer p.doneOnce.Do(func() { close(p.done) })
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		p.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll runs one round: it asks every daemon, in parallel, and publishes
// the new snapshot to the page's streams.
func (p *Page) Poll(ctx context.Context) {
	p.pollMu.Lock()
	defer p.pollMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()

	configured := map[string]bool{}
	for _, s := range p.src.Services() {
		configured[s] = true
	}
	var (
		wg   sync.WaitGroup
		snap Snapshot
	)
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	run(func() { snap.Services = p.services(ctx) })
	n := p.opts.Names
	if configured[n.PTP] {
		run(func() { snap.PTP = p.ptp(ctx) })
	}
	if configured[n.MCTP] {
		run(func() { snap.MCTP = p.mctp(ctx) })
	}
	if configured[n.MDIO] {
		run(func() { snap.MDIO = p.mdio(ctx) })
	}
	if configured[n.Appliance] {
		run(func() { snap.Appliance = p.appliance(ctx) })
	}
	wg.Wait()
	dropLiveDataOfDown(&snap)
	p.logChanges(snap)

	now := p.opts.Now()
	p.mu.Lock()
	snap.Time, snap.Round = now, p.snap.Round+1
	snap.IntervalMS, snap.HistoryS = p.snap.IntervalMS, p.snap.HistoryS
	p.snap = snap
	if snap.PTP != nil {
		s := sample{t: float64(now.UnixMicro()) / 1e6}
		for _, in := range snap.PTP.Instances {
			if in.Selected {
				s.offset, s.freq = in.OffsetNS, in.FreqAdjPPB
			}
		}
		p.hist.add(s)
	}
	for ch := range p.streams {
		select {
		case ch <- struct{}{}:
		default: // it has a wake-up pending already
		}
	}
	p.mu.Unlock()
}

// dropLiveDataOfDown keeps a daemon that services-get found down from
// showing live data of the same round: its commands run in parallel, so
// some may have been answered just before it stopped. A down daemon's
// section keeps its errors and the events seen before (they are
// history), not its ports, instances, routes or counters.
func dropLiveDataOfDown(snap *Snapshot) {
	down := map[string]bool{}
	for _, s := range snap.Services {
		if !s.Up {
			down[s.Service] = true
		}
	}
	if x := snap.PTP; x != nil && down[x.Service] {
		x.Selected, x.Instances = "", []Instance{}
	}
	if x := snap.MCTP; x != nil && down[x.Service] {
		x.Endpoint, x.Routes, x.Stats = nil, []Route{}, nil
	}
	if x := snap.MDIO; x != nil && down[x.Service] {
		x.Ports = []Port{}
	}
}

// Snapshot returns the last round's state with the history after since
// (seconds since the epoch; 0 for all of it).
func (p *Page) Snapshot(since float64) Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.snap
	s.History = p.hist.since(since)
	return s
}

// errEmpty is Kea's result 3: success with nothing to return.
var errEmpty = errors.New("empty")

// replyError is a reply with a result other than 0 (or 3).
type replyError struct {
	Result int
	Text   string
}

func (e *replyError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("result %d", e.Result)
	}
	return fmt.Sprintf("%s (result %d)", e.Text, e.Result)
}

// call sends one command and returns the reply's arguments, or an
// error with the reply's text for a result other than 0.
func (p *Page) call(ctx context.Context, service, cmd string, args map[string]any) (json.RawMessage, error) {
	r, err := p.src.Command(ctx, service, cmd, args)
	switch {
	case err != nil:
		return nil, err
	case r.Result == 3:
		return nil, errEmpty
	case r.Result != 0:
		return nil, &replyError{Result: r.Result, Text: r.Text}
	}
	return r.Arguments, nil
}

func (p *Page) services(ctx context.Context) []hub.ServiceState {
	st := p.src.ServicesGet(ctx)
	out := make([]hub.ServiceState, len(st))
	for i, s := range st {
		// status-get's arguments stay out of the snapshot: the page
		// shows the common fields, and a daemon's extras can be large.
		s.Status = nil
		s.Error = clip(s.Error)
		s.Version = clip(s.Version)
		out[i] = s
	}
	return out
}

func (p *Page) ptp(ctx context.Context) *PTP {
	s := &PTP{Section: Section{Service: p.opts.Names.PTP}, Instances: []Instance{}}
	raw, err := p.call(ctx, s.Service, "instances-get", nil)
	if err == nil {
		var ins []Instance
		if ins, err = decodeInstances(raw); err == nil && ins != nil {
			s.Instances = ins
		}
	}
	if err != nil && err != errEmpty {
		s.fail("instances-get", err)
	}
	for _, in := range s.Instances {
		if in.Selected {
			s.Selected = in.Name
		}
	}
	return s
}

func (p *Page) mctp(ctx context.Context) *MCTP {
	s := &MCTP{Section: Section{Service: p.opts.Names.MCTP}, Routes: []Route{}}
	var (
		wg                  sync.WaitGroup
		ep, rt, st          json.RawMessage
		epErr, rtErr, stErr error
	)
	wg.Add(3)
	go func() { defer wg.Done(); ep, epErr = p.call(ctx, s.Service, "endpoints-get", nil) }()
	go func() { defer wg.Done(); rt, rtErr = p.call(ctx, s.Service, "routes-get", nil) }()
	go func() { defer wg.Done(); st, stErr = p.call(ctx, s.Service, "stats-get", nil) }()
	wg.Wait()
	if epErr == nil {
		s.Endpoint, epErr = decodeEndpoint(ep)
	}
	if rtErr == nil {
		var routes []Route
		if routes, rtErr = decodeRoutes(rt); rtErr == nil {
			s.Routes = routes
		}
	}
	if stErr == nil {
		s.Stats, stErr = decodeStats(st)
	}
	for _, e := range []struct {
		cmd string
		err error
	}{{"endpoints-get", epErr}, {"routes-get", rtErr}, {"stats-get", stErr}} {
		if e.err != nil && e.err != errEmpty {
			s.fail(e.cmd, e.err)
		}
	}
	return s
}

func (p *Page) mdio(ctx context.Context) *MDIO {
	s := &MDIO{Section: Section{Service: p.opts.Names.MDIO}, Ports: []Port{}}
	var wg sync.WaitGroup
	// The events' own errors, joined after the round.
	events := Section{Service: s.Service}
	wg.Add(1)
	go func() { defer wg.Done(); s.Events = p.mdioEventsRound(ctx, &events) }()
	ports := p.mdioLinks(ctx, s)
	wg.Wait()
	if ports != nil {
		s.Ports = ports
	}
	s.Errors = append(s.Errors, events.Errors...)
	return s
}

// mdioLinks reads the ports' links with links-get, which reads no
// register (mdiod answers from its own link watcher), and describes the
// ports from hw-info-get, asked once and again only when the ports
// change or mdiod failed to answer (hw-info-get reads each PHY's ID).
// An mdiod without links-get is asked phy_status for each port instead.
func (p *Page) mdioLinks(ctx context.Context, s *MDIO) []Port {
	raw, err := p.call(ctx, s.Service, "links-get", nil)
	var rerr *replyError
	if errors.As(err, &rerr) && rerr.Result == 2 {
		return p.mdioStatus(ctx, s)
	}
	var ports []Port
	if err == nil {
		ports, err = decodeLinks(raw)
	}
	if err != nil {
		if err != errEmpty {
			s.fail("links-get", err)
			p.mdioHW = nil
		}
		return nil
	}
	known := p.mdioHW != nil
	for _, pt := range ports {
		if _, ok := p.mdioHW[pt.Name]; !ok {
			known = false
		}
	}
	if !known {
		raw, err := p.call(ctx, s.Service, "hw-info-get", nil)
		var hw []Port
		if err == nil {
			hw, err = decodePorts(raw)
		}
		if err != nil {
			if err != errEmpty {
				s.fail("hw-info-get", err)
			}
		} else {
			p.mdioHW = map[string]Port{}
			for _, h := range hw {
				p.mdioHW[h.Name] = h
			}
		}
	}
	for i := range ports {
		if h, ok := p.mdioHW[ports[i].Name]; ok {
			ports[i].Backend, ports[i].Interface, ports[i].PHYID, ports[i].Error = h.Backend, h.Interface, h.PHYID, h.Error
		}
	}
	return ports
}

// mdioStatus describes the ports with hw-info-get and reads each one's
// link with phy_status: one call per port, so that a port whose PHY does
// not answer does not hide the others' links.
func (p *Page) mdioStatus(ctx context.Context, s *MDIO) []Port {
	raw, err := p.call(ctx, s.Service, "hw-info-get", nil)
	var ports []Port
	if err == nil {
		ports, err = decodePorts(raw)
	}
	if err != nil && err != errEmpty {
		s.fail("hw-info-get", err)
	}
	var wg sync.WaitGroup
	for i := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt := &ports[i]
			if pt.Phy <= 0 {
				return
			}
			raw, err := p.call(ctx, s.Service, "phy_status", map[string]any{"phy": pt.Phy})
			if err == nil {
				err = decodePhyStatus(raw, pt)
			}
			if err != nil && err != errEmpty {
				pt.Error = prefixed("phy_status", err)
			}
		}()
	}
	wg.Wait()
	return ports
}

// mdioEventsRound asks mdiod for the events after the last one seen
// and keeps the last Options.Events of them. A daemon whose last
// sequence number went back has restarted: the events are read again
// from its first.
func (p *Page) mdioEventsRound(ctx context.Context, s *Section) []Event {
	for try := 0; try < 2; try++ {
		raw, err := p.call(ctx, s.Service, "events-get", map[string]any{"since": p.mdioSeq, "limit": p.opts.Events})
		var (
			evs  []Event
			last uint64
		)
		if err == nil {
			evs, last, err = decodeMDIOEvents(raw)
		}
		if err != nil {
			if err != errEmpty {
				// Keep the events seen so far: they are history.
				s.fail("events-get", err)
			}
			break
		}
		if last < p.mdioSeq {
			p.mdioSeq, p.mdioEvents = 0, nil
			continue
		}
		for _, e := range evs {
			if e.Seq > p.mdioSeq {
				p.mdioEvents = append(p.mdioEvents, e)
				p.mdioSeq = e.Seq
			}
		}
		if last > p.mdioSeq {
			p.mdioSeq = last
		}
		if n := len(p.mdioEvents) - p.opts.Events; n > 0 {
			p.mdioEvents = append([]Event(nil), p.mdioEvents[n:]...)
		}
		break
	}
	// A copy: the snapshot is shared with readers while the poller
	// appends.
	return append([]Event{}, p.mdioEvents...)
}

func (p *Page) appliance(ctx context.Context) *Appliance {
	s := &Appliance{Section: Section{Service: p.opts.Names.Appliance}, Events: []Event{}}
	raw, err := p.call(ctx, s.Service, "events-get", map[string]any{"limit": p.opts.Events})
	if err == nil {
		var evs []Event
		if evs, err = decodeApplianceEvents(raw); err == nil {
			if n := len(evs) - p.opts.Events; n > 0 {
				evs = evs[n:]
			}
			if evs != nil {
				s.Events = evs
			}
		}
	}
	if err != nil && err != errEmpty {
		s.fail("events-get", err)
	}
	return s
}

// logChanges logs a service that goes down or comes back, and a
// section whose errors change, once each, not every round.
func (p *Page) logChanges(s Snapshot) {
	now := map[string]string{}
	for _, st := range s.Services {
		if !st.Up {
			now["service "+st.Service] = st.Error
		}
	}
	var secs []*Section
	if s.PTP != nil {
		secs = append(secs, &s.PTP.Section)
	}
	if s.MCTP != nil {
		secs = append(secs, &s.MCTP.Section)
	}
	if s.MDIO != nil {
		secs = append(secs, &s.MDIO.Section)
	}
	if s.Appliance != nil {
		secs = append(secs, &s.Appliance.Section)
	}
	for _, sec := range secs {
		if len(sec.Errors) > 0 {
			now["section "+sec.Service] = strings.Join(sec.Errors, "; ")
		}
	}
	for k, v := range now {
		if p.lastErrors[k] != v {
			p.opts.Logger.Warn("status page: "+k+" failing", "error", v)
		}
	}
	for k := range p.lastErrors {
		if _, ok := now[k]; !ok {
			p.opts.Logger.Info("status page: " + k + " answering again")
		}
	}
	p.lastErrors = now
}
