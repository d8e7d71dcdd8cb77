package ntp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	beevik "github.com/beevik/ntp"
)

// DefaultPort is the NTP port a server without one is queried on.
const DefaultPort = 123

// maxHostLen bounds a server name: a DNS name is at most 253 octets, and
// an IPv6 literal with a zone is far shorter.
const maxHostLen = 253

// ParseServer splits a configured server ("host", "host:port", "[v6]",
// "[v6]:port" or a bare IPv6 literal) into host and port. The host is not
// resolved here: names are looked up at poll time so that a name that
// does not resolve yet (no DNS at boot) does not stop the daemon.
func ParseServer(s string) (host string, port uint16, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", 0, errors.New("ntp server: empty address")
	}
	port = DefaultPort
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("ntp server %q: missing ]", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", 0, fmt.Errorf("ntp server %q: unexpected %q after ]", s, rest)
			}
			if port, err = parsePort(s, rest[1:]); err != nil {
				return "", 0, err
			}
		}
		if _, perr := netip.ParseAddr(host); perr != nil || !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("ntp server %q: brackets hold an IPv6 address", s)
		}
	case strings.Count(s, ":") > 1:
		// More than one colon and no brackets: only a bare IPv6 literal
		// makes sense (a port would be ambiguous).
		if _, perr := netip.ParseAddr(s); perr != nil {
			return "", 0, fmt.Errorf("ntp server %q: not an IPv6 address (write [ADDR]:PORT for a port)", s)
		}
		host = s
	default:
		h, p, found := strings.Cut(s, ":")
		host = h
		if found {
			if port, err = parsePort(s, p); err != nil {
				return "", 0, err
			}
		}
	}
	if host == "" {
		return "", 0, fmt.Errorf("ntp server %q: empty host", s)
	}
	if len(host) > maxHostLen {
		return "", 0, fmt.Errorf("ntp server %q: host longer than %d characters", s[:32]+"...", maxHostLen)
	}
	if _, zone, ok := strings.Cut(host, "%"); ok && !validZone(zone) {
		return "", 0, fmt.Errorf("ntp server %q: zone %q is not an interface name", s, zone)
	}
	if _, perr := netip.ParseAddr(host); perr != nil && !validHostname(host) {
		return "", 0, fmt.Errorf("ntp server %q: %q is neither an IP address nor a host name", s, host)
	}
	return host, port, nil
}

func parsePort(s, p string) (uint16, error) {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("ntp server %q: port %q: want 1-65535", s, p)
	}
	return uint16(n), nil
}

// validZone accepts an IPv6 zone that can be an interface name (or
// index); netip would take any bytes, which then do not survive being
// put back in brackets.
func validZone(z string) bool {
	if z == "" || len(z) > 15 {
		return false
	}
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validHostname accepts DNS names: dot-separated labels of letters,
// digits, '-' and '_' (seen in the wild), none empty or over 63.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// dnsRefresh is how long a resolved address is used before the name is
// looked up again (sooner when the server stops answering).
const dnsRefresh = 10 * time.Minute

// dnsRetry is the shortest time between two look-ups of one name.
const dnsRetry = 30 * time.Second

// server is one configured server and what its polls found. Only the
// Run goroutine touches it, apart from the fields Status copies under
// the instance's lock.
type server struct {
	spec string
	host string
	port uint16

	addr       netip.Addr // resolved; invalid before the first lookup
	resolvedAt time.Time

	// reach and validReach are NTP-style reachability registers: one
	// bit per poll, set when the server replied (reach) or replied with
	// a usable response (validReach).
	reach      uint8
	validReach uint8
	have       bool // sample holds the last valid response
	sample     sample
	problem    string // the last failure, logged when it changes
	skip       int    // polls to skip after a kiss-of-death
	kodBackoff int
	queries    int // queries sent, for tests and logs
	// rtts are the round trips of the last valid responses: the root
	// distance the selection compares takes the shortest, as NTP's
	// clock filter takes the sample with the least delay, so that one
	// reply delayed by a busy host does not make a server look worse.
	rtts  [rttWindow]time.Duration
	nrtts int
}

// rttWindow is how many round trips the selection's filter keeps.
const rttWindow = 8

// filterRTT records a valid response's round trip and returns the
// shortest of the window.
func (s *server) filterRTT(rtt time.Duration) time.Duration {
	s.rtts[s.nrtts%rttWindow] = rtt
	s.nrtts++
	least := rtt
	for _, r := range s.rtts[:min(s.nrtts, rttWindow)] {
		least = min(least, r)
	}
	return least
}

// sample is one valid response, measured against the instance's clock.
type sample struct {
	offset   time.Duration // local clock minus server
	rtt      time.Duration
	stratum  uint8
	rootDisp time.Duration
	rootDist time.Duration
	refID    string
	at       time.Time // the instance clock at reception
	round    uint64
}

// outcomeKind classifies a poll of one server.
type outcomeKind int

const (
	outcomeSkipped     outcomeKind = iota // kiss-of-death back-off
	outcomeValid                          // a usable response
	outcomeInvalid                        // a reply, unusable (unsynchronised, KoD, malformed)
	outcomeUnreachable                    // no reply: timeout, refused, no route
	outcomeDNS                            // the name did not resolve
)

type outcome struct {
	kind outcomeKind
	// key names the failure without what changes from query to query
	// (the local port), so that a lasting problem is logged once.
	key    string
	sample sample
	kod    string // kiss code, for a kiss-of-death
	err    error
	addr   netip.Addr
}

// resolve returns the server's address, looking the name up when it
// has none, when it is old, or when the server stopped answering.
func (n *Instance) resolve(ctx context.Context, s *server) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s.host); err == nil {
		s.addr = a
		return a, nil
	}
	// A name is looked up again after a while, and sooner while the
	// server is silent (it may have moved), but never more than every
	// dnsRetry.
	if age := time.Since(s.resolvedAt); s.addr.IsValid() && (age < dnsRetry || age < dnsRefresh && s.reach&recentPolls != 0) {
		return s.addr, nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	addrs, err := n.resolver.LookupNetIP(ctx, "ip", s.host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolving %s: %w", s.host, err)
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolving %s: no addresses", s.host)
	}
	s.addr, s.resolvedAt = addrs[0].Unmap(), time.Now()
	return s.addr, nil
}

