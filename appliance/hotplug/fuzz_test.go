package hotplug

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// fuzzNames is the small name pool FuzzCoalesce draws from, so that
// collisions, renames onto freed names and ignored names are frequent.
var fuzzNames = []string{"eth0", "eth1", "lan0", "lo", "veth0", "A", "B", "wlan0"}

// kernelModel is what a consistent kernel would hold: index to name, names
// unique.
type kernelModel struct {
	links map[int]Link
	next  int
}

func (m *kernelModel) holder(name string) (int, bool) {
	for i, l := range m.links {
		if l.Name == name {
			return i, true
		}
	}
	return 0, false
}

func (m *kernelModel) indexes() []int {
	return slices.Sorted(maps.Keys(m.links))
}

func (m *kernelModel) listing() []Link {
	var out []Link
	for _, i := range m.indexes() {
		out = append(out, m.links[i])
	}
	return out
}

// FuzzCoalesce feeds a random but kernel-consistent sequence of link
// messages (adds, deletes, renames, state changes, listings, clock steps)
// plus arbitrary stale messages, then a final listing, and checks what
// the targets would see: a name is never inserted twice or removed while
// absent, each window's output is bounded, and after the final flush the
// names told equal the present, not ignored links.
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 5, 60, 2, 0, 5, 60})
	f.Add([]byte{0, 5, 0, 6, 3, 0, 2, 5, 60, 0, 0, 3, 1, 1, 5, 60})
	f.Add([]byte{4, 0, 5, 200, 7, 3, 1, 5, 10})
	f.Fuzz(func(t *testing.T, data []byte) {
		ign, err := ParsePatterns([]string{"veth*"})
		if err != nil {
			t.Fatal(err)
		}
		c := NewCoalescer(50*time.Millisecond, ign)
		m := &kernelModel{links: map[int]Link{}, next: 2}
		present := map[string]bool{} // the targets' view, replayed
		now := time.Unix(0, 0)
		ops := 0
		check := func(chs []Change) {
			if len(chs) > 2*ops+2*len(m.links)+16 {
				t.Fatalf("%d changes from %d operations", len(chs), ops)
			}
			for _, ch := range chs {
				n := ch.Link.Name
				switch ch.Kind {
				case Insert:
					if present[n] {
						t.Fatalf("%s inserted twice without a remove", n)
					}
					if ign.Match(n) {
						t.Fatalf("ignored %s inserted", n)
					}
					present[n] = true
				case Remove:
					if !present[n] {
						t.Fatalf("%s removed while absent", n)
					}
					delete(present, n)
				}
			}
		}
		byteAt := func(i int) byte {
			if i < len(data) {
				return data[i]
			}
			return 0
		}
		for i := 0; i < len(data) && ops < 400; ops++ {
			code, a, b := data[i]%8, byteAt(i+1), byteAt(i+2)
			i += 3
			switch code {
			case 0: // add a link
				name := fuzzNames[int(a)%len(fuzzNames)]
				if _, taken := m.holder(name); taken {
					continue
				}
				l := Link{Index: m.next, Name: name, State: "down"}
				m.next++
				m.links[l.Index] = l
				c.Apply(now, Update{Link: l})
			case 1: // delete a link
				idx := m.indexes()
				if len(idx) == 0 {
					continue
				}
				l := m.links[idx[int(a)%len(idx)]]
				delete(m.links, l.Index)
				c.Apply(now, Update{Deleted: true, Link: l})
			case 2: // rename a link
				idx := m.indexes()
				if len(idx) == 0 {
					continue
				}
				l := m.links[idx[int(a)%len(idx)]]
				name := fuzzNames[int(b)%len(fuzzNames)]
				if _, taken := m.holder(name); taken {
					continue
				}
				l.Name = name
				m.links[l.Index] = l
				c.Apply(now, Update{Link: l})
			case 3: // state change
				idx := m.indexes()
				if len(idx) == 0 {
					continue
				}
				l := m.links[idx[int(a)%len(idx)]]
				l.State = []string{"up", "down", "unknown"}[int(b)%3]
				m.links[l.Index] = l
				c.Apply(now, Update{Link: l})
			case 4: // full listing
				c.Sync(now, m.listing())
			case 5: // time passes; flush what is due
				now = now.Add(time.Duration(a) * time.Millisecond)
				check(c.Flush(now))
			case 6: // a stale or bogus message the kernel model ignores
				l := Link{Index: 2 + int(a)%8, Name: fuzzNames[int(b)%len(fuzzNames)], State: "up"}
				c.Apply(now, Update{Deleted: b&0x80 != 0, Link: l})
			case 7: // flush exactly at the deadline
				if dl, open := c.Deadline(); open {
					now = dl
					check(c.Flush(now))
				}
			}
		}
		// A final listing settles any stale message.
		c.Sync(now, m.listing())
		dl, open := c.Deadline()
		if !open {
			t.Fatal("no window open after a listing")
		}
		if got := c.Flush(dl.Add(-time.Nanosecond)); got != nil {
			t.Fatalf("flush before the deadline returned %v", got)
		}
		check(c.Flush(dl))

		var want []string
		for _, l := range m.links {
			if !ign.Match(l.Name) {
				want = append(want, l.Name)
			}
		}
		slices.Sort(want)
		if got := c.Told(); !slices.Equal(got, want) {
			t.Fatalf("told %v, kernel has %v", got, want)
		}
		replayed := slices.Sorted(maps.Keys(present))
		if !slices.Equal(replayed, want) {
			t.Fatalf("targets saw %v, kernel has %v", replayed, want)
		}
		if got, want := len(c.Links()), len(m.links); got != want {
			t.Fatalf("%d links known, kernel has %d", got, want)
		}
	})
}

// FuzzPatterns checks that a pattern list either fails to parse or
// matches exactly as path.Match does, always ignoring lo; an empty
// pattern is no pattern (see ParsePatterns), so it matches only lo.
func FuzzPatterns(f *testing.F) {
	f.Add("veth*", "veth0")
	f.Add("docker[0-9]", "docker1")
	f.Add("[", "x")
	f.Add("eth\\", "eth")
	f.Add("", "lo")
	f.Add("", "")
	f.Add(" ", "")
	f.Add("?*?", "ab")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		p, err := ParsePatterns([]string{pattern})
		// Surrounding blanks are trimmed: interface names never have any.
		pattern = strings.TrimSpace(pattern)
		if err != nil {
			if _, merr := path.Match(pattern, ""); merr == nil && len(pattern) <= maxPatternLen {
				t.Fatalf("%q refused but path.Match accepts it: %v", pattern, err)
			}
			return
		}
		if !p.Match(Loopback) {
			t.Fatal("lo not ignored")
		}
		want, _ := path.Match(pattern, name)
		want = want && pattern != ""
		if got := p.Match(name); got != (want || name == Loopback) {
			t.Fatalf("Match(%q) with %q = %v, path.Match says %v", name, pattern, got, want)
		}
		if l := p.List(); l[0] != Loopback || len(l) > 2 {
			t.Fatalf("List() = %q", fmt.Sprint(l))
		}
	})
}
