package engine

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// LeapType is a leap second's kind: 61 inserts a second at the end of
// the UTC day (23:59:60), 59 deletes the day's last second.
type LeapType int

// The leap second kinds.
const (
	LeapNone LeapType = iota
	Leap61
	Leap59
)

// String returns "61", "59" or "none", as sfptpd's messages name them.
func (l LeapType) String() string {
	switch l {
	case Leap61:
		return "61"
	case Leap59:
		return "59"
	}
	return "none"
}

// Guard interval bounds: sfptpd suspends clock updates for at least 2
// and at most 10 seconds either side of a leap second, whatever its
// source asks for.
const (
	LeapGuardMin = 2 * time.Second
	LeapGuardMax = 10 * time.Second
	// localLeapGuard is what the local_leap_second_* test modes ask for
	// (sfptpd's 12 s, which the maximum then cuts to 10 s).
	localLeapGuard = 12 * time.Second
)

// LeapGuarder is the optional capability of a sync instance that stops
// disciplining its clock while a leap second is near: LeapGuard(true)
// at the start of the guard interval before the leap, false at the end
// of the one after it (or when the leap second is cancelled). sfptpd
// clears every instance's timestamp processing for that time, so that
// no measurement straddling the leap reaches a servo.
type LeapGuarder interface {
	LeapGuard(on bool)
}

// LeapAnnouncer is the optional capability of a sync instance that
// passes the leap second state on (a PTP master's Announce flags):
// the engine calls UpdateLeapSecond on every running instance when a
// leap second is scheduled, happens or is cancelled, as sfptpd updates
// every sync module.
type LeapAnnouncer interface {
	UpdateLeapSecond(leap59, leap61 bool)
}

// LeapStepper is the optional capability of a sync instance that steps
// its own clock at a leap second: StepLeap steps it by d (-1 s for a
// 61, +1 s for a 59) when that clock counts UTC, and reports whether it
// did; a clock on the PTP timescale (TAI, a PHC) has no leap second and
// is left alone. An instance without it whose clock is the daemon's
// (Options.Clock) has that clock stepped by the engine.
type LeapStepper interface {
	StepLeap(d time.Duration) (bool, error)
}

// Timer is a pending AfterFunc call; Stop cancels it.
type Timer interface {
	Stop() bool
}

func realAfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// leapPhase is the scheduler's state, sfptpd's.
type leapPhase int

const (
	leapIdle leapPhase = iota
	// leapScheduled: waiting for the guard interval before the leap.
	leapScheduled
	// leapActivePre: in the guard interval before the leap.
	leapActivePre
	// leapActivePost: in the guard interval after it.
	leapActivePost
	// leapTest: a leap_second_* test: masters announce the flag, and at
	// the leap the announced UTC offset changes; no clock moves.
	leapTest
)

// leapFlags are an instance's leap second flags at the last stats
// interval.
type leapFlags struct{ leap59, leap61 bool }

// leapSched is the leap second scheduler. Its mutex is taken before
// Engine.mu, never while holding it, and is held while instances are
// called so that their leap state changes in the scheduler's order.
type leapSched struct {
	mu    sync.Mutex
	phase leapPhase
	typ   LeapType
	// at is the leap second's moment: the next UTC midnight for a 61,
	// one second before it for a 59 (the day's last second is deleted).
	at    time.Time
	guard time.Duration
	timer Timer
	// gen numbers the armed timer: a callback of a timer stopped or
	// replaced since does nothing.
	gen     uint64
	stopped bool
	// prev holds each instance's flags at the last stats interval, to
	// act on a change as sfptpd's PTP module does.
	prev map[string]leapFlags
}

// leapMoment returns when a leap second of type t scheduled at now
// happens: the end of the current UTC day.
func leapMoment(now time.Time, t LeapType) time.Time {
	s := now.Unix()
	day := s - s%86400
	if s < 0 && s%86400 != 0 {
		day -= 86400
	}
	at := time.Unix(day+86400, 0)
	if t == Leap59 {
		at = at.Add(-time.Second)
	}
	return at
}

// localHHMM is the leap second's moment in local time, as sfptpd's
// messages give it.
func localHHMM(t time.Time) string { return t.Local().Format("15:04") }

// ScheduleLeapSecond schedules a leap second of type t at the end of the
// current UTC day, with a guard interval (clamped to LeapGuardMin to
// LeapGuardMax) either side of it during which no instance disciplines
// its clock. At the leap the selected instance's clock is stepped by a
// second under clock_control slew-and-step. A leap second already
// scheduled, or a leap second test, is cancelled first; one already in
// its guard interval stays and this one is refused.
func (e *Engine) ScheduleLeapSecond(t LeapType, guard time.Duration) error {
	if t != Leap61 && t != Leap59 {
		return fmt.Errorf("leap second type %d: want 61 or 59", int(t))
	}
	guard = min(max(guard, LeapGuardMin), LeapGuardMax)
	l := &e.leap
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return errEngineStopped
	}
	switch l.phase {
	case leapActivePre, leapActivePost:
		return e.ignored("can't schedule leap second - one already in progress!")
	case leapScheduled, leapTest:
		e.cancelLeapLocked()
	}
	l.typ, l.guard = t, guard
	l.at = leapMoment(e.opts.Now(), t)
	l.phase = leapScheduled
	e.armLeapLocked(l.at.Add(-guard))
	e.updateLeapStatusLocked(t)
	e.notice(fmt.Sprintf("leap second %s scheduled for UTC midnight (local time: %s)", t, localHHMM(l.at)))
	return nil
}

