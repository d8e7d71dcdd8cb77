package demux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// DefaultNames are the abstract socket names the demux serves:
// libmctp's "mctp-mux" and "mctp-demux", the name some clients use.
var DefaultNames = []string{"mctp-mux", "mctp-demux"}

// Defaults.
const (
	// DefaultQueueMsgs and DefaultQueueBytes bound each client's queue
	// of messages not yet written to its socket.
	DefaultQueueMsgs  = 512
	DefaultQueueBytes = 4 << 20
	// DefaultMaxMessage is the largest client datagram accepted:
	// the address byte and an MCTP message (type byte included) of
	// 64 KiB, the most libmctp and mctpd reassemble, so that nothing a
	// client sends is put on the wire only to be dropped by the far side.
	DefaultMaxMessage = 64<<10 + 1
	// DefaultSendBuffer is the SO_SNDBUF asked for each client's
	// socket (the kernel doubles it, and caps it at net.core.wmem_max
	// first). The kernel's default, about 208 KiB, holds some 24
	// messages of 4 KiB (each takes over 8 KiB of buffer): a client
	// with 32 in flight then overflows it, and every further message
	// takes the queue's path, a copy and a hand-off to the writer. In
	// the socket a message costs neither.
	DefaultSendBuffer = 256 << 10
)

// Message is one typed message: mctp.ClientMessage, whose Client is the
// connection a message came from. From a client, Addr is the
// destination; towards clients it is the source. Tag is the byte
// between the address and the type on a tagged demux (Options.Tagged),
// 0 on a plain one; the demux does not interpret it.
type Message = mctp.ClientMessage

// Sender carries client messages onwards: mctpd's router (mctp.Router's
// Send for a plain demux, SendTagged for a tagged one) sends them on an
// MCTP binding; Loopback only delivers to local clients.
//
// Send is called from each client's reader goroutine, so it may run
// concurrently and must be safe for that. It may block while the
// message's route is busy: that client's further messages wait
// meanwhile, unread in its socket, which pushes back on the client
// (other clients do not wait); this is the demux's flow control, and
// mctpd's router uses it instead of dropping. It should return once ctx
// ends. m.Body stays the demux's: it aliases the connection's read
// buffer and is valid only until Send returns, so a sender that keeps it
// must copy it (mctpd's router lays out a message of its own; Loopback
// delivers at once). An error drops the message; the demux counts and
// logs it.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SenderFunc is a function as a Sender.
type SenderFunc func(ctx context.Context, m Message) error

