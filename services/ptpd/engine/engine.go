// Package engine is ptpd's sfptpd-compatible core: it creates the sync
// instances a configuration declares (through module factories passed
// in, so the engine knows no module), selects one of them with sfptpd's
// rules and holdoff, tells the selected one to discipline its clock,
// writes the stats logs and state files, and carries out the control
// commands (logrotate, stepclocks, selectinstance, interfaceinsert, ...)
// whichever front end or signal they arrive through.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// Factory creates a sync instance of one module from its configuration
// section. clk is the clock the daemon runs on (the system clock, or a
// virtual clock for tests and development hosts); a module that drives
// a PHC of its interface may use that instead unless clk is virtual.
type Factory func(sec config.Instance, clk clock.Clock) (instance.Instance, error)

// DefaultStatsInterval is sfptpd's stats logging period; the selection
// is re-evaluated and state files are written at the same pace.
const DefaultStatsInterval = time.Second

// Options configure an Engine.
type Options struct {
	Config *config.Config
	// Modules maps a sync_module name ("freerun", "ptp") to its factory.
	// A configured module missing here fails New with a FILE:LINE error.
	Modules map[string]Factory
	// Clock is handed to every factory.
	Clock clock.Clock
	// Logger is the message log.
	Logger *slog.Logger
	// Logs are the log files logrotate reopens and the stats go to; nil
	// means no stats logs.
	Logs *Logs
	// StatsInterval is the period of stats lines, selection and state
	// files; 0 means DefaultStatsInterval.
	StatsInterval time.Duration
	// Now reads the time for the holdoff and the stats time stamps, and
	// the wall clock a leap second is scheduled by; nil means time.Now.
	// Tests inject a clock here.
	Now func() time.Time
	// AfterFunc runs f after d, as time.AfterFunc does (the leap second
	// timers); nil means time.AfterFunc. Tests inject their clock's
	// timers here, with Now.
	AfterFunc func(d time.Duration, f func()) Timer
	// InterfaceExists says whether a network interface is present; nil
	// means asking the kernel. Instances bound to an absent interface
	// wait for it (netlink) or for interfaceinsert (manual).
	InterfaceExists func(name string) bool
	// PersistentCorrection restores the clock's saved frequency
	// correction (state_path/freq-correction-CLOCK) at Start and saves
	// the disciplining instance's correction while it is in sync, as
	// sfptpd's persistent_clock_correction does (on by default there;
	// the daemon sets this from its configuration).
	PersistentCorrection bool
	// Interfaces lists the network interfaces for the interfaces state
	// file; nil means asking the kernel (SystemInterfaces).
	Interfaces func() ([]Interface, error)
}

// record is one configured instance and, while it runs, its instance.
type record struct {
	cfg   config.Instance
	index int

	inst    instance.Instance // nil while stopped
	cancel  context.CancelFunc
	done    chan struct{}
	disc    bool // last SetDiscipline value
	discSet bool

	kp, ki, kd float64

	alarms []string // alarms at the last stats interval, for "alarms changed"
}

// Engine runs the sync instances. Its methods are safe for concurrent
// use: control commands come from the datagram and Kea front ends and
// from signals while the stats loop runs.
type Engine struct {
	opts Options
	cfg  *config.Config
	g    config.General
	log  *slog.Logger

	mu        sync.Mutex
	recs      []*record
	byName    map[string]*record
	selected  *record
	manual    *record // the manually selected instance (manual policy)
	candidate *record
	deadline  time.Time
	// blocked holds blocked clock names; blockAll blocks every clock.
	blocked  map[string]bool
	blockAll bool
	runCtx   context.Context
	stop     context.CancelFunc
	loopDone chan struct{}
	wg       sync.WaitGroup

	intervals    int64
	lastStateErr string
	// lastChange is when the selection last changed, for "... was
	// active for Ns".
	lastChange time.Time
	// configWritten: the config copy is written once per start.
	configWritten bool

	// leap is the leap second scheduler (leap.go), with its own lock.
	leap leapSched
}