// CancelLeapSecond cancels a scheduled leap second or leap second test
// and ends a guard interval after a leap; within the guard interval
// before the leap it is too late, and the leap second goes ahead.
func (e *Engine) CancelLeapSecond() error {
	l := &e.leap
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase == leapActivePre {
		return e.ignored("can't cancel leap second - already in progress!")
	}
	e.cancelLeapLocked()
	return nil
}

// cancelLeapLocked returns the scheduler to idle, lifting the guard and
// clearing the announced leap flags; l.mu held.
func (e *Engine) cancelLeapLocked() {
	l := &e.leap
	if l.phase == leapIdle {
		return
	}
	e.disarmLeapLocked()
	l.phase, l.typ = leapIdle, LeapNone
	e.leapGuardLocked(false)
	e.updateLeapStatusLocked(LeapNone)
	e.notice("leap second cancelled/complete")
}

// testLeapSecond is the leap_second_61/59/cancel test mode: the leap
// second is announced (PTP masters set the Announce flag) and at the
// end of the UTC day the UTC offset the masters announce changes by it,
// with no clock touched, so that slaves downstream see a leap second. A
// genuine leap second already scheduled refuses it.
func (e *Engine) testLeapSecond(t LeapType) error {
	l := &e.leap
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return errEngineStopped
	}
	if l.phase != leapIdle && l.phase != leapTest {
		return e.ignored("won't set up leap second - genuine leap second scheduled!")
	}
	if l.phase == leapTest {
		e.cancelLeapLocked()
	}
	if t == LeapNone {
		return nil
	}
	l.typ = t
	l.at = leapMoment(e.opts.Now(), t)
	e.armLeapLocked(l.at)
	e.updateLeapStatusLocked(t)
	e.log.Info(fmt.Sprintf("leap second %s test at UTC midnight (local time: %s)", t, localHHMM(l.at)))
	l.phase = leapTest
	return nil
}

// armLeapLocked sets the leap timer for the wall-clock time due; l.mu
// held.
func (e *Engine) armLeapLocked(due time.Time) {
	l := &e.leap
	if l.timer != nil {
		l.timer.Stop()
	}
	l.gen++
	gen := l.gen
	l.timer = e.opts.AfterFunc(max(due.Sub(e.opts.Now()), 0), func() { e.onLeapTimer(gen, due) })
}

func (e *Engine) disarmLeapLocked() {
	l := &e.leap
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.gen++
}

// onLeapTimer moves the scheduler on when its timer fires: scheduled →
// guard before the leap → the leap → guard after it → idle, or, for a
// test, the UTC offset change at the leap.
func (e *Engine) onLeapTimer(gen uint64, due time.Time) {
	l := &e.leap
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen || l.stopped {
		return // stopped or replaced since
	}
	// The timer runs on the monotonic clock, the leap on the wall
	// clock: if the wall clock has not reached the due time (it was
	// stepped back meanwhile), wait for the rest.
	if left := due.Sub(e.opts.Now()); left > 0 {
		e.armLeapLocked(due)
		return
	}
	l.timer = nil
	switch l.phase {
	case leapScheduled:
		l.phase = leapActivePre
		e.armLeapLocked(l.at)
		e.leapGuardLocked(true)
		e.notice(fmt.Sprintf("leap second %s imminent. Suspending timestamp processing", l.typ))
	case leapActivePre:
		e.leapNowLocked(l.typ)
		l.typ = LeapNone
		e.updateLeapStatusLocked(LeapNone)
		l.phase = leapActivePost
		e.armLeapLocked(l.at.Add(l.guard))
	case leapActivePost:
		e.cancelLeapLocked()
	case leapTest:
		delta := 1
		if l.typ == Leap59 {
			delta = -1
		}
		e.forwardTestMode(TestUTCOffset, [3]int{delta})
		e.cancelLeapLocked()
	}
}

