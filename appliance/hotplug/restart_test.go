package hotplug

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// daemonSocket is a datagram socket standing for a daemon's sfptpd
// control socket: kill leaves the file behind as SIGKILL does (it then
// refuses), and restart binds a new socket at the path the way a daemon
// does at start (removing the stale file first).
type daemonSocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newDaemonSocket(t *testing.T, path string) *daemonSocket {
	d := &daemonSocket{t: t, path: path}
	d.restart()
	t.Cleanup(func() {
		if d.conn != nil {
			d.conn.Close()
		}
	})
	return d
}

func (d *daemonSocket) kill() {
	d.t.Helper()
	d.conn.Close() // a unixgram socket's file stays: a stale socket
	d.conn = nil
	if _, err := os.Stat(d.path); err != nil {
		d.t.Fatalf("the killed daemon's socket file is gone: %v", err)
	}
}

func (d *daemonSocket) restart() {
	d.t.Helper()
	if d.conn != nil {
		d.kill()
	}
	if err := os.Remove(d.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.t.Fatal(err)
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: d.path, Net: "unixgram"})
	if err != nil {
		d.t.Fatal(err)
	}
	d.conn = c
}

// expect reads exactly want, then checks that nothing more arrives.
func (d *daemonSocket) expect(want ...string) {
	d.t.Helper()
	var got []string
	buf := make([]byte, 256)
	d.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(want) {
		n, err := d.conn.Read(buf)
		if err != nil {
			d.t.Fatalf("read after %q (want %q): %v", got, want, err)
		}
		got = append(got, string(buf[:n]))
	}
	if !slices.Equal(got, want) {
		d.t.Fatalf("received %q, want %q", got, want)
	}
	// Several watch intervals: a duplicate or a second re-send would
	// show by now.
	d.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := d.conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		d.t.Fatalf("extra datagram %q (%v) after %q", buf[:n], err, got)
	}
}

