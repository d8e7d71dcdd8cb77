package hotplug

import (
	"fmt"
	"slices"
	"time"
)

// DefaultCoalesce is the coalescing window. The kernel sends several
// RTM_NEWLINK messages for one new link (registration, then each flag and
// operstate change); 50 ms covers a burst from one `ip` command or a
// driver probe without delaying a daemon noticeably.
const DefaultCoalesce = 50 * time.Millisecond

// Kind is what happened to an interface over one coalescing window.
type Kind int

const (
	// Insert: the interface is new to the targets (absent before the
	// window, present after it). Sent as "interfaceinsert=IF".
	Insert Kind = iota
	// Remove: the interface the targets know is gone (deleted, renamed
	// away, or now ignored). Sent as "interfaceremove=IF".
	Remove
	// State: the interface stayed, but its state, flags, MAC or MTU
	// changed. Logged, not sent: sfptpd learns those itself.
	State
	// Transient: the interface appeared and vanished within one window.
	// Logged, not sent: a daemon told about it could only fail to open
	// it.
	Transient
	// Resync: an interface the targets know, re-sent as
	// "interfaceinsert=IF" to one target whose daemon restarted (its
	// socket was re-created) and so lost what it was told. Made by the
	// agent, never by the coalescer.
	Resync
)

func (k Kind) String() string {
	switch k {
	case Insert:
		return "insert"
	case Remove:
		return "remove"
	case State:
		return "state"
	case Transient:
		return "transient"
	case Resync:
		return "resync"
	}
	return "unknown"
}

