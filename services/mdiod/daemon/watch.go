package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Run watches every port's link until ctx ends: a BMSR poll every
// Options.Poll, and at once when netlink reports a carrier change on a
// Hotplug backend's interface or the port was reattached. Each change is
// recorded for events-get and passed to Options.Notify as
// "PHY A: link up 1000MBit (master)\n".
func (m *MDIO) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if m.opts.Netlink {
		if ifs := m.hotplugPorts(); len(ifs) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.watchNetlink(ctx, ifs)
			}()
		}
	}
	for _, p := range m.ports {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.watch(ctx, p)
		}()
	}
	wg.Wait()
	return nil
}

func (m *MDIO) hotplugPorts() map[string][]*Port {
	ifs := map[string][]*Port{}
	for _, p := range m.ports {
		if p == nil {
			continue
		}
		if h, ok := p.phy.(mdio.Hotplug); ok {
			ifs[h.Interface()] = append(ifs[h.Interface()], p)
		}
	}
	return ifs
}

// watch polls one port.
func (m *MDIO) watch(ctx context.Context, p *Port) {
	t := time.NewTicker(m.opts.Poll)
	defer t.Stop()
	var last Status // the link starts as down: a port up at start is reported
	var failing bool
	for {
		st, dropped, err := p.poll()
		switch {
		case err != nil:
			if !failing {
				m.log.Warn("link poll failed", "port", p.Name, "backend", p.phy.Name(), "err", err)
				failing = true
			}
			st = Status{} // unreachable: report the link as down
		case failing:
			m.log.Info("link poll works again", "port", p.Name)
			failing = false
		}
		if last.Link && dropped && st.Link {
			// Down and up again between two polls: the latch saw it.
			last = Status{}
			m.emit(p, last)
		}
		if !st.same(last) {
			m.emit(p, st)
		}
		last = st
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

// emit records and broadcasts one link state.
func (m *MDIO) emit(p *Port, st Status) {
	msg := "PHY " + p.Name + ": " + st.Message()
	p.lmu.Lock()
	p.link = st
	p.changes++
	p.lmu.Unlock()
	e := m.events.add(Event{
		Time: m.opts.Now(), Port: p.Name, Link: st.Link, Speed: st.Speed,
		Duplex: st.Duplex(), Role: st.Role, Msg: msg,
	})
	// The log line is the event's text, as IPC clients see it, so that
	// a service log (gokrazy's web UI) reads like nose's event stream.
	m.log.Info(msg, "port", p.Name, "seq", e.Seq)
	m.opts.Notify(msg + "\n")
}

// attachPending attaches those of ps whose backend is detached, e.g.
// because the interface did not exist when mdiod started or was reported
// removed, and kicks each attached port so that its link is polled at
// once. A backend that still cannot attach stays detached; its error is
// logged when it differs from the last one (failed, by port), so that a
// link that keeps changing does not flood the log.
func (m *MDIO) attachPending(ps []*Port, failed map[*Port]string) {
	for _, p := range ps {
		h, ok := p.phy.(mdio.Hotplug)
		if !ok {
			continue
		}
		p.mu.Lock()
		var err error
		attached := h.Attached()
		if !attached {
			err = h.Attach()
		}
		p.mu.Unlock()
		switch {
		case attached:
			continue
		case err != nil:
			if failed[p] != err.Error() {
				m.log.Warn("attach failed; the port stays detached", "port", p.Name, "interface", h.Interface(), "err", err)
				failed[p] = err.Error()
			}
			continue
		}
		delete(failed, p)
		m.log.Info("port attached", "port", p.Name, "interface", h.Interface(), "backend", p.phy.Name())
		p.Kick()
	}
}

// watchNetlink kicks the ports bound to an interface whenever netlink
// reports a change of that link (carrier, up/down, appearing or going),
// so that a cable pull is seen before the next poll. A detached port is
// attached when its interface is reported present (RTM_NEWLINK): an
// interface that appears after mdiod started is picked up without
// waiting for the appliance agent's interfaceinsert.
func (m *MDIO) watchNetlink(ctx context.Context, ifs map[string][]*Port) {
	attachErrs := map[*Port]string{}
	for {
		ch := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		failed := make(chan struct{}, 1)
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				if ctx.Err() != nil {
					return // the socket was closed on purpose
				}
				m.log.Warn("netlink link subscription failed", "err", err)
				select {
				case failed <- struct{}{}:
				default:
				}
			},
		})
		if err != nil {
			m.log.Warn("netlink unavailable; polling only", "err", err)
			close(done)
			return
		}
		m.log.Debug("watching carrier over netlink", "interfaces", len(ifs))
		// A change between the last poll and the subscription would not
		// be reported: attach what appeared meanwhile and poll once more
		// now that it is in place.
		for _, ps := range ifs {
			m.attachPending(ps, attachErrs)
			for _, p := range ps {
				p.Kick()
			}
		}
		stop := false
		for !stop {
			select {
			case <-ctx.Done():
				close(done)
				return
			case <-failed:
				stop = true
			case u, ok := <-ch:
				if !ok {
					stop = true
					break
				}
				if u.Link == nil || u.Link.Attrs() == nil {
					continue
				}
				ps := ifs[u.Link.Attrs().Name]
				if u.Header.Type == unix.RTM_NEWLINK {
					m.attachPending(ps, attachErrs)
				}
				for _, p := range ps {
					p.Kick()
				}
			}
		}
		close(done)
		// Resubscribe after a failure, not in a tight loop.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
