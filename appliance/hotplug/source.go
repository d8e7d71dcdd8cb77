package hotplug

import (
	"errors"
	"fmt"

	"syscall"

	"github.com/vishvananda/netlink"
)

// Source is where link information comes from: rtnetlink in production,
// a scripted sequence in tests.
type Source interface {
	// Subscribe starts a subscription to link messages. Updates go to
	// ch; the source closes ch when the subscription ends, because done
	// was closed or because of an error (reported to onErr first, as
	// are errors it survives). When Subscribe returns an error, ch is
	// not used.
	Subscribe(ch chan<- Update, done <-chan struct{}, onErr func(error)) error
	// List returns every link, in the kernel's (index) order.
	List() ([]Link, error)
}

// Netlink is the rtnetlink link source of the network namespace the
// process runs in.
type Netlink struct {
	// RecvBuf sets the subscription socket's receive buffer (0 keeps the
	// kernel default). An overrun is survived either way: the agent
	// re-lists the links and resynchronises.
	RecvBuf int
}

// listAttempts bounds retries of a link dump the kernel interrupted
// because the table changed during it.
const listAttempts = 5

// List implements Source.
func (n Netlink) List() ([]Link, error) {
	var err error
	for range listAttempts {
		var ls []netlink.Link
		ls, err = netlink.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		out := make([]Link, len(ls))
		for i, l := range ls {
			out[i] = FromNetlink(l)
		}
		return out, nil
	}
	return nil, fmt.Errorf("list links: %w (%d attempts)", err, listAttempts)
}

// Subscribe implements Source.
func (n Netlink) Subscribe(ch chan<- Update, done <-chan struct{}, onErr func(error)) error {
	raw := make(chan netlink.LinkUpdate, 64)
	err := netlink.LinkSubscribeWithOptions(raw, done, netlink.LinkSubscribeOptions{
		ErrorCallback:     onErr,
		ReceiveBufferSize: n.RecvBuf,
	})
	if err != nil {
		return fmt.Errorf("subscribe to link messages: %w", err)
	}
	go func() {
		defer close(ch)
		for u := range raw {
			up := Update{Deleted: u.Header.Type == syscall.RTM_DELLINK, Link: FromNetlink(u.Link)}
			select {
			case ch <- up:
			case <-done:
				// Keep draining so that the library's reader, which
				// closes raw once its socket is closed, never blocks.
				for range raw {
				}
				return
			}
		}
	}()
	return nil
}
