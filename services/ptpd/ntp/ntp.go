// Package ntp is ptpd's "ntp" and "crny" sync modules. sfptpd's modules
// of those names monitor and steer a local ntpd or chronyd; a tickbox
// box runs neither, so here the module is an NTP client of its own (on
// github.com/beevik/ntp): it polls the configured servers, picks the
// best one as an NTP client would, reports to the engine's selection the
// state, clock class, accuracy and steps removed that sfptpd's module
// reports (so that PTP with a grandmaster wins and NTP is the fallback),
// and disciplines its clock with the PI servo while it is selected.
package ntp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// Defaults and limits.
const (
	// DefaultPollInterval is sfptpd's ntp_poll_interval default.
	DefaultPollInterval = time.Second
	// DefaultTimeout is how long a query waits for its reply: the
	// reply timeout sfptpd uses towards chronyd.
	DefaultTimeout = time.Second
	// DefaultSyncThreshold is sfptpd's in-sync threshold for NTP.
	DefaultSyncThreshold = 10 * time.Millisecond
	// MinPollInterval bounds the traffic one instance sends.
	MinPollInterval = 100 * time.Millisecond
	// MaxServers bounds the servers of one instance (and its memory).
	MaxServers = 16
	// ReselectDistance is how much shorter a server's root distance
	// must be to displace the one in use (chrony's reselectdist
	// default).
	ReselectDistance = 100 * time.Microsecond

	// LocalAccuracyNS is sfptpd's notional accuracy of NTP (10 ms),
	// added to the server's root dispersion for the total accuracy the
	// selection compares: any PTP grandmaster that states its accuracy
	// beats it.
	LocalAccuracyNS = 10e6
	// ClockClassLocked is what sfptpd reports for an NTP instance with
	// a selected server (its "locked" class, IEEE 1588 class 6), and
	// ClockClassFreerunning without one (class 248).
	ClockClassLocked      = 6
	ClockClassFreerunning = 248

	// AlarmClockCtrlFailure is raised while adjusting the clock fails.
	AlarmClockCtrlFailure = "clock-ctrl-failure"
)

const (
	// recentPolls masks the reachability register to the last three
	// polls: one lost packet does not drop a server, three do.
	recentPolls = 0b111
	// inSyncPolls is how many consecutive offsets within the threshold
	// make the instance in sync (as the PTP port counts samples).
	inSyncPolls = 4
	// maxKoDBackoff bounds how many polls a kissing server is skipped.
	maxKoDBackoff = 64
)

// Config configures one ntp or crny instance.
type Config struct {
	Name string
	// Module is "ntp" or "crny": the two behave alike here and differ
	// only in the name they report.
	Module string
	// Servers are "host", "host:port", "[v6]:port" or a bare IPv6
	// address; the port defaults to 123.
	Servers []string
	// PollInterval is the time between polls of every server.
	PollInterval time.Duration
	// Timeout bounds one query (and one DNS look-up).
	Timeout time.Duration
	// UserPriority is sfptpd's selection priority (lower wins).
	UserPriority int

	ClockControl       servo.ClockControl
	StepThreshold      time.Duration
	FirstStepThreshold time.Duration
	MaxFreqPPB         float64
	PIDKp, PIDKi       float64
	// SyncThreshold is the |offset| under which the instance counts as
	// in sync.
	SyncThreshold time.Duration
}

// DefaultConfig returns an "ntp" instance named ntp1 without servers,
// sfptpd's poll interval and sync threshold and the servo's defaults.
func DefaultConfig() Config {
	sc := servo.DefaultConfig()
	return Config{
		Name:               "ntp1",
		Module:             "ntp",
		PollInterval:       DefaultPollInterval,
		Timeout:            DefaultTimeout,
		UserPriority:       128,
		ClockControl:       sc.ClockControl,
		StepThreshold:      sc.StepThreshold,
		FirstStepThreshold: sc.FirstStepThreshold,
		MaxFreqPPB:         sc.MaxFreqPPB,
		PIDKp:              sc.Kp,
		PIDKi:              sc.Ki,
		SyncThreshold:      DefaultSyncThreshold,
	}
}

// Instance is one ntp or crny sync instance. Run does all the polling;
// the mutex lets Status and the control calls read and steer it.
type Instance struct {
	cfg      Config
	clk      clock.Clock
	mapper   clock.RealtimeMapper
	log      *slog.Logger
	resolver *net.Resolver
	servers  []*server

	mu         sync.Mutex
	state      instance.State
	reason     string
	discipline bool
	servo      *servo.Servo
	freq       float64
	steps      int
	epoch      int // bumped by every step: samples from before are moved by it
	round      uint64
	best       *server
	// parent and parentSample copy the selected server's address and
	// last response for Status, since the query goroutines write the
	// server records without the lock.
	parent       string
	parentSample sample
	offset       float64
	delay        float64
	haveOffset   bool
	leapGuard    bool // a leap second is near: offsets are not taken
	inSyncRun    int
	inSync       bool
	lastUpdate   time.Time
	ctrlAlarm    bool
}

