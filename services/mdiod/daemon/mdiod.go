package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Defaults and limits of Options.
const (
	DefaultPoll   = time.Second
	MinPoll       = 10 * time.Millisecond
	DefaultEvents = 256
)

// Options configures an MDIO.
type Options struct {
	// Poll is the link watcher's BMSR poll interval (DefaultPoll if
	// zero; at least MinPoll).
	Poll time.Duration
	// Events is how many link events events-get keeps (DefaultEvents if
	// not positive).
	Events int
	// Notify receives each link event's message, e.g. the IPC
	// broadcast. It must not block.
	Notify func(msg string)
	// Exit is called by the exit command; nil leaves exit unregistered.
	Exit func()
	// Netlink enables carrier watching over netlink for backends bound
	// to an interface (mdio.Hotplug).
	Netlink bool
	// Version is what hw_info reports as the host tool version.
	Version string
	// Now is the clock of event timestamps (time.Now if nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// MDIO is the set of ports with their commands and link watcher.
type MDIO struct {
	ports  [2]*Port
	opts   Options
	log    *slog.Logger
	events *eventLog
}

// New returns an MDIO over phys, indexed by port: phys[0] is A, phys[1]
// is B; nil means the port is not configured. At least one is needed.
func New(phys [2]mdio.PHY, opts Options) (*MDIO, error) {
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Poll < MinPoll {
		return nil, fmt.Errorf("poll interval %v: at least %v", opts.Poll, MinPoll)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	m := &MDIO{opts: opts, log: opts.Logger, events: newEventLog(opts.Events)}
	for i, phy := range phys {
		if phy != nil {
			m.ports[i] = newPort(i, phy)
		}
	}
	if m.ports[0] == nil && m.ports[1] == nil {
		return nil, errors.New("no port configured")
	}
	return m, nil
}

// Port returns port A (0) or B (1), or nil when it is not configured.
func (m *MDIO) Port(i int) *Port { return m.ports[i] }

// Close closes every backend.
func (m *MDIO) Close() error {
	var errs []error
	for _, p := range m.ports {
		if p != nil {
			if err := p.phy.Close(); err != nil {
				errs = append(errs, fmt.Errorf("port %s: %w", p.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// selected returns the ports in the phy bitmask, A first, or an error
// naming a port that is not configured.
func (m *MDIO) selected(mask int64) ([]*Port, error) {
	var out []*Port
	for i, p := range m.ports {
		if mask&(1<<i) == 0 {
			continue
		}
		if p == nil {
			return nil, fmt.Errorf("phy %d: port %s is not configured (configured: %s)", mask, PortNames[i], m.configured())
		}
		out = append(out, p)
	}
	return out, nil
}

func (m *MDIO) configured() string {
	var n []string
	for _, p := range m.ports {
		if p != nil {
			n = append(n, fmt.Sprintf("%s=%d", p.Name, p.Bit))
		}
	}
	return strings.Join(n, ", ")
}
