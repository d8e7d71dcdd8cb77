package engine

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// TestMode is one of sfptpd's test modes (testmode=MODE[,ARG]*), in
// sfptpd's order.
type TestMode int

// The test modes.
const (
	TestLeapSecond61 TestMode = iota
	TestLeapSecond59
	TestLeapSecondCancel
	TestLocalLeapSecond61
	TestLocalLeapSecond59
	TestLocalLeapSecondCancel
	TestUTCOffset
	TestTimestampJitter
	TestTransparentClock
	TestBoundaryClockChange
	TestGrandmasterClockChange
	TestNoSyncPkts
	TestNoFollowUps
	TestNoDelayResps
	TestBogusPPSEvents
	TestAdjustFrequency
	TestNoAnnouncePkts
	numTestModes
)

var testModeNames = [numTestModes]string{
	"leap_second_61", "leap_second_59", "leap_second_cancel",
	"local_leap_second_61", "local_leap_second_59", "local_leap_second_cancel",
	"utc_offset", "timestamp_jitter", "transparent_clock",
	"boundary_clock_change", "grandmaster_clock_change",
	"no_sync_pkts", "no_follow_ups", "no_delay_resps",
	"bogus_pps_events", "adjust_frequency", "no_announce_pkts",
}

// String returns the mode's name as testmode= spells it.
func (m TestMode) String() string {
	if m >= 0 && m < numTestModes {
		return testModeNames[m]
	}
	return "test-mode-" + strconv.Itoa(int(m))
}

// TestModes lists every test mode, in sfptpd's order.
func TestModes() []TestMode {
	ms := make([]TestMode, numTestModes)
	for i := range ms {
		ms[i] = TestMode(i)
	}
	return ms
}

// LookupTestMode finds a test mode by its exact name.
func LookupTestMode(name string) (TestMode, bool) {
	for i, n := range testModeNames {
		if n == name {
			return TestMode(i), true
		}
	}
	return 0, false
}

// TestModer is the optional capability of a sync instance that carries
// out test modes itself (the PTP port's packet suppression). TestMode
// returns an error wrapping errors.ErrUnsupported for a mode the
// instance does not implement.
type TestModer interface {
	TestMode(mode string, params [3]int) error
}

// unsupportedWhy says why ptpd cannot honour a mode no instance takes.
func unsupportedWhy(m TestMode) string {
	if m == TestBogusPPSEvents {
		return "it needs a pps sync instance reading PPS events from hardware, and ptpd has no pps module"
	}
	return "no running sync instance implements it"
}

// ApplyTestMode carries out a test mode that was enabled (test_mode in
// the configuration; the command layer checks), as sfptpd's engine
// does: adjust_frequency changes the selected instance's clock
// frequency by params[0] ppb; leap_second_61/59/cancel set up (or drop)
// a leap second test, and local_leap_second_61/59/cancel schedule (or
// cancel) a genuine leap second with a 10 s guard (leap.go);
// bogus_pps_events needs PPS hardware and is only logged; every other
// mode (utc_offset among them) goes to each running instance that
// implements TestModer, as sfptpd hands it to every sync instance.
func (e *Engine) ApplyTestMode(m TestMode, params [3]int) error {
	if m < 0 || m >= numTestModes {
		return fmt.Errorf("test mode %d: %w", int(m), errors.ErrUnsupported)
	}
	switch m {
	case TestAdjustFrequency:
		return e.testAdjustFrequency(params[0])
	case TestBogusPPSEvents:
		e.log.Warn(fmt.Sprintf("test mode %s not applied: %s", m, unsupportedWhy(m)))
		return fmt.Errorf("test mode %s: %w", m, errors.ErrUnsupported)
	case TestLeapSecond61:
		return e.testLeapSecond(Leap61)
	case TestLeapSecond59:
		return e.testLeapSecond(Leap59)
	case TestLeapSecondCancel:
		return e.testLeapSecond(LeapNone)
	case TestLocalLeapSecond61:
		return e.ScheduleLeapSecond(Leap61, localLeapGuard)
	case TestLocalLeapSecond59:
		return e.ScheduleLeapSecond(Leap59, localLeapGuard)
	case TestLocalLeapSecondCancel:
		// sfptpd passes "no leap second" to its scheduling call here,
		// which its own assertion forbids; cancelling is what the mode
		// is named for.
		return e.CancelLeapSecond()
	}
	return e.forwardTestMode(m, params)
}

// forwardTestMode hands a test mode to every running instance that
// implements TestModer; it takes e.mu only to list them.
func (e *Engine) forwardTestMode(m TestMode, params [3]int) error {
	e.mu.Lock()
	type target struct {
		name string
		tm   TestModer
	}
	var ts []target
	for _, r := range e.recs {
		if tm, ok := r.inst.(TestModer); ok {
			ts = append(ts, target{r.cfg.Name, tm})
		}
	}
	e.mu.Unlock()
	applied := 0
	var errs []error
	for _, t := range ts {
		err := t.tm.TestMode(m.String(), params)
		switch {
		case err == nil:
			applied++
		case errors.Is(err, errors.ErrUnsupported):
			// As in sfptpd, every sync module is handed the mode and
			// those it does not concern ignore it (a slave port and a
			// master-only mode, for one).
			e.log.Debug(fmt.Sprintf("%s: test mode %s does not apply to this instance", t.name, m))
		default:
			e.log.Error(fmt.Sprintf("%s: test mode %s failed", t.name, m), "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", t.name, err))
		}
	}
	if applied == 0 && len(errs) == 0 {
		e.log.Warn(fmt.Sprintf("test mode %s not applied: %s", m, unsupportedWhy(m)))
		return fmt.Errorf("test mode %s: %w", m, errors.ErrUnsupported)
	}
	return errors.Join(errs...)
}

