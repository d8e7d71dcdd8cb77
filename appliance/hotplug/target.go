package hotplug

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
)

// Defaults of a target's delivery queue.
const (
	// DefaultQueueLen bounds the datagrams waiting for one target. It is
	// far more than a box has interfaces, so that only a target that is
	// gone for good while links flap loses anything.
	DefaultQueueLen = 1024
	// DefaultMinBackoff and DefaultMaxBackoff bound the retry interval of
	// an unreachable target: quick enough to catch a daemon that is just
	// starting, slow enough to cost nothing while it is not installed.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// DefaultWatchInterval is how often a target looks whether its
	// socket file was re-created (a restarted daemon): one stat, cheap
	// enough to do often, and short against gokrazy's one second
	// between a crash and the restart.
	DefaultWatchInterval = 250 * time.Millisecond
)

// TargetOptions configures a Target.
type TargetOptions struct {
	// QueueLen bounds the queue (DefaultQueueLen if not positive; at
	// least 2, so that the datagram being sent and the newest one both
	// fit).
	QueueLen int
	// MinBackoff is the first retry delay after a failure; it doubles up
	// to MaxBackoff and resets on success.
	MinBackoff, MaxBackoff time.Duration
	// Send delivers one datagram; nil means dgram.Send, the sfptpdctl
	// client.
	Send func(path, datagram string) error
	// Report, if set, is told each datagram's delivery state changes
	// (DeliveryRetrying, DeliverySent, DeliveryDropped,
	// DeliverySuperseded) by the id given to Enqueue.
	Report func(id uint64, target, state string)
	// WatchInterval is how often the target stats its socket file while
	// idle or backing off (DefaultWatchInterval if not positive).
	WatchInterval time.Duration
	// PeerChanged, if set, is called from Run when the socket file is
	// not the one datagrams were last delivered to: the daemon behind it
	// was restarted and has lost what it was told. It runs without the
	// target's lock and is expected to call Resync with what the new
	// daemon must be told. The agent sets it.
	PeerChanged func(*Target)
	Logger      *slog.Logger
}

// Target delivers datagrams to one sfptpd-style control socket, in order,
// each at most once. A bounded FIFO feeds one goroutine (Run); when the
// socket is missing or refuses, the failure is logged once, the datagram
// stays at the head of the queue and is retried with backoff, and a line
// is logged when the target is back. When the queue is full the oldest
// waiting datagram is dropped and counted.
//
// A datagram socket has no connection that would tell the sender its
// peer went away, so the target watches the socket file itself: a file
// with another device, inode or change time than the one the last
// datagram was delivered to is a restarted daemon (a daemon re-creates
// its socket at start; one killed leaves a stale file that refuses until
// then). PeerChanged is then called, and the queue replaced with what
// the new daemon must be told (Resync).
type Target struct {
	path string
	opts TargetOptions
	log  *slog.Logger
	wake chan struct{}

	mu sync.Mutex
	q  []queued
	// sending is set while the head of q is being sent; it is then not
	// dropped, so that a datagram is never both sent and reported
	// dropped.
	sending bool
	state   string // "unknown", "up" or "down"
	lastErr string
	sent    uint64
	failed  uint64
	dropped uint64
	// Counts since the target went down or the queue last overflowed,
	// for the "back" and overflow log lines.
	failedOutage  uint64
	droppedOutage uint64
	// peer is the socket file the last datagram was delivered to, once
	// one was (peerKnown).
	peer       socketID
	peerKnown  bool
	resyncs    uint64
	superseded uint64
}

// socketID tells one socket file from another created at the same path
// later.
type socketID struct {
	dev, ino uint64
	ctime    syscall.Timespec
}

// statSocket returns the identity of the socket file at path; false when
// there is none (missing, or an abstract address, which has no file).
func statSocket(path string) (socketID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return socketID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return socketID{}, false
	}
	return socketID{dev: uint64(st.Dev), ino: st.Ino, ctime: st.Ctim}, true
}

type queued struct {
	id  uint64
	msg string
}