// TestTargetPeerRestart: a target notices its daemon restarting by the
// re-created socket file and replaces its queue with what PeerChanged
// gives it; the same socket, or one that only appears, is no restart.
func TestTargetPeerRestart(t *testing.T) {
	resend := []Datagram{{ID: 100, Msg: "interfaceinsert=eth0"}, {ID: 101, Msg: "interfaceinsert=eth1"}}
	tests := []struct {
		name string
		// queued is enqueued after the kill, before the restart.
		queued []string
		// restart re-creates the socket; otherwise the daemon stays.
		restart bool
		want    []string
		// superseded are the ids reported superseded.
		superseded []uint64
	}{
		{"restart while idle", nil, true, []string{"interfaceinsert=eth0", "interfaceinsert=eth1"}, nil},
		{"restart with datagrams waiting", []string{"interfaceremove=eth2", "interfaceinsert=eth3"}, true,
			[]string{"interfaceinsert=eth0", "interfaceinsert=eth1"}, []uint64{2, 3}},
		{"no restart", nil, false, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(testutil.ShortDir(t), "control-v1.sock")
			d := newDaemonSocket(t, path)
			var logs logBuffer
			var rep reports
			var changed atomic.Int32
			tg := NewTarget(path, TargetOptions{
				MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
				WatchInterval: 5 * time.Millisecond,
				Report:        rep.report, Logger: testLogger(&logs),
				PeerChanged: func(tg *Target) {
					changed.Add(1)
					tg.Resync(resend)
				},
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { tg.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			tg.Enqueue(1, "interfaceinsert=eth0")
			d.expect("interfaceinsert=eth0")
			if tc.restart {
				d.kill()
				for i, m := range tc.queued {
					tg.Enqueue(uint64(i+2), m)
				}
				if len(tc.queued) > 0 {
					// The stale socket refuses: the head is retried.
					testutil.WaitFor(t, "a refused send", 10*time.Second, func() bool { return tg.Stats().State == "down" })
				}
				d.restart()
			}
			d.expect(tc.want...)
			wantChanges := 0
			if tc.restart {
				wantChanges = 1
			}
			if n := int(changed.Load()); n != wantChanges {
				t.Errorf("PeerChanged called %d times, want %d", n, wantChanges)
			}
			st := tg.Stats()
			if st.Resyncs != uint64(wantChanges) || st.Superseded != uint64(len(tc.superseded)) || st.Pending != 0 {
				t.Errorf("stats %+v", st)
			}
			for _, id := range tc.superseded {
				if got := rep.of(id); len(got) == 0 || got[len(got)-1] != DeliverySuperseded {
					t.Errorf("datagram %d: reports %q, want superseded last", id, got)
				}
			}
			for _, r := range resend[:len(tc.want)] {
				if got := rep.of(r.ID); !slices.Equal(got, []string{DeliverySent}) {
					t.Errorf("re-sent datagram %d: reports %q, want sent", r.ID, got)
				}
			}
			if n := logs.count("target socket re-created"); n != wantChanges {
				t.Errorf("%d re-created lines, want %d:\n%s", n, wantChanges, logs.String())
			}

			// A second restart is seen as well.
			if tc.restart {
				d.restart()
				d.expect(tc.want...)
				if n := changed.Load(); n != 2 {
					t.Errorf("PeerChanged called %d times after a second restart, want 2", n)
				}
			}
		})
	}
}

// TestAgentResendsAfterRestart runs an agent against a real datagram
// socket whose daemon is killed and restarted: the restarted daemon is
// told every present interface, and a change made while it was down
// reaches it as the state it left, not as the datagram queued for the
// old daemon.
func TestAgentResendsAfterRestart(t *testing.T) {
	path := filepath.Join(testutil.ShortDir(t), "control-v1.sock")
	d := newDaemonSocket(t, path)
	var logs logBuffer
	src := &fakeSource{subs: make(chan *fakeSub, 4)}
	src.setLinks(lk(1, "lo"), lk(2, "eth0"), lk(3, "eth1"))
	a := New(Options{
		Targets:  []string{path},
		Coalesce: 10 * time.Millisecond,
		Target: TargetOptions{
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			WatchInterval: 5 * time.Millisecond,
		},
		Source: src,
		Logger: testLogger(&logs),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var sub *fakeSub
	select {
	case sub = <-src.subs:
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription")
	}
	d.expect("interfaceinsert=eth0", "interfaceinsert=eth1")

	// Restarted while nothing changes: everything again.
	d.restart()
	d.expect("interfaceinsert=eth0", "interfaceinsert=eth1")

	// Killed; eth1 goes and eth2 comes while it is down; restarted.
	d.kill()
	sub.send(t, Update{Deleted: true, Link: lk(3, "eth1")})
	sub.send(t, Update{Link: lk(4, "eth2")})
	// Both changes flushed (told), the first refused by the stale socket.
	testutil.WaitFor(t, "the remove refused", 10*time.Second, func() bool {
		st := a.Status()
		return st["targets"].([]TargetStats)[0].State == "down" && st["inserts"] == uint64(3) && st["removes"] == uint64(1)
	})
	d.restart()
	d.expect("interfaceinsert=eth0", "interfaceinsert=eth2")

	st := a.Status()["targets"].([]TargetStats)[0]
	if st.Resyncs != 2 || st.Superseded != 2 || st.Pending != 0 {
		t.Errorf("target stats %+v", st)
	}
	type brief struct {
		Kind     Kind
		Name     string
		Delivery string
	}
	var got []brief
	for _, e := range a.Events(0) {
		got = append(got, brief{e.Kind, e.Interface, e.Delivery[path]})
	}
	want := []brief{
		{Insert, "eth0", DeliverySent}, {Insert, "eth1", DeliverySent},
		{Resync, "eth0", DeliverySent}, {Resync, "eth1", DeliverySent},
		{Remove, "eth1", DeliverySuperseded}, {Insert, "eth2", DeliverySuperseded},
		{Resync, "eth0", DeliverySent}, {Resync, "eth2", DeliverySent},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %+v\nwant   %+v", got, want)
	}
	if n := logs.count("target daemon restarted; re-sending the present interfaces"); n != 2 {
		t.Errorf("%d re-send lines, want 2:\n%s", n, logs.String())
	}
}