// query polls one server once. The offset is of the instance's clock,
// which need not be the system clock: beevik/ntp stamps the request with
// the system time and the reply with the kernel's receive timestamp,
// both CLOCK_REALTIME, so both are moved onto the instance's clock
// before the offset is formed.
func (n *Instance) query(ctx context.Context, s *server, round uint64) outcome {
	addr, err := n.resolve(ctx, s)
	if err != nil {
		key := "DNS: " + s.host
		var de *net.DNSError
		if errors.As(err, &de) {
			key += ": " + de.Err
		}
		return outcome{kind: outcomeDNS, key: key, err: err}
	}
	remote := net.JoinHostPort(addr.String(), strconv.Itoa(int(s.port)))
	before, berr := n.clockDelta()
	resp, qerr := beevik.QueryWithOptions(remote, beevik.QueryOptions{Timeout: n.cfg.Timeout})
	after, aerr := n.clockDelta()
	if qerr != nil {
		return classify(qerr, addr)
	}
	if err := resp.Validate(); err != nil {
		o := outcome{kind: outcomeInvalid, key: "unusable response: " + err.Error(), err: err, addr: addr}
		if resp.IsKissOfDeath() {
			o.kod = resp.KissCode
			o.key = fmt.Sprintf("kiss-of-death %q", resp.KissCode)
		}
		return o
	}
	if err := errors.Join(berr, aerr); err != nil {
		return outcome{kind: outcomeUnreachable, key: "reading clock: " + err.Error(), err: err, addr: addr}
	}
	delta := (before + after) / 2
	t1, err1 := n.toClock(resp.Timestamps.ClientXmit, delta)
	t4, err4 := n.toClock(resp.Timestamps.ClientRecv, delta)
	if err := errors.Join(err1, err4); err != nil {
		return outcome{kind: outcomeUnreachable, key: "mapping timestamps: " + err.Error(), err: err, addr: addr}
	}
	t2, t3 := resp.Timestamps.ServerRecv, resp.Timestamps.ServerXmit
	// Local minus server, sfptpd's sign: positive when the clock is ahead.
	off := -(t2.Sub(t1) + t3.Sub(t4)) / 2
	rtt := max(t4.Sub(t1)-t3.Sub(t2), 0)
	return outcome{kind: outcomeValid, addr: addr, sample: sample{
		offset:   off,
		rtt:      rtt,
		stratum:  resp.Stratum,
		rootDisp: resp.RootDispersion,
		rootDist: rtt/2 + resp.RootDelay/2 + resp.RootDispersion,
		refID:    resp.ReferenceString(),
		at:       t4,
		round:    round,
	}}
}

// classify sorts a failed query: no reply at all (the server is
// unreachable) or a reply that could not be used.
func classify(err error, addr netip.Addr) outcome {
	cause := err.Error()
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		cause = oe.Err.Error() // without the addresses and local port
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.EADDRNOTAVAIL),
		errors.Is(err, syscall.ENETDOWN),
		oe != nil && oe.Op == "dial":
		return outcome{kind: outcomeUnreachable, key: "unreachable: " + cause, err: err, addr: addr}
	}
	return outcome{kind: outcomeInvalid, key: "bad reply: " + cause, err: err, addr: addr}
}

// clockDelta is the instance clock minus the system clock, for clocks
// that cannot map a realtime instant themselves.
func (n *Instance) clockDelta() (time.Duration, error) {
	if n.mapper != nil {
		return 0, nil
	}
	a := time.Now()
	c, err := n.clk.Now()
	b := time.Now()
	if err != nil {
		return 0, err
	}
	mid := a.Add(b.Sub(a) / 2)
	return c.Sub(mid.Round(0)), nil
}

// toClock moves a CLOCK_REALTIME instant onto the instance clock.
func (n *Instance) toClock(rt time.Time, delta time.Duration) (time.Time, error) {
	rt = rt.Round(0)
	if n.mapper != nil {
		return n.mapper.FromRealtime(rt)
	}
	return rt.Add(delta), nil
}