// MarshalText makes a Kind encode as its name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a Kind's name, so that clients can decode
// events-get replies into Event.
func (k *Kind) UnmarshalText(b []byte) error {
	for _, c := range []Kind{Insert, Remove, State, Transient, Resync} {
		if string(b) == c.String() {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("unknown event kind %q", b)
}

// Change is one net change of a coalescing window.
type Change struct {
	Kind Kind
	// Link is the interface: as it is now for Insert and State, as it
	// was for Remove and Transient.
	Link Link
	// Prev is the interface as it was before a State change.
	Prev Link
}

// Command returns the sfptpd control datagram for the change, and false
// for kinds that are not sent.
func (c Change) Command() (string, bool) {
	switch c.Kind {
	case Insert:
		return "interfaceinsert=" + c.Link.Name, true
	case Remove:
		return "interfaceremove=" + c.Link.Name, true
	}
	return "", false
}

// Coalescer turns link updates into net changes per window. The first
// update after a quiet period opens a window of fixed length (it is not
// extended by later updates, so a link flapping forever still gets
// reported); Flush at or after the deadline returns, per interface, the
// difference between what the targets were told and what is there now.
//
// Interfaces are identified by index and name together: a rename is a
// remove of the old name and an insert of the new one, and a link
// deleted and re-created under the same name (new index) is a remove and
// an insert, so that a daemon reopens it.
//
// The clock is injected (every method takes now), so that tests need not
// sleep. A Coalescer is not safe for concurrent use; the agent drives it
// from one goroutine.
type Coalescer struct {
	window time.Duration
	ignore Patterns

	// cur is every link the kernel last reported, ignored ones included.
	// Names in it are unique, as they are in the kernel.
	cur map[int]Link
	// told is what the targets were told: index to name of every present,
	// not ignored link as of the last flush.
	told map[int]string

	// The open window.
	open     bool
	deadline time.Time
	// order lists the indexes changed in the window, in the order they
	// first changed; the changes are reported in that order.
	order []int
	// start holds each changed index's link as of the window's start;
	// absent indexes have no entry.
	start map[int]Link
	// seen holds the last state in which an index the targets did not
	// know was present (and not ignored) during the window, to report it
	// as Transient if it is gone again at the end.
	seen map[int]Link
	// touched marks the indexes in order.
	touched map[int]bool
}

// NewCoalescer returns a coalescer with the given window (DefaultCoalesce
// if not positive) that treats names matching ignore as absent.
func NewCoalescer(window time.Duration, ignore Patterns) *Coalescer {
	if window <= 0 {
		window = DefaultCoalesce
	}
	return &Coalescer{
		window:  window,
		ignore:  ignore,
		cur:     make(map[int]Link),
		told:    make(map[int]string),
		start:   make(map[int]Link),
		seen:    make(map[int]Link),
		touched: make(map[int]bool),
	}
}

// touch records that index changes at now, opening the window if none is
// open and remembering the index's state at the window's start.
func (c *Coalescer) touch(now time.Time, index int) {
	if !c.open {
		c.open = true
		c.deadline = now.Add(c.window)
	}
	if c.touched[index] {
		return
	}
	c.touched[index] = true
	c.order = append(c.order, index)
	if l, ok := c.cur[index]; ok {
		c.start[index] = l
	}
}

// Apply feeds one link message received at now.
func (c *Coalescer) Apply(now time.Time, u Update) {
	if u.Deleted {
		c.remove(now, u.Link.Index)
		return
	}
	c.set(now, u.Link)
}

func (c *Coalescer) remove(now time.Time, index int) {
	if _, ok := c.cur[index]; !ok {
		return
	}
	c.touch(now, index)
	delete(c.cur, index)
}

func (c *Coalescer) set(now time.Time, l Link) {
	if old, ok := c.cur[l.Index]; ok && old == l {
		return
	}
	// The kernel keeps names unique. Another index still holding this
	// name means its deletion or rename was lost (a netlink overrun) or
	// is stale: the newer message wins, and the old index is gone.
	for i, o := range c.cur {
		if i != l.Index && o.Name == l.Name {
			c.remove(now, i)
		}
	}
	c.touch(now, l.Index)
	c.cur[l.Index] = l
	if !c.ignore.Match(l.Name) {
		if _, told := c.told[l.Index]; !told {
			c.seen[l.Index] = l
		}
	}
}

// Sync replaces the known links with a full listing taken at now (at
// start, and after a netlink overrun lost messages): links not in it are
// gone, and the rest are applied as updates. The next Flush reports the
// net difference against what the targets were told.
func (c *Coalescer) Sync(now time.Time, links []Link) {
	present := make(map[int]bool, len(links))
	for _, l := range links {
		present[l.Index] = true
	}
	// Removals first, in index order, so that a name that moved to a new
	// index is free when the new index is set.
	var gone []int
	for i := range c.cur {
		if !present[i] {
			gone = append(gone, i)
		}
	}
	slices.Sort(gone)
	for _, i := range gone {
		c.remove(now, i)
	}
	for _, l := range links {
		c.set(now, l)
	}
	if !c.open {
		// Nothing changed; still open a window so that the caller's
		// timer logic stays uniform and a resync is visibly completed.
		c.open = true
		c.deadline = now.Add(c.window)
	}
}

// Deadline returns when the open window ends, and false when no window is
// open.
func (c *Coalescer) Deadline() (time.Time, bool) { return c.deadline, c.open }

// Flush closes the window if its deadline has passed at now and returns
// its net changes in the order the interfaces first changed. Before the
// deadline, or with no window open, it returns nil and changes nothing.
func (c *Coalescer) Flush(now time.Time) []Change {
	if !c.open || now.Before(c.deadline) {
		return nil
	}
	var out []Change
	// held maps each name the targets know to its index.
	held := make(map[string]int, len(c.told))
	for i, n := range c.told {
		held[n] = i
	}
	// waiting holds inserts of a name another index still holds in the
	// targets' view (its rename or removal comes later in the order); the
	// insert follows right after that removal, so a target never sees a
	// name inserted twice.
	waiting := map[string]Change{}
	insert := func(ch Change) {
		out = append(out, ch)
		c.told[ch.Link.Index] = ch.Link.Name
		held[ch.Link.Name] = ch.Link.Index
	}
	for _, i := range c.order {
		oldName, wasTold := c.told[i]
		l, isCur := c.cur[i]
		present := isCur && !c.ignore.Match(l.Name)
		if wasTold && present && oldName == l.Name {
			if prev, ok := c.start[i]; ok && prev != l {
				out = append(out, Change{Kind: State, Link: l, Prev: prev})
			}
			continue
		}
		if wasTold {
			gone, ok := c.start[i]
			if !ok || gone.Name != oldName {
				gone = Link{Index: i, Name: oldName}
			}
			out = append(out, Change{Kind: Remove, Link: gone})
			delete(c.told, i)
			delete(held, oldName)
			if w, ok := waiting[oldName]; ok {
				delete(waiting, oldName)
				insert(w)
			}
		}
		switch {
		case present:
			ch := Change{Kind: Insert, Link: l}
			if j, ok := held[l.Name]; ok && j != i {
				waiting[l.Name] = ch
			} else {
				insert(ch)
			}
		case !wasTold:
			if s, ok := c.seen[i]; ok {
				out = append(out, Change{Kind: Transient, Link: s})
			}
		}
	}
	// Names in cur are unique (set enforces it), and told matched cur at
	// the last flush, so a name an insert waits for is held by an index
	// that changed in this window and lost the name: its removal above
	// released the insert. FuzzCoalesce checks that none is left.

	c.open = false
	c.order = c.order[:0]
	clear(c.start)
	clear(c.seen)
	clear(c.touched)
	return out
}

// Links returns every link the kernel last reported (ignored ones
// included), sorted by index.
func (c *Coalescer) Links() []Link {
	out := make([]Link, 0, len(c.cur))
	for _, l := range c.cur {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Link) int { return a.Index - b.Index })
	return out
}

// Told returns the names the targets were told are present, as of the
// last flush, sorted.
func (c *Coalescer) Told() []string {
	out := make([]string, 0, len(c.told))
	for _, n := range c.told {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ToldLinks returns the links the targets were told are present, as of
// the last flush, sorted by index: with their current attributes, or
// only index and name for one deleted since (its removal is still to
// be flushed).
func (c *Coalescer) ToldLinks() []Link {
	out := make([]Link, 0, len(c.told))
	for i, n := range c.told {
		l, ok := c.cur[i]
		if !ok || l.Name != n {
			l = Link{Index: i, Name: n}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Link) int { return a.Index - b.Index })
	return out
}

// Ignored reports whether the coalescer treats name as absent.
func (c *Coalescer) Ignored(name string) bool { return c.ignore.Match(name) }
