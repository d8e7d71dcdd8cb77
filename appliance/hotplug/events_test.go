package hotplug

import (
	"slices"
	"strings"
	"testing"
)

func TestParsePatterns(t *testing.T) {
	tests := []struct {
		globs   []string
		list    []string
		match   []string
		nomatch []string
		err     string
	}{
		{globs: nil, list: []string{"lo"}, match: []string{"lo"}, nomatch: []string{"eth0", "lo0", ""}},
		{globs: []string{"veth*", "docker*"}, list: []string{"lo", "veth*", "docker*"},
			match: []string{"veth0", "veth", "docker0", "lo"}, nomatch: []string{"eth0", "xveth0"}},
		{globs: []string{"eth[0-1]", "", " br-? ", "eth[0-1]"}, list: []string{"lo", "eth[0-1]", "br-?"},
			match: []string{"eth0", "eth1", "br-x"}, nomatch: []string{"eth2", "br-xy"}},
		{globs: []string{"lo"}, list: []string{"lo"}},
		// An empty pattern is no pattern: it does not match the empty
		// name as path.Match("", "") would.
		{globs: []string{""}, list: []string{"lo"}, match: []string{"lo"}, nomatch: []string{"", " ", "eth0"}},
		{globs: []string{" \t"}, list: []string{"lo"}, match: []string{"lo"}, nomatch: []string{"", "eth0"}},
		{globs: []string{"", "*"}, list: []string{"lo", "*"}, match: []string{"", "eth0", "lo"}},
		{globs: []string{"a\\*"}, list: []string{"lo", "a\\*"}, match: []string{"a*"}, nomatch: []string{"ab"}},
		{globs: []string{"eth["}, err: `ignore pattern "eth[": syntax error in pattern`},
		{globs: []string{"x\\"}, err: "syntax error in pattern"},
		{globs: []string{strings.Repeat("*", maxPatternLen+1)}, err: "longer than"},
		{globs: make([]string, MaxPatterns+1), err: "too many"},
	}
	for _, tc := range tests {
		p, err := ParsePatterns(tc.globs)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.globs, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.globs, err)
			continue
		}
		if got := p.List(); !slices.Equal(got, tc.list) {
			t.Errorf("%q: list %q, want %q", tc.globs, got, tc.list)
		}
		for _, n := range tc.match {
			if !p.Match(n) {
				t.Errorf("%q: %q not matched", tc.globs, n)
			}
		}
		for _, n := range tc.nomatch {
			if p.Match(n) {
				t.Errorf("%q: %q matched", tc.globs, n)
			}
		}
	}
}

func TestEventLog(t *testing.T) {
	l := NewEventLog(3)
	if got := l.Events(0); len(got) != 0 {
		t.Fatalf("empty log: %v", got)
	}
	ids := []uint64{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		ids = append(ids, l.Add(Event{Kind: Insert, Interface: n}, []string{"/t1", "/t2"}))
	}
	if !slices.Equal(ids, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("ids %v", ids)
	}
	names := func(evs []Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, e.Interface)
		}
		return strings.Join(s, "")
	}
	if got := names(l.Events(0)); got != "cde" {
		t.Fatalf("events %q, want cde", got)
	}
	if got := names(l.Events(2)); got != "de" {
		t.Fatalf("last 2 %q, want de", got)
	}
	if got := names(l.Events(10)); got != "cde" {
		t.Fatalf("last 10 %q, want cde", got)
	}
	for _, tc := range []struct {
		since uint64
		limit int
		want  string
	}{
		{0, 0, "cde"}, {1, 0, "cde"}, {3, 0, "de"}, {4, 0, "e"}, {5, 0, ""}, {9, 0, ""}, {2, 1, "e"}, {3, 5, "de"},
	} {
		if got := names(l.Since(tc.since, tc.limit)); got != tc.want {
			t.Errorf("Since(%d, %d) = %q, want %q", tc.since, tc.limit, got, tc.want)
		}
	}
	l.SetDelivery(4, "/t1", DeliverySent)
	l.SetDelivery(2, "/t1", DeliverySent) // evicted: ignored
	l.SetDelivery(9, "/t1", DeliverySent) // future: ignored
	l.SetDelivery(5, "/t9", DeliverySent) // unknown target: ignored
	l.SetDelivery(0, "/t1", DeliveryRetrying)
	evs := l.Events(0)
	want := []map[string]string{
		{"/t1": DeliveryQueued, "/t2": DeliveryQueued},
		{"/t1": DeliverySent, "/t2": DeliveryQueued},
		{"/t1": DeliveryQueued, "/t2": DeliveryQueued},
	}
	for i, e := range evs {
		if len(e.Delivery) != len(want[i]) {
			t.Fatalf("event %d delivery %v, want %v", e.ID, e.Delivery, want[i])
		}
		for k, v := range want[i] {
			if e.Delivery[k] != v {
				t.Fatalf("event %d delivery %v, want %v", e.ID, e.Delivery, want[i])
			}
		}
	}
	// The result is a copy.
	evs[0].Delivery["/t1"] = "changed"
	if l.Events(0)[0].Delivery["/t1"] != DeliveryQueued {
		t.Fatal("Events shares its maps with the log")
	}
	if id := l.Add(Event{Kind: State, Interface: "f"}, nil); id != 6 || l.Events(1)[0].Delivery != nil {
		t.Fatalf("unsent event %d has delivery %v", id, l.Events(1)[0].Delivery)
	}
	if l.Total() != 6 {
		t.Fatalf("total %d", l.Total())
	}
}
