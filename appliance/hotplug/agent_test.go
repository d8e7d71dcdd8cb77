package hotplug

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
)

// fakeSource is a scripted link source: the test sees each subscription
// and decides what List returns.
type fakeSource struct {
	mu       sync.Mutex
	links    []Link
	failSubs int // Subscribe fails this many times first
	subs     chan *fakeSub
}

type fakeSub struct {
	ch   chan<- Update
	done <-chan struct{}
	once sync.Once
}

func (s *fakeSub) send(t *testing.T, u Update) {
	t.Helper()
	select {
	case s.ch <- u:
	case <-time.After(5 * time.Second):
		t.Fatal("agent does not read updates")
	}
}

// end closes the subscription as the netlink library does after a
// receive error such as ENOBUFS.
func (s *fakeSub) end() { s.once.Do(func() { close(s.ch) }) }

func (f *fakeSource) Subscribe(ch chan<- Update, done <-chan struct{}, onErr func(error)) error {
	f.mu.Lock()
	if f.failSubs > 0 {
		f.failSubs--
		f.mu.Unlock()
		return errors.New("subscribe to link messages: operation not permitted")
	}
	f.mu.Unlock()
	onErr(errors.New("Receive failed: no buffer space available"))
	f.subs <- &fakeSub{ch: ch, done: done}
	return nil
}

func (f *fakeSource) List() ([]Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.links), nil
}

func (f *fakeSource) setLinks(ls ...Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = ls
}

// recorder is a Send function recording per target.
type recorder struct {
	mu  sync.Mutex
	got map[string][]string
}

func (r *recorder) send(path, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]string{}
	}
	r.got[path] = append(r.got[path], msg)
	return nil
}

func (r *recorder) of(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[path])
}

func TestAgent(t *testing.T) {
	var logs logBuffer
	ign, _ := ParsePatterns([]string{"veth*"})
	src := &fakeSource{failSubs: 1, subs: make(chan *fakeSub, 4)}
	src.setLinks(lk(1, "lo"), lk(2, "eth0"), lk(3, "veth0"))
	var rec recorder
	a := New(Options{
		Targets:  []string{"/a", "/b", "/a", ""},
		Ignore:   ign,
		Coalesce: 10 * time.Millisecond,
		Target:   TargetOptions{Send: rec.send},
		Source:   src,
		Logger:   testLogger(&logs),
	})
	if got := a.Targets(); !slices.Equal(got, []string{"/a", "/b"}) {
		t.Fatalf("targets %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	expect := func(want ...string) {
		t.Helper()
		for _, p := range []string{"/a", "/b"} {
			testutil.WaitFor(t, p+" datagrams", 5*time.Second, func() bool { return len(rec.of(p)) >= len(want) })
		}
		time.Sleep(30 * time.Millisecond) // a duplicate would show by now
		for _, p := range []string{"/a", "/b"} {
			if got := rec.of(p); !slices.Equal(got, want) {
				t.Fatalf("%s got %q, want %q", p, got, want)
			}
		}
	}

	var sub *fakeSub
	select {
	case sub = <-src.subs:
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription")
	}
	expect("interfaceinsert=eth0")

	up := lk(2, "eth0")
	up.State = "up"
	sub.send(t, Update{Link: lk(4, "eth1")})
	sub.send(t, Update{Link: up})
	sub.send(t, Update{Link: lk(5, "veth1")})
	expect("interfaceinsert=eth0", "interfaceinsert=eth1")

	// An overrun: the subscription ends, and eth0 vanished meanwhile.
	src.setLinks(lk(1, "lo"), lk(4, "eth1"), lk(6, "eth2"))
	sub.end()
	select {
	case sub = <-src.subs:
	case <-time.After(5 * time.Second):
		t.Fatal("no resubscription")
	}
	expect("interfaceinsert=eth0", "interfaceinsert=eth1", "interfaceremove=eth0", "interfaceinsert=eth2")

	d := ctl.NewRegistry(ctl.Options{Name: "appliance", Status: a.Status, Logger: testLogger(&logs)})
	d.MustRegister(a.Commands()...)
	roundTrip := func(r ctl.Result, v any) {
		t.Helper()
		if r.Code != ctl.Success {
			t.Fatalf("result %+v", r)
		}
		b, err := json.Marshal(r.Args)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}

	var ifs struct{ Interfaces []Interface }
	roundTrip(d.Invoke(ctx, "interfaces-get", ctl.Input{}, nil), &ifs)
	want := []Interface{{Link: lk(1, "lo"), Ignored: true}, {Link: lk(4, "eth1")}, {Link: lk(6, "eth2")}}
	if !slices.Equal(ifs.Interfaces, want) {
		t.Fatalf("interfaces %+v, want %+v", ifs.Interfaces, want)
	}

	type brief struct {
		Kind Kind
		Name string
		Sent bool
	}
	events := func(in ctl.Input) []brief {
		var evs struct{ Events []Event }
		roundTrip(d.Invoke(ctx, "events-get", in, nil), &evs)
		var out []brief
		for _, e := range evs.Events {
			out = append(out, brief{e.Kind, e.Interface, e.Delivery["/a"] == DeliverySent && e.Delivery["/b"] == DeliverySent})
		}
		return out
	}
	wantEvents := []brief{{Insert, "eth0", true}, {Insert, "eth1", true}, {State, "eth0", false}, {Remove, "eth0", true}, {Insert, "eth2", true}}
	if got := events(ctl.Input{}); !slices.Equal(got, wantEvents) {
		t.Fatalf("events %+v, want %+v", got, wantEvents)
	}
	if got := events(ctl.Input{Positional: []string{"2"}}); !slices.Equal(got, wantEvents[3:]) {
		t.Fatalf("last 2 events %+v, want %+v", got, wantEvents[3:])
	}
	if r := d.Invoke(ctx, "events-get", ctl.Input{Positional: []string{"-1"}}, nil); r.Code != ctl.Error {
		t.Fatalf("negative limit accepted: %+v", r)
	}

	st := d.Status()
	tstats, ok := st["targets"].([]TargetStats)
	if !ok || len(tstats) != 2 || tstats[0].Sent != 4 || tstats[1].Sent != 4 || tstats[0].State != "up" {
		t.Fatalf("status targets %+v", st["targets"])
	}
	if st["inserts"] != uint64(3) || st["removes"] != uint64(1) || st["interfaces"] != 2 {
		t.Fatalf("status %+v", st)
	}
	nl := st["netlink"].(map[string]any)
	if nl["listings"] != uint64(2) || nl["subscribed"] != true {
		t.Fatalf("netlink status %+v", nl)
	}
	if n := logs.count("netlink subscription failed"); n != 1 {
		t.Errorf("%d subscription failure lines, want 1", n)
	}
	if n := logs.count("netlink subscription ended"); n != 1 {
		t.Errorf("%d subscription end lines, want 1", n)
	}
	if n := logs.count("interface changed"); n != 1 {
		t.Errorf("%d state change lines, want 1:\n%s", n, logs.String())
	}
}

// TestAgentEventKindJSON pins the event encoding events-get returns.
func TestAgentEventKindJSON(t *testing.T) {
	b, err := json.Marshal(Event{ID: 1, Kind: Transient, Interface: "x", Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"time":"0001-01-01T00:00:00Z","kind":"transient","interface":"x","index":3}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil || e.Kind != Transient {
		t.Fatalf("decoded %+v, %v", e, err)
	}
	if err := json.Unmarshal([]byte(`{"kind":"bogus"}`), &e); err == nil {
		t.Fatal("unknown kind decoded")
	}
}