// NewTarget returns a target for the datagram socket at path. Call Run to
// start delivering.
func NewTarget(path string, opts TargetOptions) *Target {
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	opts.QueueLen = max(opts.QueueLen, 2)
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Send == nil {
		opts.Send = func(path, msg string) error { return dgram.Send(path, msg) }
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = DefaultWatchInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Target{
		path:  path,
		opts:  opts,
		log:   opts.Logger.With("target", path),
		wake:  make(chan struct{}, 1),
		state: "unknown",
	}
}

// Path returns the target's socket path.
func (t *Target) Path() string { return t.path }

// Enqueue queues one datagram; id is passed back to Report.
func (t *Target) Enqueue(id uint64, msg string) {
	t.mu.Lock()
	var drop queued
	dropped, first := false, false
	if len(t.q) >= t.opts.QueueLen {
		at := 0
		if t.sending {
			at = 1
		}
		drop = t.q[at]
		t.q = append(t.q[:at], t.q[at+1:]...)
		dropped = true
		t.dropped++
		t.droppedOutage++
		first = t.droppedOutage == 1
	}
	t.q = append(t.q, queued{id: id, msg: msg})
	total := t.dropped
	t.mu.Unlock()
	if dropped {
		level := slog.LevelDebug
		if first {
			level = slog.LevelWarn
		}
		t.log.Log(context.Background(), level, "target queue full; dropped the oldest datagram",
			"datagram", drop.msg, "queue", t.opts.QueueLen, "dropped_total", total)
		t.report(drop.id, DeliveryDropped)
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *Target) report(id uint64, state string) {
	if t.opts.Report != nil {
		t.opts.Report(id, t.path, state)
	}
}

// Run delivers queued datagrams until ctx is cancelled. Datagrams still
// queued then are not sent. A send already under way is not interrupted:
// dgram.Send blocks while the target's queue is full, as sfptpdctl
// does. Before each send, every WatchInterval while idle and while
// backing off, the socket file is checked for a restarted daemon.
func (t *Target) Run(ctx context.Context) {
	var backoff time.Duration
	var retrying uint64 // id last reported as retrying
	watch := time.NewTicker(t.opts.WatchInterval)
	defer watch.Stop()
	for {
		t.checkPeer()
		t.mu.Lock()
		for len(t.q) == 0 {
			t.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
			case <-watch.C:
				t.checkPeer()
			}
			t.mu.Lock()
		}
		head := t.q[0]
		t.sending = true
		t.mu.Unlock()

		// The socket file this send reaches, unless a restart races it;
		// then the next check sees a file other than the one recorded
		// here, and the new daemon is told everything again.
		peer, havePeer := statSocket(t.path)
		err := t.opts.Send(t.path, head.msg)

		t.mu.Lock()
		t.sending = false
		if err == nil {
			// The head was protected while sending, and Resync runs
			// only from this goroutine, so it is still q[0].
			t.q = t.q[1:]
			if len(t.q) == 0 {
				t.q = nil // let the backing array go after a burst
			}
			t.sent++
			if havePeer {
				t.peer, t.peerKnown = peer, true
			}
			wasDown := t.state == "down"
			failedOutage, droppedOutage := t.failedOutage, t.droppedOutage
			t.state, t.lastErr = "up", ""
			t.failedOutage, t.droppedOutage = 0, 0
			t.mu.Unlock()
			if wasDown {
				t.log.Info("target is back", "failed_attempts", failedOutage, "dropped", droppedOutage)
			}
			t.report(head.id, DeliverySent)
			t.log.Debug("datagram sent", "datagram", head.msg)
			backoff = 0
			continue
		}
		t.failed++
		t.failedOutage++
		first := t.state != "down"
		t.state, t.lastErr = "down", err.Error()
		pending := len(t.q)
		t.mu.Unlock()

		if backoff == 0 {
			backoff = t.opts.MinBackoff
		} else {
			backoff = min(2*backoff, t.opts.MaxBackoff)
		}
		if first {
			t.log.Warn("target unreachable; queueing and retrying", "err", err, "datagram", head.msg, "pending", pending)
		} else {
			t.log.Debug("target still unreachable", "err", err, "pending", pending, "backoff", backoff)
		}
		if head.id != retrying {
			retrying = head.id
			t.report(head.id, DeliveryRetrying)
		}
		// Wait out the backoff, but retry at once when the socket file
		// appears or is re-created: a daemon that has just started
		// should not wait for the next retry.
		retry := time.NewTimer(backoff)
	wait:
		for {
			select {
			case <-ctx.Done():
				retry.Stop()
				return
			case <-retry.C:
				break wait
			case <-watch.C:
				if now, ok := statSocket(t.path); ok && (!havePeer || now != peer) {
					retry.Stop()
					break wait
				}
			}
		}
	}
}

// checkPeer compares the socket file with the one the last datagram
// was delivered to and, when it is another, calls PeerChanged.
func (t *Target) checkPeer() {
	now, ok := statSocket(t.path)
	if !ok {
		return // missing: sends fail until a daemon creates it
	}
	t.mu.Lock()
	changed := t.peerKnown && now != t.peer
	t.mu.Unlock()
	if !changed {
		return
	}
	t.log.Info("target socket re-created: its daemon restarted")
	if t.opts.PeerChanged != nil {
		t.opts.PeerChanged(t)
	}
	t.mu.Lock()
	t.peer = now
	t.mu.Unlock()
}

// Datagram is one datagram for Resync, with the id Report is given.
type Datagram struct {
	ID  uint64
	Msg string
}

// Resync replaces the datagrams waiting for the target with msgs, in
// order: what a restarted daemon must be told, which already includes
// the effect of every datagram it would otherwise have been sent. The
// replaced ones are reported DeliverySuperseded. It is called from
// PeerChanged, which runs on Run's goroutine between sends, so no send
// is in flight.
func (t *Target) Resync(msgs []Datagram) {
	q := make([]queued, len(msgs))
	for i, m := range msgs {
		q[i] = queued{id: m.ID, msg: m.Msg}
	}
	t.mu.Lock()
	old := t.q
	t.q = q
	t.resyncs++
	t.superseded += uint64(len(old))
	t.mu.Unlock()
	t.log.Info("re-sending the present interfaces to the restarted daemon", "datagrams", len(msgs), "superseded", len(old))
	for _, o := range old {
		t.report(o.id, DeliverySuperseded)
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// TargetStats is a target's counters, for status-get.
type TargetStats struct {
	Path string `json:"path"`
	// State is "unknown" before the first attempt, then "up" or "down".
	State   string `json:"state"`
	Sent    uint64 `json:"sent"`
	Failed  uint64 `json:"failed"`
	Dropped uint64 `json:"dropped"`
	Pending int    `json:"pending"`
	// Resyncs counts the daemon restarts seen (a re-created socket),
	// each answered by re-sending the present interfaces; Superseded
	// the queued datagrams such a re-send replaced.
	Resyncs    uint64 `json:"resyncs"`
	Superseded uint64 `json:"superseded"`
	LastError  string `json:"last-error,omitempty"`
}

// Stats returns the target's counters.
func (t *Target) Stats() TargetStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TargetStats{
		Path: t.path, State: t.state, Sent: t.sent, Failed: t.failed,
		Dropped: t.dropped, Pending: len(t.q), Resyncs: t.resyncs,
		Superseded: t.superseded, LastError: t.lastErr,
	}
}
