package hotplug

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// logBuffer collects log output written from several goroutines.
type logBuffer struct{ testutil.LockedBuffer }

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func testLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// scriptedSend fails its first `fail` calls with ECONNREFUSED, then
// records what it is sent.
type scriptedSend struct {
	mu   sync.Mutex
	fail int
	got  []string
	// block, if set, is received from before each send returns, so
	// that a test can hold a send in flight.
	block chan struct{}
}

func (s *scriptedSend) send(path, msg string) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return fmt.Errorf("connect: %w", syscall.ECONNREFUSED)
	}
	s.got = append(s.got, msg)
	return nil
}

func (s *scriptedSend) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// reports records Report calls.
type reports struct {
	mu sync.Mutex
	m  map[uint64][]string
}

func (r *reports) report(id uint64, _ string, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[uint64][]string{}
	}
	r.m[id] = append(r.m[id], state)
}

func (r *reports) of(id uint64) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.m[id])
}

func msgs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("interfaceinsert=eth%d", i)
	}
	return out
}

func TestTargetRetries(t *testing.T) {
	tests := []struct {
		name     string
		fail     int
		n        int
		warnings int // "unreachable" lines
		backs    int // "back" lines
	}{
		{"reachable", 0, 3, 0, 0},
		{"one failure", 1, 3, 1, 1},
		{"many failures logged once", 6, 4, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			var rep reports
			s := &scriptedSend{fail: tc.fail}
			tg := NewTarget("/x", TargetOptions{
				MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
				Send: s.send, Report: rep.report, Logger: testLogger(&logs),
			})
			want := msgs(tc.n)
			for i, m := range want {
				tg.Enqueue(uint64(i+1), m)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { tg.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			testutil.WaitFor(t, "delivery", 5*time.Second, func() bool { return len(s.sent()) == tc.n })
			time.Sleep(10 * time.Millisecond) // nothing more may come
			if got := s.sent(); !slices.Equal(got, want) {
				t.Fatalf("sent %q, want %q", got, want)
			}
			if n := logs.count("target unreachable"); n != tc.warnings {
				t.Errorf("%d unreachable lines, want %d:\n%s", n, tc.warnings, logs.String())
			}
			if n := logs.count("target is back"); n != tc.backs {
				t.Errorf("%d back lines, want %d:\n%s", n, tc.backs, logs.String())
			}
			st := tg.Stats()
			if st.State != "up" || st.Sent != uint64(tc.n) || st.Failed != uint64(tc.fail) || st.Pending != 0 {
				t.Errorf("stats %+v", st)
			}
			wantFirst := []string{DeliverySent}
			if tc.fail > 0 {
				wantFirst = []string{DeliveryRetrying, DeliverySent}
			}
			if got := rep.of(1); !slices.Equal(got, wantFirst) {
				t.Errorf("reports of the first datagram %q, want %q", got, wantFirst)
			}
		})
	}
}

func TestTargetOverflow(t *testing.T) {
	tests := []struct {
		name string
		// inFlight holds the head in a send while the queue overflows.
		inFlight bool
		n        int
		want     []string
		dropped  []uint64
	}{
		// A queue of 3 and a backlog of 6: the oldest go.
		{"backlog before delivery starts", false, 6, []string{"interfaceinsert=eth3", "interfaceinsert=eth4", "interfaceinsert=eth5"}, []uint64{1, 2, 3}},
		// The datagram being sent is kept; the next oldest go.
		{"head in flight", true, 6, []string{"interfaceinsert=eth0", "interfaceinsert=eth4", "interfaceinsert=eth5"}, []uint64{2, 3, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			var rep reports
			s := &scriptedSend{}
			if tc.inFlight {
				s.block = make(chan struct{})
			}
			tg := NewTarget("/x", TargetOptions{
				QueueLen: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
				Send: s.send, Report: rep.report, Logger: testLogger(&logs),
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			all := msgs(tc.n)
			if tc.inFlight {
				go func() { tg.Run(ctx); close(done) }()
				tg.Enqueue(1, all[0])
				testutil.WaitFor(t, "send in flight", 5*time.Second, func() bool {
					tg.mu.Lock()
					defer tg.mu.Unlock()
					return tg.sending
				})
				for i := 1; i < tc.n; i++ {
					tg.Enqueue(uint64(i+1), all[i])
				}
				close(s.block)
			} else {
				for i, m := range all {
					tg.Enqueue(uint64(i+1), m)
				}
				go func() { tg.Run(ctx); close(done) }()
			}
			defer func() { cancel(); <-done }()
			testutil.WaitFor(t, "delivery", 5*time.Second, func() bool { return len(s.sent()) == len(tc.want) })
			time.Sleep(10 * time.Millisecond)
			if got := s.sent(); !slices.Equal(got, tc.want) {
				t.Fatalf("sent %q, want %q", got, tc.want)
			}
			for _, id := range tc.dropped {
				if got := rep.of(id); !slices.Equal(got, []string{DeliveryDropped}) {
					t.Errorf("datagram %d: reports %q, want dropped", id, got)
				}
			}
			if st := tg.Stats(); st.Dropped != uint64(len(tc.dropped)) {
				t.Errorf("dropped %d, want %d", st.Dropped, len(tc.dropped))
			}
			// One warning per overflow episode; the rest at debug.
			if n := logs.count("level=WARN msg=\"target queue full"); n != 1 {
				t.Errorf("%d queue-full warnings, want 1:\n%s", n, logs.String())
			}
		})
	}
}

// TestTargetSocketAppears runs the real sfptpd client against a socket
// path that does not exist yet: the failure is logged once, retried, and
// once the socket is bound every datagram arrives once, in order.
func TestTargetSocketAppears(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "control-v1.sock")
	var logs logBuffer
	tg := NewTarget(path, TargetOptions{
		MinBackoff: 2 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Logger: testLogger(&logs),
	})
	want := []string{"interfaceinsert=eth0", "interfaceinsert=eth1", "interfaceremove=eth0"}
	for i, m := range want {
		tg.Enqueue(uint64(i+1), m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tg.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	testutil.WaitFor(t, "several failed attempts", 5*time.Second, func() bool { return tg.Stats().Failed >= 3 })
	st := tg.Stats()
	if st.State != "down" || !strings.Contains(st.LastError, "connect: No such file or directory") {
		t.Fatalf("stats while missing: %+v", st)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got []string
	buf := make([]byte, 256)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(want) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
	// Nothing is sent twice.
	conn.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if n, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("extra datagram %q (%v)", buf[:n], err)
	}
	if n := logs.count("target unreachable"); n != 1 {
		t.Errorf("%d unreachable lines, want 1:\n%s", n, logs.String())
	}
	if n := logs.count("target is back"); n != 1 {
		t.Errorf("%d back lines, want 1:\n%s", n, logs.String())
	}
	if st := tg.Stats(); st.State != "up" || st.Sent != 3 || st.Pending != 0 {
		t.Errorf("stats after recovery: %+v", st)
	}
}

func TestTargetOptionsDefaults(t *testing.T) {
	tg := NewTarget("/x", TargetOptions{QueueLen: 1, MinBackoff: 10 * time.Second})
	if tg.opts.QueueLen != 2 || tg.opts.MaxBackoff != 10*time.Second || tg.opts.Send == nil || tg.Path() != "/x" {
		t.Fatalf("options %+v", tg.opts)
	}
	tg = NewTarget("/x", TargetOptions{})
	if tg.opts.QueueLen != DefaultQueueLen || tg.opts.MinBackoff != DefaultMinBackoff || tg.opts.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("defaults %+v", tg.opts)
	}
	if st := tg.Stats(); st.State != "unknown" {
		t.Fatalf("initial state %q", st.State)
	}
}
