package hotplug

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// Resubscription backoff after the netlink subscription ends.
const (
	minResubscribe = 100 * time.Millisecond
	maxResubscribe = 5 * time.Second
)

// targetStopWait bounds how long Run waits at shutdown for a target
// whose send is blocked on a daemon that does not drain its socket.
const targetStopWait = 2 * time.Second

// Options configures an Agent.
type Options struct {
	// Targets are the sfptpd-style datagram sockets every insert and
	// remove is sent to. Duplicates are ignored.
	Targets []string
	// Ignore lists the interfaces that are never reported ("lo" always).
	Ignore Patterns
	// Coalesce is the coalescing window (DefaultCoalesce if not
	// positive).
	Coalesce time.Duration
	// EventLog is how many events events-get keeps (DefaultEventLog if
	// not positive).
	EventLog int
	// Target configures each target's queue. Its Report and Logger are
	// set by the agent.
	Target TargetOptions
	// Source supplies link messages; nil means Netlink{}.
	Source Source
	Logger *slog.Logger
}

// Agent watches the links and drives the targets. Create it with New,
// register its commands with a ctl registry, and call Run.
type Agent struct {
	opts    Options
	log     *slog.Logger
	src     Source
	targets []*Target
	paths   []string
	events  *EventLog

	// mu guards coal, which Run drives and interfaces-get reads. It is
	// held from a flush until its datagrams are queued, so that a
	// restarted target's re-send (peerChanged) sees every change either
	// in what the targets were told or in the queue, never both.
	mu   sync.Mutex
	coal *Coalescer

	subscribed atomic.Bool
	resyncs    atomic.Uint64
	nlErrors   atomic.Uint64
	inserts    atomic.Uint64
	removes    atomic.Uint64
}

// New returns an agent for opts.
func New(opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.Source == nil {
		opts.Source = Netlink{}
	}
	a := &Agent{
		opts:   opts,
		log:    opts.Logger,
		src:    opts.Source,
		events: NewEventLog(opts.EventLog),
		coal:   NewCoalescer(opts.Coalesce, opts.Ignore),
	}
	seen := map[string]bool{}
	for _, p := range opts.Targets {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		to := opts.Target
		to.Logger = opts.Logger
		to.Report = a.events.SetDelivery
		to.PeerChanged = a.peerChanged
		a.targets = append(a.targets, NewTarget(p, to))
		a.paths = append(a.paths, p)
	}
	return a
}

// Targets returns the targets' socket paths, duplicates removed.
func (a *Agent) Targets() []string { return append([]string(nil), a.paths...) }

// Run watches links and delivers events until ctx is cancelled. It
// survives every netlink failure: a subscription that ends or overruns is
// re-established with backoff and the link table re-listed, and the net
// difference is sent. Existing links are listed at start, and each is
// sent as an insert: a daemon started before the agent, or after it,
// learns every interface the same way.
func (a *Agent) Run(ctx context.Context) {
	tctx, stopTargets := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, t := range a.targets {
		wg.Go(func() { t.Run(tctx) })
	}
	defer func() {
		stopTargets()
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(targetStopWait):
			a.log.Warn("a target is still blocked in a send; leaving it")
		}
	}()
	if len(a.targets) == 0 {
		a.log.Warn("no targets configured; events are only logged")
	}

	var (
		updates  chan Update
		subDone  chan struct{}
		subStart time.Time
		backoff  time.Duration
		armed    bool
	)
	retry := time.NewTimer(0)
	defer retry.Stop()
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	arm := func() {
		a.mu.Lock()
		dl, open := a.coal.Deadline()
		a.mu.Unlock()
		if open && !armed {
			flush.Reset(time.Until(dl))
			armed = true
		}
	}
	endSub := func() {
		if subDone != nil {
			close(subDone)
			subDone, updates = nil, nil
			a.subscribed.Store(false)
		}
	}
	defer endSub()
	nextBackoff := func() time.Duration {
		if backoff == 0 {
			backoff = minResubscribe
		} else {
			backoff = min(2*backoff, maxResubscribe)
		}
		return backoff
	}

	for {
		select {
		case <-ctx.Done():
			return

		case <-retry.C:
			ch, done, err := a.subscribe()
			if err != nil {
				d := nextBackoff()
				a.log.Error("netlink subscription failed; retrying", "err", err, "backoff", d)
				retry.Reset(d)
				continue
			}
			updates, subDone, subStart = ch, done, time.Now()
			a.subscribed.Store(true)
			arm()

		case u, ok := <-updates:
			if !ok {
				endSub()
				// A subscription that lived a while earns a quick
				// resubscription; one that keeps failing backs off.
				if time.Since(subStart) > maxResubscribe {
					backoff = 0
				}
				d := nextBackoff()
				a.log.Warn("netlink subscription ended; resubscribing and re-listing links", "backoff", d)
				retry.Reset(d)
				continue
			}
			// A message after the deadline belongs to the next window,
			// even if it won the race against the flush timer.
			now := time.Now()
			a.mu.Lock()
			due := a.coal.Flush(now)
			a.coal.Apply(now, u)
			a.emitLocked(due)
			a.mu.Unlock()
			arm()

		case <-flush.C:
			armed = false
			a.mu.Lock()
			a.emitLocked(a.coal.Flush(time.Now()))
			a.mu.Unlock()
			arm()
		}
	}
}