// New checks the configuration against the available modules and
// returns an engine ready to Start. A module that is not available is a
// configuration error at its sync_module line.
func New(opts Options) (*Engine, error) {
	if opts.Config == nil {
		return nil, errors.New("engine: no configuration")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StatsInterval <= 0 {
		opts.StatsInterval = DefaultStatsInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = realAfterFunc
	}
	if opts.InterfaceExists == nil {
		opts.InterfaceExists = func(name string) bool {
			_, err := net.InterfaceByName(name)
			return err == nil
		}
	}
	e := &Engine{opts: opts, cfg: opts.Config, g: opts.Config.General, log: opts.Logger,
		byName: map[string]*record{}, blocked: map[string]bool{}}
	for i, in := range opts.Config.Instances {
		if _, ok := opts.Modules[in.Module]; !ok {
			return nil, config.Errorf(opts.Config.File, in.Line, "sync module '%s' is not available in this build", in.Module)
		}
		r := &record{cfg: in, index: i, kp: in.PIDFilterP, ki: in.PIDFilterI}
		e.recs = append(e.recs, r)
		e.byName[in.Name] = r
	}
	return e, nil
}

// Start creates and runs the instances whose interfaces are present,
// makes the initial selection and starts the stats loop. A factory
// failure at start-up is returned: the daemon cannot do what it was
// configured to do.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runCtx != nil {
		return errors.New("engine: already started")
	}
	e.runCtx, e.stop = context.WithCancel(ctx)
	e.restoreFreqCorrection()
	for _, r := range e.recs {
		if r.cfg.Interface != "" && !e.opts.InterfaceExists(r.cfg.Interface) {
			e.log.Warn(fmt.Sprintf("%s: interface %s not present, instance waits for it (hotplug_detection_mode %s)", r.cfg.Name, r.cfg.Interface, e.g.Hotplug))
			continue
		}
		if err := e.startLocked(r); err != nil {
			e.stop()
			e.stopAllLocked()
			return err
		}
	}
	switch e.g.SelectionPolicy {
	case config.PolicyManual, config.PolicyManualStartup:
		r := e.byName[e.g.SelectionInstance]
		e.log.Info(fmt.Sprintf("Selecting initial sync instance '%s'", r.cfg.Name))
		if e.g.SelectionPolicy == config.PolicyManual {
			e.manual = r
		}
		e.selectLocked(r, "initial")
	default:
		if b := best(e.candidatesLocked()); b != nil {
			e.selectLocked(b.rec, "initial")
		}
	}
	if e.g.Hotplug == config.HotplugNetlink && e.hasInterfaces() {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.watchLinks(e.runCtx)
		}()
	}
	e.loopDone = make(chan struct{})
	go e.loop(e.runCtx)
	return nil
}

func (e *Engine) hasInterfaces() bool {
	for _, r := range e.recs {
		if r.cfg.Interface != "" {
			return true
		}
	}
	return false
}

// Stop stops the loop and every instance and waits for them.
func (e *Engine) Stop() {
	e.mu.Lock()
	if e.stop == nil {
		e.mu.Unlock()
		return
	}
	e.stop()
	done := e.loopDone
	e.mu.Unlock()
	<-done
	e.stopLeap()
	e.mu.Lock()
	snaps := e.snapshotsLocked()
	e.stopAllLocked()
	n := e.intervals
	e.mu.Unlock()
	e.wg.Wait()
	// The last correction of a disciplining instance outlives the run.
	e.saveFreqCorrection(snaps)
	e.log.Info("engine stopped", "stats_intervals", n)
}

func (e *Engine) stopAllLocked() {
	for _, r := range e.recs {
		if r.inst != nil {
			r.cancel()
			r.inst = nil
		}
	}
}

