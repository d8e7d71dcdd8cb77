package hotplug

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// op is one step of a coalescer script: at ms milliseconds, apply an
// update, a listing, or flush.
type op struct {
	ms    int
	kind  string // "set", "del", "sync", "flush"
	link  Link
	links []Link
}

func set(ms, index int, name string) op {
	return op{ms: ms, kind: "set", link: Link{Index: index, Name: name, State: "down"}}
}
func setState(ms, index int, name, state string) op {
	return op{ms: ms, kind: "set", link: Link{Index: index, Name: name, State: state}}
}
func del(ms, index int, name string) op {
	return op{ms: ms, kind: "del", link: Link{Index: index, Name: name}}
}
func flushAt(ms int) op { return op{ms: ms, kind: "flush"} }
func syncAt(ms int, links ...Link) op {
	return op{ms: ms, kind: "sync", links: links}
}
func lk(index int, name string) Link { return Link{Index: index, Name: name, State: "down"} }

// render spells changes compactly: "+eth0 -eth1 ~eth2 !eth3" for insert,
// remove, state and transient; flushes are separated by "|".
func render(chs []Change) string {
	var parts []string
	for _, c := range chs {
		p := map[Kind]string{Insert: "+", Remove: "-", State: "~", Transient: "!"}[c.Kind]
		parts = append(parts, p+c.Link.Name)
	}
	return strings.Join(parts, " ")
}

// runScript plays ops against a coalescer with a 50 ms window ignoring
// "veth*", and returns every non-empty flush's changes, "|"-separated.
func runScript(t *testing.T, ops []op) string {
	t.Helper()
	ign, err := ParsePatterns([]string{"veth*"})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCoalescer(50*time.Millisecond, ign)
	t0 := time.Unix(1000, 0)
	var out []string
	for _, o := range ops {
		now := t0.Add(time.Duration(o.ms) * time.Millisecond)
		switch o.kind {
		case "set":
			c.Apply(now, Update{Link: o.link})
		case "del":
			c.Apply(now, Update{Deleted: true, Link: o.link})
		case "sync":
			c.Sync(now, o.links)
		case "flush":
			if chs := c.Flush(now); len(chs) > 0 {
				out = append(out, render(chs))
			}
		}
	}
	return strings.Join(out, "|")
}