// Send implements Sender.
func (f SenderFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

// ErrNoRoute is Loopback's error for a destination other than its own.
var ErrNoRoute = errors.New("no route to destination")

// ErrEmptyMessage is Loopback's error for a message without a body.
var ErrEmptyMessage = errors.New("message of a type byte only is not delivered")

// Loopback returns a sender without a wire, as libmctp's demux daemon
// behaves for its own EID: messages to addr are delivered to d's
// clients of their type with source addr; any other destination is
// dropped, and so is a message of a type byte alone (libmctp delivers
// none under 2 bytes).
func Loopback(d *Server, addr byte) Sender {
	return SenderFunc(func(_ context.Context, m Message) error {
		if m.Addr != addr {
			return fmt.Errorf("%w %d: loopback only (local address %d)", ErrNoRoute, m.Addr, addr)
		}
		if len(m.Body) == 0 {
			return ErrEmptyMessage
		}
		d.DeliverTag(addr, m.Tag, m.Type, m.Body)
		return nil
	})
}

// Options configures a demux.
type Options struct {
	// Log receives the demux's log lines; nil discards them.
	Log *slog.Logger
	// Inheritance holds the sockets the process inherited (systemd
	// socket activation, a re-exec), from which the demux adopts its
	// listeners by name; nil when there are none. Read the environment
	// once per process (unixsock.ReadEnv) and share the result.
	Inheritance *unixsock.Inheritance
	// QueueMsgs and QueueBytes bound each client's queue; 0 means the
	// defaults. A client whose queue overflows is disconnected, so a
	// client that stops reading cannot stall delivery to the others or
	// grow the daemon's memory.
	QueueMsgs  int
	QueueBytes int
	// MaxMessage is the largest client datagram accepted; 0 means
	// DefaultMaxMessage. Each connection maps read slots of this size
	// (see reader).
	MaxMessage int
	// SendBuffer is the SO_SNDBUF set on each client's socket; 0 means
	// DefaultSendBuffer, negative leaves the kernel's default. What the
	// socket holds comes before the queue bounds (QueueMsgs,
	// QueueBytes): a client that stops reading holds at most twice
	// this in the kernel besides its queue.
	SendBuffer int
	// Tagged makes every frame after registration, both ways, carry one
	// more byte between the address and the type:
	// [addr][tag][type][body]. It is for a separate name (mctpd serves
	// its tag-aware clients on one); libmctp's format, without the
	// byte, is the default.
	Tagged bool
	// OnDisconnect, when not nil, is called once a registered client
	// has gone, after the demux stopped delivering to it, so that a
	// router can release what it holds for that client
	// (mctp.Router.ClientGone).
	OnDisconnect func(mctp.ClientID)
	// StreamOptions limit concurrent clients per name and say which uids
	// and gids may connect.
	unixsock.StreamOptions
}

// Stats are the demux's counters.
type Stats struct {
	// Registrations counts clients that registered a type.
	Registrations uint64 `json:"registrations"`
	// In counts client messages handed to the router.
	In uint64 `json:"in"`
	// Out counts message copies written to clients.
	Out uint64 `json:"out"`
	// Delivered counts Deliver calls that reached at least one client.
	Delivered uint64 `json:"delivered"`
	// Drops by reason.
	DropShort    uint64 `json:"drop-short"`     // shorter than the header (2 bytes, 3 tagged), from a client or DeliverFrame
	DropTooBig   uint64 `json:"drop-too-big"`   // client datagram over MaxMessage
	DropRoute    uint64 `json:"drop-route"`     // refused by the router
	DropNoClient uint64 `json:"drop-no-client"` // no client registered for the type
	DropOverflow uint64 `json:"drop-overflow"`  // copies discarded with an overflowing client
	// Overflows counts clients disconnected because their queue
	// overflowed.
	Overflows uint64 `json:"overflows"`
	// Clients is the number of connected clients by registered type.
	Clients map[byte]int `json:"clients"`
}

// The router delivers to a Server.
var _ mctp.Clients = (*Server)(nil)

// Server is a libmctp-compatible demultiplexer: an AF_UNIX
// SOCK_SEQPACKET server on abstract names, whose clients register one
// message type each and exchange [addr][type][body] messages with a
// Sender. It implements mctp.Clients.
type Server struct {
	log   *slog.Logger
	names []string
	opts  Options

	// lmu guards the listeners: Serve starts them, Close stops them.
	lmu     sync.Mutex
	accs    []*unixsock.Acceptor
	serving bool
	closed  bool
	// sender is set by Serve before the first connection is accepted.
	sender Sender

	// hdr is the frame header length: address (and tag) before the
	// type byte, which is at frame[hdr-1].
	hdr int
	// shortMsg are the log lines for client datagrams and DeliverFrame
	// frames shorter than hdr.
	shortMsg [2]string

	// mu guards byID, gone and changes to byType. Delivery reads
	// byType without a lock: register and unregister replace the table
	// rather than change it.
	mu     sync.RWMutex
	byType atomic.Pointer[clientTable]
	byID   map[mctp.ClientID]*client
	lastID atomic.Uint64
	// gone holds the counters of clients that have left; live clients
	// count on their own, so that clients on different cores do not
	// contend for one counter per message.
	gone countSums

	dropLog logThrottle

	registrations                                         atomic.Uint64
	dropShort, dropTooBig, dropRoute, dropNoClient, dropQ atomic.Uint64
	overflows                                             atomic.Uint64
}

// New returns a demux for the given abstract names (without the leading
// '@'; DefaultNames normally). It does not listen yet: Serve does, once
// the demux's sender exists, so that the sender (mctpd's router) can be
// built with the demux as its clients.
func New(names []string, opts Options) (*Server, error) {
	if len(names) == 0 {
		return nil, errors.New("demux: no socket names")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.QueueMsgs <= 0 {
		opts.QueueMsgs = DefaultQueueMsgs
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	hdr := 2
	if opts.Tagged {
		hdr = 3
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage + hdr - 2
	}
	if opts.SendBuffer == 0 {
		opts.SendBuffer = DefaultSendBuffer
	}
	d := &Server{
		log:   opts.Log.With("frontend", "demux"),
		names: slices.Clone(names),
		opts:  opts,
		hdr:   hdr,
		byID:  make(map[mctp.ClientID]*client),
	}
	d.byType.Store(&clientTable{})
	d.dropLog.every = time.Second
	d.shortMsg = [2]string{
		fmt.Sprintf("demux: client message under %d bytes; dropped", hdr),
		fmt.Sprintf("demux: message under %d bytes for clients dropped", hdr),
	}
	return d, nil
}

// Serve listens on the demux's names, adopting inherited sockets
// (Options.Inheritance), and accepts clients, whose messages go to s,
// until Close. Each name gets its own listener and accept loop, so peer
// checks and connection limits apply per name; all names share one set
// of clients. It returns once every name listens, or with the first
// error, having closed what it opened. It may be called once.
//
// Clients do not survive a restart (an inherited listener does):
// libmctp clients see a disconnect and reconnect.
func (d *Server) Serve(s Sender) error {
	if s == nil {
		return errors.New("demux: no sender")
	}
	d.lmu.Lock()
	defer d.lmu.Unlock()
	if d.serving || d.closed {
		return errors.New("demux: already served or closed")
	}
	d.serving = true
	d.sender = s
	for _, name := range d.names {
		addr := "@" + strings.TrimPrefix(name, "@")
		a, err := unixsock.Accept(d.opts.Inheritance, d.opts.Log, "demux", "unixpacket", unixsock.Spec{Addr: addr},
			d.opts.StreamOptions, d.serve, nil)
		if err != nil {
			d.closeLocked(context.Background())
			return err
		}
		d.accs = append(d.accs, a)
	}
	return nil
}

// Addrs returns the socket addresses served ("@mctp-mux", ...).
func (d *Server) Addrs() []string {
	d.lmu.Lock()
	defer d.lmu.Unlock()
	out := make([]string, len(d.accs))
	for i, a := range d.accs {
		out[i] = a.Addr()
	}
	return out
}

// Close stops accepting and disconnects every client, waiting up to
// ctx's deadline for their goroutines. A demux not yet served is closed
// for good: Serve then fails.
func (d *Server) Close(ctx context.Context) error {
	d.lmu.Lock()
	defer d.lmu.Unlock()
	d.closeLocked(ctx)
	return nil
}

func (d *Server) closeLocked(ctx context.Context) {
	d.closed = true
	var wg sync.WaitGroup
	for _, a := range d.accs {
		wg.Add(1)
		go func() { defer wg.Done(); a.Close(ctx, false) }()
	}
	wg.Wait()
	d.accs = nil
}

// Tagged reports whether frames carry a tag byte (Options.Tagged).
func (d *Server) Tagged() bool { return d.hdr == 3 }

// Registered returns the number of clients registered for exactly typ.
func (d *Server) Registered(typ byte) int {
	return len(d.byType.Load()[typ])
}

// Types returns the types at least one client registered, sorted.
func (d *Server) Types() []byte {
	var ts []byte
	for t, cs := range d.byType.Load() {
		if len(cs) > 0 {
			ts = append(ts, byte(t))
		}
	}
	return ts
}

// Stats returns the current counters.
func (d *Server) Stats() Stats {
	st := Stats{
		Registrations: d.registrations.Load(),
		DropShort:     d.dropShort.Load(),
		DropTooBig:    d.dropTooBig.Load(),
		DropRoute:     d.dropRoute.Load(),
		DropNoClient:  d.dropNoClient.Load(),
		DropOverflow:  d.dropQ.Load(),
		Overflows:     d.overflows.Load(),
		Clients:       map[byte]int{},
	}
	d.mu.RLock()
	n := d.gone
	for _, c := range d.byID {
		n.add(&c.counts)
	}
	d.mu.RUnlock()
	st.In, st.Out, st.Delivered = n.in, n.out, n.delivered
	for t, cs := range d.byType.Load() {
		if len(cs) > 0 {
			st.Clients[byte(t)] = len(cs)
		}
	}
	return st
}

// Deliver queues [addr][typ][body] for every client registered for
// exactly typ, and returns how many it reached. It never blocks on a
// client and does not keep body, so the caller may reuse it. It is safe
// for concurrent use.
func (d *Server) Deliver(addr, typ byte, body []byte) int {
	return d.DeliverTag(addr, 0, typ, body)
}

// DeliverTag is Deliver with a tag byte: on a tagged demux the frames
// are [addr][tag][typ][body]; on a plain one the tag is not part of the
// frame and is ignored.
func (d *Server) DeliverTag(addr, tag, typ byte, body []byte) int {
	m := d.outMsg(addr, tag, typ, body)
	return d.deliver(&m)
}

// DeliverTo queues [addr][tag][typ][body] (the tag only on a tagged
// demux) for the one client id, whatever type it registered, and
// reports whether that client took it: false when it is gone or its
// queue overflowed. body is not kept.
func (d *Server) DeliverTo(id mctp.ClientID, addr, tag, typ byte, body []byte) bool {
	d.mu.RLock()
	c := d.byID[id]
	d.mu.RUnlock()
	m := d.outMsg(addr, tag, typ, body)
	if c == nil || !c.enqueue(&m) {
		return false
	}
	c.counts.delivered.Add(1)
	return true
}

// outMsg makes the message for clients: the header this demux's frames
// carry, and body, which stays the caller's.
func (d *Server) outMsg(addr, tag, typ byte, body []byte) outMsg {
	m := outMsg{hlen: d.hdr, body: body}
	m.hdr[0], m.hdr[d.hdr-1] = addr, typ
	if d.hdr == 3 {
		m.hdr[1] = tag
	}
	return m
}

// DeliverFrame is Deliver for a message already laid out as
// [addr][type][body] ([addr][tag][type][body] on a tagged demux);
// shorter frames are dropped. b is not kept.
func (d *Server) DeliverFrame(b []byte) int {
	if len(b) < d.hdr {
		d.dropShort.Add(1)
		d.dropLog.log(d.log, d.shortMsg[1], "len", len(b))
		return 0
	}
	m := outMsg{hlen: d.hdr, body: b[d.hdr:]}
	copy(m.hdr[:], b[:d.hdr])
	return d.deliver(&m)
}

// deliver fans m out to the clients of its type. Each takes it at once
// or queues the one copy they all share (outMsg).
func (d *Server) deliver(m *outMsg) int {
	n := 0
	typ := m.typ()
	var first *client
	for _, c := range d.byType.Load()[typ] {
		if c.enqueue(m) {
			if n == 0 {
				first = c
			}
			n++
		}
	}
	if n == 0 {
		d.dropNoClient.Add(1)
		d.dropLog.log(d.log, "demux: no client for message type; dropped", "type", typ, "addr", m.hdr[0], "len", len(m.body))
		return 0
	}
	// The first client that took it counts the delivery.
	first.counts.delivered.Add(1)
	return n
}

// ErrShort is ParseFrame's error for a frame shorter than its header.
var ErrShort = errors.New("demux: frame shorter than its header")

// ParseFrame splits a demux frame, [addr][type][body] or, tagged,
// [addr][tag][type][body]. Body aliases b; Client is left zero.
func ParseFrame(b []byte, tagged bool) (Message, error) {
	if tagged {
		if len(b) < 3 {
			return Message{}, fmt.Errorf("%w: %d of 3 bytes", ErrShort, len(b))
		}
		return Message{Addr: b[0], Tag: b[1], Type: b[2], Body: b[3:]}, nil
	}
	if len(b) < 2 {
		return Message{}, fmt.Errorf("%w: %d of 2 bytes", ErrShort, len(b))
	}
	return Message{Addr: b[0], Type: b[1], Body: b[2:]}, nil
}

// serve runs one client connection: registration, then its messages.
func (d *Server) serve(ctx context.Context, conn *net.UnixConn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	cred, _ := unixsock.PeerCred(conn)
	rc, err := conn.SyscallConn()
	if err != nil {
		d.log.Error("demux: client socket unusable", "pid", cred.PID, "err", err)
		return
	}
	if d.opts.SendBuffer > 0 {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, d.opts.SendBuffer)
		}); err != nil || serr != nil {
			// The kernel's default buffer only costs speed.
			d.log.Debug("demux: client send buffer left as is", "pid", cred.PID, "err", errors.Join(err, serr))
		}
	}
	rd, err := newReader(rc, d.opts.MaxMessage)
	if err != nil {
		d.log.Error("demux: client not served", "pid", cred.PID, "err", err)
		return
	}
	defer rd.close()

	n, err := rd.read()
	var reg []byte
	if err == nil {
		reg, _ = rd.msg(0)
	}
	if len(reg) == 0 {
		d.log.Debug("demux: client left before registering", "pid", cred.PID, "err", err)
		return
	}
	typ := reg[0]
	if typ == 0 {
		d.log.Info("demux: client registered type 0; closing it", "pid", cred.PID, "uid", cred.UID)
		return
	}
	c := newClient(d, conn, rc, typ, cred.PID)
	d.register(c)
	d.log.Info("demux: client registered", "type", typ, "pid", cred.PID, "uid", cred.UID)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.write() }()
	defer func() {
		d.unregister(c)
		c.kill()
		<-writerDone
		if d.opts.OnDisconnect != nil {
			d.opts.OnDisconnect(c.id)
		}
	}()

	reset := false
	// next is the batch's next datagram: those after the registration
	// may have come in its batch.
	next := 1
	for {
		if next == n {
			next = 0
			if n, err = rd.read(); err != nil {
				if errors.Is(err, syscall.ECONNRESET) && !reset {
					// The client closed with messages to it still
					// unread. Linux reports that once, ahead of the
					// messages the client sent before closing: read
					// those before leaving.
					reset = true
					continue
				}
				switch {
				case errors.Is(err, net.ErrClosed) || c.killed():
					// We closed it: overflow, shutdown, a failed write.
				case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
					// A client closing is no failure.
					d.log.Debug("demux: client disconnected", "type", typ, "pid", cred.PID, "err", err)
				default:
					d.log.Info("demux: client read failed; disconnecting", "type", typ, "pid", cred.PID, "err", err)
				}
				return
			}
		}
		b, truncated := rd.msg(next)
		next++
		if len(b) == 0 {
			// libmctp treats a zero-length datagram (or EOF) as a
			// disconnect; it is how a client closes normally.
			d.log.Debug("demux: client disconnected", "type", typ, "pid", cred.PID)
			return
		}
		if truncated {
			d.dropTooBig.Add(1)
			d.dropLog.log(d.log, "demux: client message too big; dropped", "type", typ, "pid", cred.PID, "max", d.opts.MaxMessage)
			continue
		}
		m, perr := ParseFrame(b, d.Tagged())
		if perr != nil {
			d.dropShort.Add(1)
			d.dropLog.log(d.log, d.shortMsg[0], "type", typ, "pid", cred.PID, "len", len(b))
			continue
		}
		c.counts.in.Add(1)
		m.Client = c.id
		if err := d.sender.Send(ctx, m); err != nil {
			d.dropRoute.Add(1)
			d.dropLog.log(d.log, "demux: router dropped client message", "type", m.Type, "addr", m.Addr, "tag", m.Tag, "pid", cred.PID, "err", err)
		}
	}
}

