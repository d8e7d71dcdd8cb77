package engine

import (
	"context"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// watchLinks is hotplug_detection_mode netlink: it follows the kernel's
// link table and starts or stops the instances of interfaces as they
// come and go. A broken subscription (an ENOBUFS overrun) is renewed
// with backoff; the renewal lists the existing links again, so nothing
// is missed.
func (e *Engine) watchLinks(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		updates := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		// Closing done closes the socket under the library's receive
		// loop, which then reports the failed read (EAGAIN or EBADF).
		// That error is the close we asked for, not a fault: only
		// errors before it are worth a warning.
		var closing atomic.Bool
		err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
			ListExisting: true,
			ErrorCallback: func(err error) {
				if closing.Load() || ctx.Err() != nil {
					e.log.Debug("netlink: link subscription closed", "err", err)
					return
				}
				e.log.Warn("netlink: link subscription error", "err", err)
			},
		})
		if err != nil {
			e.log.Error("netlink: cannot subscribe to link changes; retrying", "err", err, "backoff", backoff)
		} else {
			backoff = 100 * time.Millisecond
			e.follow(ctx, updates)
		}
		closing.Store(true)
		close(done)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// follow applies link updates until the channel closes or ctx ends.
func (e *Engine) follow(ctx context.Context, updates <-chan netlink.LinkUpdate) {
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				e.log.Warn("netlink: link subscription ended; resubscribing")
				return
			}
			name := u.Attrs().Name
			if u.Header.Type == syscall.RTM_DELLINK {
				e.linkGone(name, "netlink")
			} else {
				e.linkPresent(name, "netlink")
			}
		}
	}
}