// New checks cfg and returns an instance on clk. A server list that is
// empty is allowed (the instance reports disabled); a malformed entry is
// an error.
func New(cfg Config, clk clock.Clock, log *slog.Logger) (*Instance, error) {
	if clk == nil {
		return nil, errors.New("ntp: no clock")
	}
	if log == nil {
		log = slog.Default()
	}
	switch cfg.Module {
	case "":
		cfg.Module = "ntp"
	case "ntp", "crny":
	default:
		return nil, fmt.Errorf("ntp %s: module %q: want ntp or crny", cfg.Name, cfg.Module)
	}
	d := DefaultConfig()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = d.PollInterval
	}
	if cfg.PollInterval < MinPollInterval {
		return nil, fmt.Errorf("ntp %s: poll interval %v below %v", cfg.Name, cfg.PollInterval, MinPollInterval)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.SyncThreshold <= 0 {
		cfg.SyncThreshold = d.SyncThreshold
	}
	if cfg.PIDKp <= 0 {
		cfg.PIDKp = d.PIDKp
	}
	if cfg.PIDKi <= 0 {
		cfg.PIDKi = d.PIDKi
	}
	if cfg.MaxFreqPPB <= 0 {
		cfg.MaxFreqPPB = d.MaxFreqPPB
	}
	if len(cfg.Servers) > MaxServers {
		return nil, fmt.Errorf("ntp %s: %d servers, at most %d", cfg.Name, len(cfg.Servers), MaxServers)
	}
	n := &Instance{
		cfg:      cfg,
		clk:      clk,
		log:      log.With("instance", cfg.Name, "module", cfg.Module),
		resolver: net.DefaultResolver,
		state:    instance.Listening,
	}
	if m, ok := clk.(clock.RealtimeMapper); ok {
		n.mapper = m
	}
	for _, spec := range cfg.Servers {
		host, port, err := ParseServer(spec)
		if err != nil {
			return nil, fmt.Errorf("ntp %s: %w", cfg.Name, err)
		}
		n.servers = append(n.servers, &server{spec: spec, host: host, port: port})
	}
	if len(n.servers) == 0 {
		n.state, n.reason = instance.Disabled, "no servers configured"
	}
	if f, err := clk.FreqPPB(); err == nil {
		n.freq = f
	}
	n.servo = servo.New(servo.Config{
		ClockControl:       cfg.ClockControl,
		StepThreshold:      cfg.StepThreshold,
		FirstStepThreshold: cfg.FirstStepThreshold,
		MaxFreqPPB:         math.Min(cfg.MaxFreqPPB, clk.MaxFreqPPB()),
		Kp:                 cfg.PIDKp,
		Ki:                 cfg.PIDKi,
		SyncInterval:       cfg.PollInterval,
	}, n.freq)
	return n, nil
}

// Name implements instance.Instance.
func (n *Instance) Name() string { return n.cfg.Name }