// clientTable is the registered clients by type. A table is never
// changed once published: register and unregister publish a new one.
type clientTable [256][]*client

// clientCounts are one client's share of the demux's counters (Stats).
type clientCounts struct {
	in, out, delivered atomic.Uint64
}

// countSums add clientCounts up.
type countSums struct{ in, out, delivered uint64 }

func (s *countSums) add(c *clientCounts) {
	s.in += c.in.Load()
	s.out += c.out.Load()
	s.delivered += c.delivered.Load()
}

func (d *Server) register(c *client) {
	d.mu.Lock()
	t := *d.byType.Load()
	t[c.typ] = append(slices.Clip(t[c.typ]), c)
	d.byType.Store(&t)
	d.byID[c.id] = c
	d.mu.Unlock()
	d.registrations.Add(1)
}

// unregister stops deliveries to c. One that read the table before may
// still reach c; c.kill, which follows, makes it fail.
func (d *Server) unregister(c *client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.byID, c.id)
	d.gone.add(&c.counts)
	t := *d.byType.Load()
	t[c.typ] = slices.DeleteFunc(slices.Clone(t[c.typ]), func(x *client) bool { return x == c })
	if len(t[c.typ]) == 0 {
		t[c.typ] = nil
	}
	d.byType.Store(&t)
}

// logThrottle limits each hot-path log message to one line per period,
// reporting how many were suppressed, so that a misbehaving client cannot
// flood the log.
type logThrottle struct {
	every time.Duration
	mu    sync.Mutex
	seen  map[string]*throttled
}

type throttled struct {
	last       time.Time
	suppressed int
}

func (t *logThrottle) log(l *slog.Logger, msg string, args ...any) {
	t.mu.Lock()
	if t.seen == nil {
		t.seen = make(map[string]*throttled)
	}
	st := t.seen[msg]
	if st == nil {
		st = &throttled{}
		t.seen[msg] = st
	}
	now := time.Now()
	if !st.last.IsZero() && now.Sub(st.last) < t.every {
		st.suppressed++
		t.mu.Unlock()
		return
	}
	st.last = now
	n := st.suppressed
	st.suppressed = 0
	t.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.Warn(msg, args...)
}