// subscribe subscribes to link messages and then lists the links, so that
// nothing that happens in between is missed, and feeds the listing to the
// coalescer.
func (a *Agent) subscribe() (chan Update, chan struct{}, error) {
	ch := make(chan Update, 256)
	done := make(chan struct{})
	onErr := func(err error) {
		select {
		case <-done:
			// The socket was closed on purpose; its reader's error is
			// expected.
			return
		default:
		}
		a.nlErrors.Add(1)
		a.log.Warn("netlink error", "err", err)
	}
	if err := a.src.Subscribe(ch, done, onErr); err != nil {
		return nil, nil, err
	}
	links, err := a.src.List()
	if err != nil {
		close(done)
		return nil, nil, err
	}
	a.mu.Lock()
	first := a.resyncs.Add(1) == 1
	a.coal.Sync(time.Now(), links)
	a.mu.Unlock()
	if first {
		a.log.Info("watching links", "links", len(links), "targets", a.paths, "ignore", a.opts.Ignore.List(), "coalesce", a.opts.Coalesce)
	} else {
		a.log.Info("re-listed links; resynchronising", "links", len(links))
	}
	return ch, done, nil
}

// emitLocked logs each change, records it and queues its datagram at
// every target. a.mu is held.
func (a *Agent) emitLocked(changes []Change) {
	for _, c := range changes {
		l := c.Link
		e := Event{Time: time.Now(), Kind: c.Kind, Interface: l.Name, Index: l.Index, MAC: l.MAC, State: l.State}
		msg, send := c.Command()
		var targets []string
		if send {
			targets = a.paths
		}
		id := a.events.Add(e, targets)
		switch c.Kind {
		case Insert:
			a.inserts.Add(1)
			a.log.Info("interface inserted", "interface", l.Name, "index", l.Index, "type", l.Type, "mac", l.MAC, "state", l.State, "event", id)
		case Remove:
			a.removes.Add(1)
			a.log.Info("interface removed", "interface", l.Name, "index", l.Index, "event", id)
		case State:
			a.log.Info("interface changed", "interface", l.Name, "index", l.Index,
				"state", l.State, "was", c.Prev.State, "flags", l.Flags, "mac", l.MAC, "mtu", l.MTU, "event", id)
		case Transient:
			a.log.Info("interface appeared and vanished within the coalescing window; not sent", "interface", l.Name, "index", l.Index, "event", id)
		}
		if send {
			for _, t := range a.targets {
				t.Enqueue(id, msg)
			}
		}
	}
}