// startLocked creates r's instance and runs it.
func (e *Engine) startLocked(r *record) error {
	inst, err := e.opts.Modules[r.cfg.Module](r.cfg, e.opts.Clock)
	if err != nil {
		return fmt.Errorf("sync instance %s: %w", r.cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(e.runCtx)
	r.inst, r.cancel, r.done, r.discSet = inst, cancel, make(chan struct{}), false
	done := r.done
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(done)
		err := inst.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		// The instance ended on its own: it is faulty. Forget it so
		// that the selection moves away and a hotplug insert can start
		// it again.
		e.log.Error(fmt.Sprintf("sync instance %s stopped unexpectedly", r.cfg.Name), "err", err)
		e.mu.Lock()
		if r.inst == inst {
			r.inst = nil
			cancel()
		}
		e.mu.Unlock()
	}()
	// sfptpd has no line of its own for this; the attributes are what
	// the hotplug tests and operators look for.
	e.log.Info("sync instance started", "instance", r.cfg.Name, "module", r.cfg.Module, "interface", r.cfg.Interface)
	return nil
}

// stopLocked stops r's instance; it returns the channel closed when Run
// has returned.
func (e *Engine) stopLocked(r *record) chan struct{} {
	if r.inst == nil {
		return nil
	}
	r.cancel()
	r.inst = nil
	e.log.Info("sync instance stopped", "instance", r.cfg.Name, "interface", r.cfg.Interface)
	return r.done
}

// status returns r's status; a stopped instance reports disabled.
func (r *record) status() instance.Status {
	if r.inst != nil {
		return r.inst.Status()
	}
	return instance.Status{Name: r.cfg.Name, Module: r.cfg.Module, Interface: r.cfg.Interface,
		State: instance.Disabled, UserPriority: r.cfg.Priority, ClockClass: 255, StepsRemoved: 1 << 30}
}

func (e *Engine) candidatesLocked() []candidate {
	cs := make([]candidate, len(e.recs))
	for i, r := range e.recs {
		cs[i] = candidate{rec: r, st: r.status(), manual: r == e.manual}
	}
	return cs
}

// selectLocked makes r the selected instance, at once.
func (e *Engine) selectLocked(r *record, why string) {
	prev := e.selected
	e.selected, e.candidate = r, nil
	if prev != r {
		now := e.opts.Now()
		var active time.Duration
		if prev != nil {
			active = now.Sub(e.lastChange)
		}
		e.lastChange = now
		e.log.Info(fmt.Sprintf("selected sync instance %s (%s was active for %.3fs)", r.cfg.Name, nameOf(prev), active.Seconds()))
	}
	e.applyDisciplineLocked()
}

func nameOf(r *record) string {
	if r == nil {
		return "[none]"
	}
	return r.cfg.Name
}

// clockBlockedLocked reports whether r's clock is blocked by
// block_clock (by clock name or interface name).
func (e *Engine) clockBlockedLocked(r *record, st instance.Status) bool {
	return e.blockAll || e.blocked[st.Clock] || (r.cfg.Interface != "" && e.blocked[r.cfg.Interface]) ||
		e.readonly(r, st)
}

// readonly reports whether clock_readonly names r's clock: by its long
// or short name ("phc0(eth0)", "phc0", "system"), by the instance's
// interface, or by that interface's MAC address, the ways sfptpd lets a
// clock be named. A read-only clock is measured but never stepped or
// slewed.
func (e *Engine) readonly(r *record, st instance.Status) bool {
	if len(e.g.ClockReadonly) == 0 {
		return false
	}
	names := []string{st.Clock, shortClockName(st.Clock)}
	if r.cfg.Interface != "" {
		names = append(names, r.cfg.Interface)
		if ifi, err := net.InterfaceByName(r.cfg.Interface); err == nil && len(ifi.HardwareAddr) > 0 {
			names = append(names, ifi.HardwareAddr.String())
		}
	}
	for _, ro := range e.g.ClockReadonly {
		for _, n := range names {
			if n != "" && strings.EqualFold(ro, n) {
				return true
			}
		}
	}
	return false
}

// applyDisciplineLocked gives the selected instance SetDiscipline(true)
// (unless its clock is blocked) and every other one false, calling each
// only on a change.
func (e *Engine) applyDisciplineLocked() {
	for _, r := range e.recs {
		if r.inst == nil {
			continue
		}
		on := r == e.selected && !e.clockBlockedLocked(r, r.inst.Status())
		if !r.discSet || r.disc != on {
			r.inst.SetDiscipline(on)
			r.disc, r.discSet = on, true
		}
	}
}

// evaluate runs the automatic selection with sfptpd's holdoff: a better
// instance becomes the candidate, and is selected once it has stayed the
// best for the holdoff interval; if the selected one recovers first the
// switch is cancelled.
func (e *Engine) evaluate(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evaluateLocked(now)
}

func (e *Engine) evaluateLocked(now time.Time) {
	b := best(e.candidatesLocked())
	if b == nil {
		return
	}
	next := b.rec
	switch {
	case e.selected == nil:
		e.selectLocked(next, "no instance selected")
	case next == e.selected && e.candidate == nil:
	case next == e.selected:
		e.log.Info(fmt.Sprintf("canceled switch away from sync instance %s as its rank recovered", next.cfg.Name))
		e.candidate = nil
	case next == e.candidate:
		if !now.Before(e.deadline) {
			e.selectLocked(next, "holdoff expired")
		}
	case e.g.SelectionHoldoff == 0:
		e.selectLocked(next, "better instance")
	default:
		if e.candidate == nil {
			e.deadline = now.Add(e.g.SelectionHoldoff)
		}
		e.candidate = next
		left := (e.deadline.Sub(now) + time.Second/2) / time.Second
		e.log.Info(fmt.Sprintf("will switch to sync instance %s in %d seconds if %s does not recover", next.cfg.Name, left, e.selected.cfg.Name))
	}
	e.applyDisciplineLocked()
}

// loop is the periodic work: selection, stats, state files.
func (e *Engine) loop(ctx context.Context) {
	defer close(e.loopDone)
	t := time.NewTicker(e.opts.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.tick()
		}
	}
}

// snapshot is one instance's state for one stats interval.
type snapshot struct {
	st       instance.Status
	selected bool
	manual   bool
	running  bool
	// blocked: block_clock keeps the instance from its clock.
	blocked bool
	rank    int
}

// snapshotsLocked takes every instance's snapshot with its rank; e.mu
// held.
func (e *Engine) snapshotsLocked() []snapshot {
	cs := e.candidatesLocked()
	snaps := make([]snapshot, len(e.recs))
	for i, r := range e.recs {
		snaps[i] = snapshot{st: cs[i].st, selected: r == e.selected, manual: r == e.manual,
			running: r.inst != nil, blocked: r.inst != nil && e.clockBlockedLocked(r, cs[i].st)}
	}
	rankSnapshots(snaps, cs)
	return snaps
}

func (e *Engine) tick() {
	now := e.opts.Now()
	e.mu.Lock()
	e.evaluateLocked(now)
	snaps := e.snapshotsLocked()
	for i, r := range e.recs {
		e.logAlarmChangeLocked(r, snaps[i].st.Alarms)
	}
	e.intervals++
	e.mu.Unlock()
	e.leapFromStatus(snaps)
	e.writeStats(now, snaps)
	e.writeState(snaps)
	e.saveFreqCorrection(snaps)
}
