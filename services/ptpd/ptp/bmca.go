package ptp

import (
	"fmt"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

// Dataset is what the best master clock algorithm compares (IEEE
// 1588-2019 9.3.4): a grandmaster's attributes and the path to it.
type Dataset struct {
	Priority1    uint8
	ClockClass   uint8
	Accuracy     uint8
	Variance     uint16
	Priority2    uint8
	GM           protocol.ClockIdentity
	StepsRemoved uint16
	Sender       protocol.PortIdentity // the port the Announce came from
	Receiver     protocol.PortIdentity // our port
}

// datasetFromAnnounce builds a foreign master's data set.
func datasetFromAnnounce(a *protocol.Announce, receiver protocol.PortIdentity) Dataset {
	return Dataset{
		Priority1:    a.GrandmasterPriority1,
		ClockClass:   uint8(a.GrandmasterClockQuality.ClockClass),
		Accuracy:     uint8(a.GrandmasterClockQuality.ClockAccuracy),
		Variance:     a.GrandmasterClockQuality.OffsetScaledLogVariance,
		Priority2:    a.GrandmasterPriority2,
		GM:           a.GrandmasterIdentity,
		StepsRemoved: a.StepsRemoved,
		Sender:       a.SourcePortIdentity,
		Receiver:     receiver,
	}
}

func cmp[T uint8 | uint16 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Compare returns -1 when a is the better master, 1 when b is, 0 when
// they are the same (IEEE 1588-2019 figures 34 and 35). Different
// grandmasters are ranked by priority1, class, accuracy, variance,
// priority2 and identity; the same grandmaster seen over two paths by
// steps removed, then by the sending port's identity.
func Compare(a, b Dataset) int {
	if a.GM != b.GM {
		for _, c := range []int{
			cmp(a.Priority1, b.Priority1),
			cmp(a.ClockClass, b.ClockClass),
			cmp(a.Accuracy, b.Accuracy),
			cmp(a.Variance, b.Variance),
			cmp(a.Priority2, b.Priority2),
			cmp(uint64(a.GM), uint64(b.GM)),
		} {
			if c != 0 {
				return c
			}
		}
	}
	if c := cmp(a.StepsRemoved, b.StepsRemoved); c != 0 {
		return c
	}
	if c := a.Sender.Compare(b.Sender); c != 0 {
		return c
	}
	return a.Receiver.Compare(b.Receiver)
}

// Foreign-master qualification (IEEE 1588-2019 9.3.2.4.4): a master counts
// once foreignThreshold Announces arrived within foreignWindow announce
// intervals. maxForeign bounds the table against a flood of identities.
const (
	foreignThreshold = 2
	foreignWindow    = 4
	maxForeign       = 16
)

// foreign is one foreign master's record.
type foreign struct {
	id       protocol.PortIdentity
	ds       Dataset
	last     *protocol.Announce
	interval time.Duration // its announce interval, from its messages
	times    []time.Time   // receipt times inside the window, oldest first
}

func (f *foreign) qualified() bool { return len(f.times) >= foreignThreshold }

func (f *foreign) prune(now time.Time) {
	limit := now.Add(-foreignWindow * f.interval)
	i := 0
	for i < len(f.times) && f.times[i].Before(limit) {
		i++
	}
	f.times = f.times[i:]
}

// foreignTable is the port's foreign master data set.
type foreignTable struct {
	m map[protocol.PortIdentity]*foreign
}

func newForeignTable() *foreignTable {
	return &foreignTable{m: map[protocol.PortIdentity]*foreign{}}
}

// add records an Announce and reports whether it was kept.
func (t *foreignTable) add(a *protocol.Announce, receiver protocol.PortIdentity, now time.Time) bool {
	f, ok := t.m[a.SourcePortIdentity]
	if !ok {
		if len(t.m) >= maxForeign {
			t.expire(now)
			if len(t.m) >= maxForeign {
				return false
			}
		}
		f = &foreign{id: a.SourcePortIdentity}
		t.m[f.id] = f
	}
	f.interval = announceInterval(a.LogMessageInterval)
	f.ds = datasetFromAnnounce(a, receiver)
	cp := *a
	cp.TLVs = nil
	f.last = &cp
	f.times = append(f.times, now)
	if len(f.times) > foreignWindow+1 {
		f.times = f.times[len(f.times)-foreignWindow-1:]
	}
	f.prune(now)
	return true
}

// expire drops records with no Announce inside their window.
func (t *foreignTable) expire(now time.Time) {
	for id, f := range t.m {
		f.prune(now)
		if len(f.times) == 0 {
			delete(t.m, id)
		}
	}
}

// remove forgets a master (its announce receipt timeout expired).
func (t *foreignTable) remove(id protocol.PortIdentity) { delete(t.m, id) }

// best returns the best qualified foreign master, or nil.
func (t *foreignTable) best(now time.Time) *foreign {
	var b *foreign
	for _, f := range t.m {
		f.prune(now)
		if !f.qualified() {
			continue
		}
		if b == nil || Compare(f.ds, b.ds) < 0 {
			b = f
		}
	}
	return b
}

// announceInterval reads a master's announce interval from its messages,
// within the range Config.Validate allows; out-of-range values (0x7f
// "unspecified" among them) fall back to one second.
func announceInterval(l protocol.LogInterval) time.Duration {
	v := int8(l)
	if v < -7 || v > 7 {
		return time.Second
	}
	return logInterval(v)
}

// sfptpdID formats a clock identity as sfptpd does: "0011:22ff:fe33:4455".
func sfptpdID(c protocol.ClockIdentity) string {
	v := uint64(c)
	return fmt.Sprintf("%04x:%04x:%04x:%04x", v>>48, (v>>32)&0xffff, (v>>16)&0xffff, v&0xffff)
}
