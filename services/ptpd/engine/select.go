package engine

import (
	"cmp"
	"math"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// stateRank orders states as sfptpd's selection does: slave first, then
// listening (and the transitional states), then master/passive, then
// disabled/faulty. Freerun ranks with slave: it is a working reference,
// and the later rules (clock class 248) put it behind any PTP slave of a
// real grandmaster.
func stateRank(s instance.State) int {
	switch s {
	case instance.Slave, instance.Freerun:
		return 0
	case instance.Listening, instance.Uncalibrated, instance.Initializing:
		return 1
	case instance.Master, instance.PreMaster, instance.Passive:
		return 2
	default: // disabled, faulty, unknown
		return 3
	}
}

// candidate is one instance as the selection sees it.
type candidate struct {
	rec    *record
	st     instance.Status
	manual bool
}

// Selection rules, in sfptpd's order; compare reports the first that
// decides.
const (
	ruleManual   = "manual"
	ruleState    = "state"
	ruleAlarms   = "no-alarms"
	rulePriority = "user-priority"
	ruleClass    = "clock-class"
	ruleAccuracy = "total-accuracy"
	ruleSteps    = "steps-removed"
	ruleTieBreak = "tie-break"
)

// compare returns <0 when a is better than b, >0 when b is better, and
// the rule that decided. The tie-break is the configuration order, so
// the result never depends on map order or timing.
func compare(a, b candidate) (int, string) {
	if a.manual != b.manual {
		if a.manual {
			return -1, ruleManual
		}
		return 1, ruleManual
	}
	if c := cmp.Compare(stateRank(a.st.State), stateRank(b.st.State)); c != 0 {
		return c, ruleState
	}
	if aa, ba := len(a.st.Alarms) > 0, len(b.st.Alarms) > 0; aa != ba {
		if ba {
			return -1, ruleAlarms
		}
		return 1, ruleAlarms
	}
	if c := cmp.Compare(a.st.UserPriority, b.st.UserPriority); c != 0 {
		return c, rulePriority
	}
	if c := cmp.Compare(a.st.ClockClass, b.st.ClockClass); c != 0 {
		return c, ruleClass
	}
	if c := cmp.Compare(accuracy(a.st.AccuracyNS), accuracy(b.st.AccuracyNS)); c != 0 {
		return c, ruleAccuracy
	}
	if c := cmp.Compare(a.st.StepsRemoved, b.st.StepsRemoved); c != 0 {
		return c, ruleSteps
	}
	return cmp.Compare(a.rec.index, b.rec.index), ruleTieBreak
}

// accuracy treats an unknown (NaN) accuracy as the worst.
func accuracy(f float64) float64 {
	if math.IsNaN(f) {
		return math.Inf(1)
	}
	return f
}

// best returns the best candidate (nil for none).
func best(cs []candidate) *candidate {
	var b *candidate
	for i := range cs {
		if b == nil {
			b = &cs[i]
			continue
		}
		if c, _ := compare(cs[i], *b); c < 0 {
			b = &cs[i]
		}
	}
	return b
}