// Config returns the configuration in force (defaults filled in).
func (n *Instance) Config() Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// Run implements instance.Instance: it polls every server each poll
// interval until ctx is cancelled. Nothing a server sends, and no
// failure to reach one, ends it.
func (n *Instance) Run(ctx context.Context) error {
	if len(n.servers) == 0 {
		n.log.Warn("no NTP servers configured: instance disabled")
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(n.cfg.PollInterval)
	defer t.Stop()
	for {
		n.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll queries every server at once, waits for all (each is bounded by
// the timeout), then takes the results in.
func (n *Instance) poll(ctx context.Context) {
	n.mu.Lock()
	n.round++
	round, epoch := n.round, n.epoch
	n.mu.Unlock()

	outs := make([]outcome, len(n.servers))
	var wg sync.WaitGroup
	for i, s := range n.servers {
		if s.skip > 0 {
			s.skip--
			outs[i] = outcome{kind: outcomeSkipped}
			continue
		}
		s.queries++
		wg.Go(func() { outs[i] = n.query(ctx, s, round) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	n.apply(outs, epoch)
}

// apply takes one poll's outcomes in, picks the best server, sets the
// state and, when there is a fresh offset, runs the servo.
func (n *Instance) apply(outs []outcome, epoch int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	stepped := n.epoch != epoch // a step came while the queries were out
	for i, s := range n.servers {
		o := outs[i]
		if o.kind == outcomeSkipped {
			continue
		}
		s.reach <<= 1
		s.validReach <<= 1
		switch o.kind {
		case outcomeValid:
			s.reach |= 1
			if !stepped {
				s.validReach |= 1
				s.have, s.sample = true, o.sample
				s.sample.rootDist += (s.filterRTT(o.sample.rtt) - o.sample.rtt) / 2
			}
			s.kodBackoff = 0
		case outcomeInvalid:
			s.reach |= 1
			s.have = false
			if o.kod != "" {
				s.kodBackoff = min(max(2*s.kodBackoff, 4), maxKoDBackoff)
				s.skip = s.kodBackoff
			}
		}
		if s.validReach&recentPolls == 0 {
			s.have = false
		}
		if o.key != s.problem {
			switch {
			case o.key == "":
				n.log.Info("NTP server answering", "server", s.spec, "address", o.addr.String())
			case o.kod != "":
				n.log.Warn("NTP server", "server", s.spec, "problem", o.key, "skip_polls", s.skip)
			default:
				n.log.Warn("NTP server", "server", s.spec, "problem", o.key, "err", o.err)
			}
			s.problem = o.key
		}
	}

	// The best server as an NTP client picks one: a usable response
	// within the last polls, then the lowest stratum, then the shortest
	// root distance. The root distance holds half the round trip, which
	// jitters from poll to poll: as chrony's reselectdist does, a server
	// must be shorter by ReselectDistance to displace the one in use
	// (or, at the first choice, one earlier in the configuration), so
	// that near-equal servers do not take turns.
	better := func(s, than *server) bool {
		if s.sample.stratum != than.sample.stratum {
			return s.sample.stratum < than.sample.stratum
		}
		return s.sample.rootDist+ReselectDistance < than.sample.rootDist
	}
	var best *server
	if n.best != nil && n.best.have {
		best = n.best
	}
	for _, s := range n.servers {
		if !s.have || s == best {
			continue
		}
		if best == nil || better(s, best) {
			best = s
		}
	}
	if best != n.best {
		if best != nil {
			n.log.Info("selected NTP server", "server", best.spec, "address", best.addr.String(),
				"stratum", best.sample.stratum, "reference", best.sample.refID)
		}
		n.best = best
	}
	if best != nil {
		n.parent, n.parentSample = best.addr.String(), best.sample
	}

	switch {
	case best != nil:
		n.setState(instance.Slave, "server "+best.spec+" selected")
	case slices.ContainsFunc(n.servers, func(s *server) bool { return s.reach&recentPolls != 0 || s.skip > 0 }):
		n.setState(instance.Listening, "no usable NTP response")
	default:
		n.setState(instance.Faulty, "no NTP server reachable")
	}

	if best == nil {
		return
	}
	if best.sample.round != n.round {
		// The selected server missed this poll: report its last
		// offset, but steer by fresh measurements only.
		if !n.haveOffset {
			n.offset, n.delay, n.haveOffset = float64(best.sample.offset), float64(best.sample.rtt)/2, true
		}
		return
	}
	n.sample(best.sample)
}

// setState changes the state, logging once per change; n.mu held.
func (n *Instance) setState(s instance.State, reason string) {
	if s == n.state {
		return
	}
	n.log.Info("state changed", "from", n.state.String(), "to", s.String(), "reason", reason)
	if n.state == instance.Slave && n.adjusting() {
		// The reference is gone: hold the mean frequency.
		n.setFreq(n.servo.Holdover())
	}
	n.state, n.reason = s, reason
	if s != instance.Slave {
		n.haveOffset = false
		n.offset, n.delay = 0, 0
		n.inSync, n.inSyncRun = false, 0
	}
}

// sample records the selected server's fresh offset and, when the
// instance is selected, steers the clock by it; n.mu held.
func (n *Instance) sample(sm sample) {
	if n.leapGuard {
		return
	}
	n.offset = float64(sm.offset)
	n.delay = float64(sm.rtt) / 2
	n.haveOffset = true
	n.lastUpdate = time.Now()
	if math.Abs(n.offset) <= float64(n.cfg.SyncThreshold) {
		n.inSyncRun++
	} else {
		n.inSyncRun = 0
	}
	n.inSync = n.inSyncRun >= inSyncPolls
	if !n.adjusting() {
		return
	}
	r := n.servo.Sample(int64(sm.offset), sm.at)
	switch r.State {
	case servo.Step:
		if err := n.step(r.Step); err != nil {
			n.log.Error("stepping clock", "err", err)
			return
		}
		n.log.Info("clock stepped", "by", r.Step, "offset_ns", sm.offset.Nanoseconds())
		n.setFreq(r.FreqPPB)
		n.inSyncRun, n.inSync = 0, false
	case servo.Locked, servo.Spike:
		n.setFreq(r.FreqPPB)
	}
}

// step steps the clock by d and moves every stored offset with it, so
// that the state and the selection carry on from what the step left;
// queries in flight across it are dropped (epoch). n.mu held.
func (n *Instance) step(d time.Duration) error {
	if err := n.clk.Step(d); err != nil {
		n.setCtrlAlarm(true)
		return err
	}
	n.setCtrlAlarm(false)
	n.steps++
	n.epoch++
	for _, s := range n.servers {
		s.sample.offset += d
	}
	n.offset += float64(d)
	return nil
}

func (n *Instance) setFreq(f float64) {
	if err := n.clk.AdjFreqPPB(f); err != nil {
		n.log.Error("adjusting clock frequency", "err", err)
		n.setCtrlAlarm(true)
		return
	}
	n.setCtrlAlarm(false)
	n.freq = f
}

func (n *Instance) setCtrlAlarm(on bool) {
	if on != n.ctrlAlarm {
		n.ctrlAlarm = on
		if on {
			n.log.Warn("alarm raised", "alarm", AlarmClockCtrlFailure)
		} else {
			n.log.Info("alarm cleared", "alarm", AlarmClockCtrlFailure)
		}
	}
}

// adjusting reports whether the instance steers its clock: selected and
// allowed to; n.mu held.
func (n *Instance) adjusting() bool {
	return n.discipline && n.cfg.ClockControl != servo.NoAdjust
}

// Status implements instance.Instance. Without a selected server the
// instance reports what sfptpd's NTP module reports: the freerunning
// class, an unknown accuracy, no offset.
func (n *Instance) Status() instance.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := instance.Status{
		Name:   n.cfg.Name,
		Module: n.cfg.Module,
		// sfptpd's NTP and chrony modules name their reference "ntp"
		// in the realtime stats.
		Source:       "ntp",
		State:        n.state,
		InSync:       n.inSync,
		Disciplining: n.adjusting(),
		Clock:        n.clk.Name(),
		OffsetNS:     n.offset,
		FreqAdjPPB:   n.freq,
		PathDelayNS:  n.delay,
		UserPriority: n.cfg.UserPriority,
		ClockClass:   ClockClassFreerunning,
		AccuracyNS:   math.Inf(1),
		LastUpdate:   n.lastUpdate,
		Steps:        n.steps,
	}
	if n.state == instance.Slave {
		sm := n.parentSample
		st.ParentID = n.parent
		st.GrandmasterID = sm.refID
		st.ClockClass = ClockClassLocked
		st.AccuracyNS = float64(sm.rootDisp) + LocalAccuracyNS
		st.StepsRemoved = int(sm.stratum)
	}
	if n.ctrlAlarm {
		st.Alarms = []string{AlarmClockCtrlFailure}
	}
	return st
}

// LeapGuard is the engine's leap-second guard (engine.LeapGuarder):
// while it is on, no offset is taken, so that no measurement made
// across the leap reaches the servo; a reply in flight when the guard
// starts or ends is dropped as one across a step is.
func (n *Instance) LeapGuard(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on == n.leapGuard {
		return
	}
	n.leapGuard = on
	n.epoch++
	n.log.Info("leap second guard", "on", on)
}

// SetDiscipline implements instance.Instance. On selection the servo
// starts afresh from the clock's current frequency.
func (n *Instance) SetDiscipline(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on == n.discipline {
		return
	}
	n.discipline = on
	if on {
		if f, err := n.clk.FreqPPB(); err == nil {
			n.freq = f
		}
		n.servo.Reset(n.freq)
	}
	n.log.Info("discipline", "on", on, "clock_control", n.cfg.ClockControl.String())
}

// StepClock implements instance.Instance: it steps the clock by the
// current offset from the selected server (sfptpdctl stepclocks).
func (n *Instance) StepClock() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != instance.Slave || !n.haveOffset {
		return fmt.Errorf("ntp %s: no offset from an NTP server to step by", n.cfg.Name)
	}
	if n.cfg.ClockControl == servo.NoAdjust {
		return fmt.Errorf("ntp %s: clock_control no-adjust", n.cfg.Name)
	}
	d := -time.Duration(math.Round(n.offset))
	if err := n.step(d); err != nil {
		return fmt.Errorf("ntp %s: stepping clock: %w", n.cfg.Name, err)
	}
	n.inSyncRun, n.inSync = 0, false
	n.log.Info("clock stepped on request", "by", d)
	return nil
}

// SetPID implements instance.Instance.
func (n *Instance) SetPID(kp, ki, kd float64, reset bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.servo.SetPID(kp, ki, kd, reset)
	c := n.servo.Config()
	n.cfg.PIDKp, n.cfg.PIDKi = c.Kp, c.Ki
	n.log.Info("PI coefficients", "kp", c.Kp, "ki", c.Ki, "reset", reset)
}

var _ instance.Instance = (*Instance)(nil)