// testAdjustFrequency changes the frequency of the selected instance's
// clock: through the instance when it takes test modes, else directly
// when that clock is the daemon's own.
func (e *Engine) testAdjustFrequency(ppb int) error {
	e.mu.Lock()
	r := e.selected
	var inst any
	var st clockOf
	if r != nil {
		inst = r.inst
		s := r.status()
		st = clockOf{name: s.Clock, instance: r.cfg.Name}
	}
	e.mu.Unlock()
	if r == nil || st.name == "" || st.name == "none" {
		e.log.Error("no reference clock to adjust")
		return errors.New("no reference clock to adjust")
	}
	e.notice(fmt.Sprintf("adjusting local reference clock (%s) frequency by %.6f ppb", shortClockName(st.name), float64(ppb)))
	if tm, ok := inst.(TestModer); ok {
		err := tm.TestMode(TestAdjustFrequency.String(), [3]int{ppb})
		if err == nil || !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	if e.opts.Clock != nil && e.opts.Clock.Name() == st.name {
		if err := e.opts.Clock.AdjFreqPPB(float64(ppb)); err != nil {
			e.log.Error(fmt.Sprintf("test mode adjust_frequency: adjusting clock %s failed", st.name), "err", err)
			return fmt.Errorf("adjust_frequency: %s: %w", st.name, err)
		}
		return nil
	}
	e.log.Warn(fmt.Sprintf("test mode adjust_frequency not applied: clock %s belongs to sync instance %s, which does not implement test modes", st.name, st.instance))
	return fmt.Errorf("adjust_frequency: %s: %w", st.name, errors.ErrUnsupported)
}

type clockOf struct{ name, instance string }

// cStrtol reads an integer as C's strtol(s, NULL, 0) does: leading
// white space, a sign, a 0x/0 base prefix, then as many digits as fit;
// no digits reads 0. It reports false where strtol sets ERANGE (the
// value does not fit in a 64-bit long).
func cStrtol(s string) (int64, bool) {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && hexDigit(s[2]):
		base, s = 16, s[2:]
	case len(s) > 0 && s[0] == '0':
		base = 8
	}
	var mag uint64
	over := false
	for i := 0; i < len(s); i++ {
		d := digitVal(s[i])
		if d >= base {
			break
		}
		if mag > (1<<64-1-uint64(d))/uint64(base) {
			over = true
			continue
		}
		mag = mag*uint64(base) + uint64(d)
	}
	if neg {
		if over || mag > 1<<63 {
			return -1 << 63, false
		}
		return -int64(mag), true
	}
	if over || mag > 1<<63-1 {
		return 1<<63 - 1, false
	}
	return int64(mag), true
}

func hexDigit(c byte) bool { return digitVal(c) < 16 }

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return 99
}

// cStrtod reads a number as C's strtod(s, NULL) does: the longest
// prefix (after white space) that is a number; none reads 0.
func cStrtod(s string) float64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	for n := len(s); n > 0; n-- {
		p := s[:n]
		if strings.ContainsRune(p, '_') {
			continue
		}
		if v, err := strconv.ParseFloat(p, 64); err == nil || errors.Is(err, strconv.ErrRange) {
			return v
		}
	}
	return 0
}

// ParseTestMode reads testmode's fields as sfptpd does: the mode name,
// then up to three integers in C's notation (0x.., 0..); further fields
// are ignored. Errors carry sfptpd's texts, without its "control: "
// prefix.
func ParseTestMode(fields []string) (TestMode, [3]int, error) {
	var params [3]int
	if len(fields) == 0 {
		return 0, params, errors.New("no test mode specified")
	}
	m, ok := LookupTestMode(fields[0])
	if !ok {
		return 0, params, fmt.Errorf("test mode %s unknown", fields[0])
	}
	for i, f := range fields[1:] {
		if i >= len(params) {
			break
		}
		v, ok := cStrtol(f)
		if !ok {
			return 0, params, fmt.Errorf("testmode has invalid mode parameter: %s", f)
		}
		// sfptpd stores the long in an int: keep the low 32 bits.
		params[i] = int(int32(v))
	}
	return m, params, nil
}

// ParsePIDAdjust reads pid_adjust's fields as sfptpd does: three
// positional coefficients (an empty or absent one keeps the servo's
// value; text that is no number reads 0, as strtod reads it), then any
// of local, ptp, pps and reset.
func ParsePIDAdjust(fields []string) (PIDAdjustment, error) {
	p := PIDAdjustment{KP: math.NaN(), KI: math.NaN(), KD: math.NaN()}
	coef := []*float64{&p.KP, &p.KI, &p.KD}
	for i, f := range fields {
		if i < len(coef) {
			if f != "" {
				*coef[i] = cStrtod(f)
			}
			continue
		}
		switch f {
		case "local":
			p.Mask |= ServoLocal
		case "ptp":
			p.Mask |= ServoPTP
		case "pps":
			p.Mask |= ServoPPS
		case "reset":
			p.Reset = true
		default:
			return p, fmt.Errorf("pid_adjust has unexpected token: %s", f)
		}
	}
	if p.Mask == 0 {
		p.Mask = ServoAll
	}
	return p, nil
}

// ParseBlockClock reads block_clock's fields as sfptpd does: the first
// blocks unless it reads as the number 0 (absent or empty blocks); the
// rest are clock names.
func ParseBlockClock(fields []string) (bool, []string) {
	block := true
	if len(fields) > 0 && fields[0] != "" {
		block = cStrtod(fields[0]) != 0
	}
	if len(fields) > 1 {
		return block, fields[1:]
	}
	return block, nil
}