func TestCoalescer(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		want string
	}{
		{"nothing", []op{flushAt(100)}, ""},
		{"one insert from several messages", []op{
			set(0, 3, "eth0"), setState(1, 3, "eth0", "up"), setState(2, 3, "eth0", "unknown"), flushAt(50),
		}, "+eth0"},
		{"flush before the deadline returns nothing", []op{
			set(0, 3, "eth0"), flushAt(49), flushAt(50),
		}, "+eth0"},
		{"insert then remove in later windows", []op{
			set(0, 3, "eth0"), flushAt(50), del(100, 3, "eth0"), flushAt(150),
		}, "+eth0|-eth0"},
		{"add and remove in one window is transient", []op{
			set(0, 3, "eth0"), del(10, 3, "eth0"), flushAt(50),
		}, "!eth0"},
		{"remove and re-add under the same index is a state change at most", []op{
			set(0, 3, "eth0"), flushAt(50), del(100, 3, "eth0"), set(110, 3, "eth0"), flushAt(150),
		}, "+eth0"},
		{"rename is remove then insert", []op{
			set(0, 3, "eth0"), flushAt(50), set(100, 3, "lan0"), flushAt(150),
		}, "+eth0|-eth0 +lan0"},
		{"rename and back within a window is nothing", []op{
			set(0, 3, "eth0"), flushAt(50), set(100, 3, "x"), set(101, 3, "eth0"), flushAt(150),
		}, "+eth0"},
		{"re-created under a new index is remove then insert", []op{
			set(0, 3, "eth0"), flushAt(50), del(100, 3, "eth0"), set(101, 4, "eth0"), flushAt(150),
		}, "+eth0|-eth0 +eth0"},
		{"order is the order of first change", []op{
			set(0, 7, "b"), set(1, 5, "a"), set(2, 9, "c"), setState(3, 7, "b", "up"), flushAt(50),
		}, "+b +a +c"},
		{"burst of five then removal of five", []op{
			set(0, 10, "d0"), set(1, 11, "d1"), set(2, 12, "d2"), set(3, 13, "d3"), set(4, 14, "d4"), flushAt(50),
			del(100, 10, "d0"), del(101, 11, "d1"), del(102, 12, "d2"), del(103, 13, "d3"), del(104, 14, "d4"), flushAt(150),
		}, "+d0 +d1 +d2 +d3 +d4|-d0 -d1 -d2 -d3 -d4"},
		{"window is fixed from its first message", []op{
			set(0, 3, "a"), set(40, 4, "b"), flushAt(60), set(60, 5, "c"), flushAt(110),
		}, "+a +b|+c"},
		{"state change is reported, not inserted", []op{
			set(0, 3, "eth0"), flushAt(50), setState(100, 3, "eth0", "up"), flushAt(150),
		}, "+eth0|~eth0"},
		{"state flap back to the start is nothing", []op{
			set(0, 3, "eth0"), flushAt(50), setState(100, 3, "eth0", "up"), setState(101, 3, "eth0", "down"), flushAt(150),
		}, "+eth0"},
		{"lo and ignored patterns are never reported", []op{
			set(0, 1, "lo"), set(1, 4, "veth0"), set(2, 5, "veth1"), del(60, 4, "veth0"), flushAt(200),
		}, ""},
		{"renamed from an ignored name is an insert", []op{
			set(0, 4, "veth0"), flushAt(50), set(100, 4, "lan1"), flushAt(150),
		}, "+lan1"},
		{"renamed to an ignored name is a remove", []op{
			set(0, 4, "lan1"), flushAt(50), set(100, 4, "veth9"), flushAt(150),
		}, "+lan1|-lan1"},
		{"a name handed over waits for its holder's removal", []op{
			// 4 appears as C, then 3 (A) is renamed B and 4 takes A:
			// 4 changed first, but A may only be inserted once 3's A is
			// removed.
			set(0, 3, "A"), flushAt(50),
			set(100, 4, "C"), set(101, 3, "B"), set(102, 4, "A"), flushAt(150),
		}, "+A|-A +A +B"},
		{"two links swap names", []op{
			// 3 changed first, so its insert of B comes first, once 4
			// has given B up.
			set(0, 3, "A"), set(1, 4, "B"), flushAt(50),
			set(100, 3, "tmp"), set(101, 4, "A"), set(102, 3, "B"), flushAt(150),
		}, "+A +B|-A -B +B +A"},
		{"a stale holder of a name is dropped", []op{
			// 3's deletion was lost; 5 now has the name.
			set(0, 3, "eth0"), flushAt(50), set(100, 5, "eth0"), flushAt(150),
		}, "+eth0|-eth0 +eth0"},
		{"initial listing inserts in index order", []op{
			syncAt(0, lk(1, "lo"), lk(2, "eth0"), lk(3, "eth1"), lk(4, "veth0")), flushAt(50),
		}, "+eth0 +eth1"},
		{"resync reports the net difference", []op{
			syncAt(0, lk(1, "lo"), lk(2, "eth0"), lk(3, "eth1")), flushAt(50),
			syncAt(100, lk(1, "lo"), lk(3, "eth1"), lk(6, "eth2")), flushAt(150),
		}, "+eth0 +eth1|-eth0 +eth2"},
		{"resync with no change reports nothing", []op{
			syncAt(0, lk(2, "eth0")), flushAt(50), syncAt(100, lk(2, "eth0")), flushAt(150),
		}, "+eth0"},
		{"delete of an unknown link is nothing", []op{
			del(0, 9, "ghost"), flushAt(100),
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := runScript(t, tc.ops); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCoalescerDeadline(t *testing.T) {
	c := NewCoalescer(0, Patterns{})
	if _, open := c.Deadline(); open {
		t.Fatal("window open before any message")
	}
	t0 := time.Unix(5, 0)
	c.Apply(t0, Update{Link: lk(2, "eth0")})
	dl, open := c.Deadline()
	if !open || !dl.Equal(t0.Add(DefaultCoalesce)) {
		t.Fatalf("deadline %v open %v, want %v", dl, open, t0.Add(DefaultCoalesce))
	}
	c.Apply(t0.Add(30*time.Millisecond), Update{Link: lk(3, "eth1")})
	if dl2, _ := c.Deadline(); !dl2.Equal(dl) {
		t.Fatalf("deadline moved to %v by a later message", dl2)
	}
	if got := render(c.Flush(dl)); got != "+eth0 +eth1" {
		t.Fatalf("flush: %q", got)
	}
	if _, open := c.Deadline(); open {
		t.Fatal("window still open after flush")
	}
	if got := c.Told(); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Fatalf("told %v", got)
	}
	if got := len(c.Links()); got != 2 {
		t.Fatalf("links %d", got)
	}
}

func TestChangeCommand(t *testing.T) {
	tests := []struct {
		c    Change
		want string
		ok   bool
	}{
		{Change{Kind: Insert, Link: lk(2, "eth0")}, "interfaceinsert=eth0", true},
		{Change{Kind: Remove, Link: lk(2, "eth0")}, "interfaceremove=eth0", true},
		{Change{Kind: State, Link: lk(2, "eth0")}, "", false},
		{Change{Kind: Transient, Link: lk(2, "eth0")}, "", false},
	}
	for _, tc := range tests {
		got, ok := tc.c.Command()
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v: got %q %v, want %q %v", tc.c.Kind, got, ok, tc.want, tc.ok)
		}
	}
	if s := fmt.Sprint(Kind(42)); s != "unknown" {
		t.Errorf("Kind(42) = %q", s)
	}
}