// peerChanged is a target's PeerChanged: its daemon restarted, so every
// interface the targets were told about is sent to it again as an insert
// (a Resync event each), in place of what was still queued for it. With
// a.mu held no flush is half queued: a change is either in the told set
// or still in the coalescer's open window, and is queued after this.
func (a *Agent) peerChanged(t *Target) {
	a.mu.Lock()
	defer a.mu.Unlock()
	links := a.coal.ToldLinks()
	msgs := make([]Datagram, len(links))
	names := make([]string, len(links))
	now := time.Now()
	for i, l := range links {
		e := Event{Time: now, Kind: Resync, Interface: l.Name, Index: l.Index, MAC: l.MAC, State: l.State}
		msgs[i] = Datagram{ID: a.events.Add(e, []string{t.Path()}), Msg: "interfaceinsert=" + l.Name}
		names[i] = l.Name
	}
	a.log.Info("target daemon restarted; re-sending the present interfaces", "target", t.Path(), "interfaces", names)
	t.Resync(msgs)
}

// Interface is one entry of interfaces-get.
type Interface struct {
	Link
	// Ignored interfaces are listed but never sent.
	Ignored bool `json:"ignored"`
}

// Interfaces returns every link the kernel reported, by index.
func (a *Agent) Interfaces() []Interface {
	a.mu.Lock()
	defer a.mu.Unlock()
	links := a.coal.Links()
	out := make([]Interface, len(links))
	for i, l := range links {
		out[i] = Interface{Link: l, Ignored: a.coal.Ignored(l.Name)}
	}
	return out
}

// Events returns up to limit recent events (all kept if limit is not
// positive), oldest first.
func (a *Agent) Events(limit int) []Event { return a.events.Events(limit) }

// Status returns the agent's counters for status-get.
func (a *Agent) Status() map[string]any {
	ts := make([]TargetStats, len(a.targets))
	for i, t := range a.targets {
		ts[i] = t.Stats()
	}
	a.mu.Lock()
	present := len(a.coal.Told())
	a.mu.Unlock()
	return map[string]any{
		"events":     a.events.Total(),
		"inserts":    a.inserts.Load(),
		"removes":    a.removes.Load(),
		"interfaces": present,
		"netlink": map[string]any{
			"subscribed": a.subscribed.Load(),
			"listings":   a.resyncs.Load(),
			"errors":     a.nlErrors.Load(),
		},
		"targets": ts,
	}
}

// Commands returns the agent's control commands, interfaces-get and
// events-get, for a ctl registry.
func (a *Agent) Commands() []*ctl.Command {
	return []*ctl.Command{
		{
			Name:    "interfaces-get",
			Comment: "list the network interfaces with index, state, flags, MAC and MTU",
			Usage: "Every link the kernel reports, by index. Ignored ones (lo and the\n" +
				"-ignore patterns) are listed with \"ignored\": true and never sent.",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				ifs := a.Interfaces()
				return ctl.OK(fmt.Sprintf("%d interfaces", len(ifs)), map[string]any{"interfaces": ifs})
			},
		},
		{
			Name:    "events-get",
			Comment: "list recent link events and their delivery to each target",
			Usage: "Oldest first. kind is insert or remove (sent to the targets), state\n" +
				"(a change logged, not sent) or transient (a link that came and went\n" +
				"within one coalescing window). delivery maps each target to queued,\n" +
				"retrying, sent or dropped.",
			Params: []ctl.Param{{
				Name: "limit", Type: ctl.Int, Default: int64(0), Ranged: true, Min: 0, Max: 1 << 20,
				Help: "only the last N events (0: all kept)",
			}, {
				Name: "since", Type: ctl.Int, Default: int64(0), Ranged: true, Min: 0, Max: 1 << 62,
				Help: "only events with a larger id (a follower's cursor)",
			}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				evs := a.events.Since(uint64(c.Args.Int("since")), int(c.Args.Int("limit")))
				return ctl.OK(fmt.Sprintf("%d events", len(evs)), map[string]any{"events": evs})
			},
		},
	}
}