// leapNowLocked carries out the leap second: under clock_control
// slew-and-step the selected instance's clock is stepped a second
// (back for a 61, forward for a 59); otherwise it is left for the servo
// to slew, as sfptpd does. l.mu held.
func (e *Engine) leapNowLocked(t LeapType) {
	dir, d := "backward", -time.Second
	if t == Leap59 {
		dir, d = "forward", time.Second
	}
	if e.g.ClockControl != config.ClockSlewAndStep {
		e.notice(fmt.Sprintf("leap second now: clocks will be slewed %s by one second", dir))
		return
	}
	e.notice(fmt.Sprintf("leap second now: stepping clocks %s by one second", dir))
	e.mu.Lock()
	r := e.selected
	var inst instance.Instance
	var st instance.Status
	blocked := false
	if r != nil && r.inst != nil {
		inst = r.inst
		st = inst.Status()
		blocked = e.clockBlockedLocked(r, st)
	}
	e.mu.Unlock()
	switch {
	case inst == nil:
		e.log.Warn("leap second: no selected sync instance, no clock stepped")
		return
	case blocked:
		e.log.Info(fmt.Sprintf("leap second: clock %s is blocked or read-only, not stepped", st.Clock))
		return
	case r.cfg.ClockControl == config.ClockNoAdjust:
		e.log.Info(fmt.Sprintf(`leap second: clock %s not stepped: sync instance %s has "clock-control no-adjust"`, st.Clock, r.cfg.Name))
		return
	}
	if ls, ok := inst.(LeapStepper); ok {
		stepped, err := ls.StepLeap(d)
		switch {
		case err != nil:
			e.log.Error(fmt.Sprintf("leap second: stepping clock %s failed", st.Clock), "err", err)
		case stepped:
			e.log.Info(fmt.Sprintf("leap second: clock %s stepped by %v", st.Clock, d))
		default:
			e.log.Info(fmt.Sprintf("leap second: clock %s is on the PTP timescale and has no leap second", st.Clock))
		}
		return
	}
	if e.opts.Clock == nil || e.opts.Clock.Name() != st.Clock {
		e.log.Warn(fmt.Sprintf("leap second: clock %s of sync instance %s cannot be stepped: the instance does not step clocks for leap seconds", st.Clock, r.cfg.Name))
		return
	}
	if err := e.opts.Clock.Step(d); err != nil {
		e.log.Error(fmt.Sprintf("leap second: stepping clock %s failed", st.Clock), "err", err)
		return
	}
	e.log.Info(fmt.Sprintf("leap second: clock %s stepped by %v", st.Clock, d))
}

// runningInstances lists the running instances; it takes e.mu.
func (e *Engine) runningInstances() []instance.Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []instance.Instance
	for _, r := range e.recs {
		if r.inst != nil {
			out = append(out, r.inst)
		}
	}
	return out
}

// leapGuardLocked turns every running instance's leap guard on or off;
// l.mu held.
func (e *Engine) leapGuardLocked(on bool) {
	for _, inst := range e.runningInstances() {
		if g, ok := inst.(LeapGuarder); ok {
			g.LeapGuard(on)
		}
	}
}

// updateLeapStatusLocked tells every running instance which leap second
// is pending; l.mu held.
func (e *Engine) updateLeapStatusLocked(t LeapType) {
	for _, inst := range e.runningInstances() {
		if a, ok := inst.(LeapAnnouncer); ok {
			a.UpdateLeapSecond(t == Leap59, t == Leap61)
		}
	}
}

// leapFromStatus acts on the selected instance's leap second flags as
// sfptpd's PTP module does: when the flags of the selected instance,
// in the slave state, change, the leap second they announce is
// scheduled (59 first when both are set) with a guard of twice the
// instance's announce interval, or, when they clear, cancelled. It
// takes l.mu, then e.mu for no longer than a read.
func (e *Engine) leapFromStatus(snaps []snapshot) {
	l := &e.leap
	l.mu.Lock()
	if l.prev == nil {
		l.prev = map[string]leapFlags{}
	}
	type change struct {
		f     leapFlags
		guard time.Duration
	}
	var act *change
	for _, s := range snaps {
		f := leapFlags{s.st.Leap59, s.st.Leap61}
		changed := f != l.prev[s.st.Name]
		l.prev[s.st.Name] = f
		if changed && s.selected && s.st.State == instance.Slave {
			act = &change{f, 2 * s.st.AnnounceInterval}
		}
	}
	l.mu.Unlock()
	if act == nil {
		return
	}
	// A refusal (a leap second in progress) is logged where it happens.
	switch {
	case act.f.leap59:
		_ = e.ScheduleLeapSecond(Leap59, act.guard)
	case act.f.leap61:
		_ = e.ScheduleLeapSecond(Leap61, act.guard)
	default:
		_ = e.CancelLeapSecond()
	}
}

// stopLeap disarms the scheduler for good (Engine.Stop).
func (e *Engine) stopLeap() {
	l := &e.leap
	l.mu.Lock()
	defer l.mu.Unlock()
	e.disarmLeapLocked()
	l.stopped = true
}

// LeapStatus reports the pending leap second and when it happens;
// LeapNone when none is scheduled or under test.
func (e *Engine) LeapStatus() (LeapType, time.Time) {
	l := &e.leap
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase == leapIdle {
		return LeapNone, time.Time{}
	}
	return l.typ, l.at
}

// errEngineStopped refuses leap second work after Stop.
var errEngineStopped = errors.New("engine stopped")
