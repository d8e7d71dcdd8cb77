package hotplug

import (
	"context"
	"log/slog"
	"sync"
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
	// (DeliveryRetrying, DeliverySent, DeliveryDropped) by the id given
	// to Enqueue.
	Report func(id uint64, target, state string)
	Logger *slog.Logger
}

// Target delivers datagrams to one sfptpd-style control socket, in order,
// each at most once. A bounded FIFO feeds one goroutine (Run); when the
// socket is missing or refuses, the failure is logged once, the datagram
// stays at the head of the queue and is retried with backoff, and a line
// is logged when the target is back. When the queue is full the oldest
// waiting datagram is dropped and counted.
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
// does.
func (t *Target) Run(ctx context.Context) {
	var backoff time.Duration
	var retrying uint64 // id last reported as retrying
	for {
		t.mu.Lock()
		for len(t.q) == 0 {
			t.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
			}
			t.mu.Lock()
		}
		head := t.q[0]
		t.sending = true
		t.mu.Unlock()

		err := t.opts.Send(t.path, head.msg)

		t.mu.Lock()
		t.sending = false
		if err == nil {
			// The head was protected while sending, so it is still q[0].
			t.q = t.q[1:]
			if len(t.q) == 0 {
				t.q = nil // let the backing array go after a burst
			}
			t.sent++
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
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// TargetStats is a target's counters, for status-get.
type TargetStats struct {
	Path string `json:"path"`
	// State is "unknown" before the first attempt, then "up" or "down".
	State     string `json:"state"`
	Sent      uint64 `json:"sent"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
	Pending   int    `json:"pending"`
	LastError string `json:"last-error,omitempty"`
}

// Stats returns the target's counters.
func (t *Target) Stats() TargetStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TargetStats{
		Path: t.path, State: t.state, Sent: t.sent, Failed: t.failed,
		Dropped: t.dropped, Pending: len(t.q), LastError: t.lastErr,
	}
}
