package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultDemuxNames are the abstract socket names the demux serves:
// libmctp's "mctp-mux" and "mctp-demux", the name some clients use.
var DefaultDemuxNames = []string{"mctp-mux", "mctp-demux"}

// Demux defaults.
const (
	// DefaultDemuxQueueMsgs and DefaultDemuxQueueBytes bound each
	// client's queue of messages not yet written to its socket.
	DefaultDemuxQueueMsgs  = 512
	DefaultDemuxQueueBytes = 4 << 20
	// DefaultDemuxMaxMessage is the largest client datagram accepted:
	// the address byte and an MCTP message (type byte included) of
	// 64 KiB, the most libmctp and mctpd reassemble, so that nothing a
	// client sends is put on the wire only to be dropped by the far side.
	DefaultDemuxMaxMessage = 64<<10 + 1
)

// DemuxClientID identifies one registered client connection of a
// demux for as long as the demux runs; IDs are never reused, and 0 is
// never a client's.
type DemuxClientID uint64

// DemuxMessage is one typed message. From a client, Addr is the
// destination; towards clients it is the source.
type DemuxMessage struct {
	Addr byte
	// Tag is the byte between the address and the type on a tagged
	// demux (DemuxOptions.Tagged), 0 on a plain one. The demux does not
	// interpret it; mctpd's router reads the MCTP tag owner bit and
	// message tag from it.
	Tag  byte
	Type byte
	// Client is the connection the message came from, so that a router
	// can answer that client alone (DeliverTo).
	Client DemuxClientID
	// Body is the message after the type byte.
	Body []byte
}

// Router carries client messages onwards. mctpd's router sends them on
// an MCTP binding; LoopbackRouter only delivers to local clients.
//
// Send is called from each client's reader goroutine, so it may run
// concurrently and must be safe for that. It may block while the
// message's route is busy: that client's further messages wait
// meanwhile, unread in its socket, which pushes back on the client
// (other clients do not wait); this is the demux's flow control, and
// mctpd's router uses it instead of dropping. It should return once ctx
// ends. m.Body is freshly allocated for each call and owned by the
// router from then on: it may keep or modify it. Messages for local
// clients go back through d.Deliver. An error drops the message; the
// demux counts and logs it.
type Router interface {
	Send(ctx context.Context, d *Demux, m DemuxMessage) error
}

// ErrNoRoute is returned by routers for a destination they cannot reach.
var ErrNoRoute = errors.New("no route to destination")

// LoopbackRouter is a router without a wire, as libmctp's demux daemon
// behaves for its own EID: messages to Addr are delivered to local
// clients of their type with source Addr; any other destination is
// dropped, and so is a message of a type byte alone (libmctp delivers
// none under 2 bytes).
type LoopbackRouter struct {
	Addr byte
}

// ErrEmptyMessage is LoopbackRouter's error for a message without a
// body.
var ErrEmptyMessage = errors.New("message of a type byte only is not delivered")

// Send implements Router.
func (r LoopbackRouter) Send(_ context.Context, d *Demux, m DemuxMessage) error {
	if m.Addr != r.Addr {
		return fmt.Errorf("%w %d: loopback only (local address %d)", ErrNoRoute, m.Addr, r.Addr)
	}
	if len(m.Body) == 0 {
		return ErrEmptyMessage
	}
	d.DeliverTag(r.Addr, m.Tag, m.Type, m.Body)
	return nil
}

// DemuxOptions configures a demux.
type DemuxOptions struct {
	// Router receives every client message. It is required.
	Router Router
	// QueueMsgs and QueueBytes bound each client's queue; 0 means the
	// defaults. A client whose queue overflows is disconnected, so a
	// client that stops reading cannot stall delivery to the others or
	// grow the daemon's memory.
	QueueMsgs  int
	QueueBytes int
	// MaxMessage is the largest client datagram accepted; 0 means
	// DefaultDemuxMaxMessage. Each connection holds a read buffer of this
	// size.
	MaxMessage int
	// Tagged makes every frame after registration, both ways, carry one
	// more byte between the address and the type:
	// [addr][tag][type][body]. It is for a separate name (mctpd serves
	// its tag-aware clients on one); libmctp's format, without the
	// byte, is the default.
	Tagged bool
	// OnDisconnect, when not nil, is called once a registered client
	// has gone, after the demux stopped delivering to it, so that a
	// router can release what it holds for that client.
	OnDisconnect func(DemuxClientID)
	// StreamOptions limit concurrent clients per name and say which uids
	// and gids may connect.
	StreamOptions
}

// DemuxStats are the demux's counters.
type DemuxStats struct {
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

// Demux is a libmctp-compatible demultiplexer: an AF_UNIX SOCK_SEQPACKET
// server on abstract names, whose clients register one message type each
// and exchange [addr][type][body] messages with a Router.
type Demux struct {
	s    *Server
	log  *slog.Logger
	opts DemuxOptions
	accs []*unixsock.Acceptor

	// hdr is the frame header length: address (and tag) before the
	// type byte, which is at frame[hdr-1].
	hdr int
	// shortMsg are the log lines for client datagrams and DeliverFrame
	// frames shorter than hdr.
	shortMsg [2]string

	mu      sync.RWMutex
	clients map[byte][]*demuxClient
	byID    map[DemuxClientID]*demuxClient
	lastID  atomic.Uint64

	dropLog logThrottle

	registrations, in, out, delivered                     atomic.Uint64
	dropShort, dropTooBig, dropRoute, dropNoClient, dropQ atomic.Uint64
	overflows                                             atomic.Uint64
}

// ServeDemux serves the demux on the given abstract names (without the
// leading '@'; DefaultDemuxNames normally). Each name gets its own
// listener on the shared accept loop, so peer checks and connection
// limits apply; all names share one set of clients. Clients do not
// survive a re-exec (the listeners do): libmctp clients see a
// disconnect and reconnect.
func (s *Server) ServeDemux(names []string, opts DemuxOptions) (*Demux, error) {
	if opts.Router == nil {
		return nil, errors.New("demux: no router")
	}
	if len(names) == 0 {
		return nil, errors.New("demux: no socket names")
	}
	if opts.QueueMsgs <= 0 {
		opts.QueueMsgs = DefaultDemuxQueueMsgs
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultDemuxQueueBytes
	}
	hdr := 2
	if opts.Tagged {
		hdr = 3
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultDemuxMaxMessage + hdr - 2
	}
	d := &Demux{
		s:       s,
		log:     s.log.With("frontend", "demux"),
		opts:    opts,
		hdr:     hdr,
		clients: make(map[byte][]*demuxClient),
		byID:    make(map[DemuxClientID]*demuxClient),
	}
	d.dropLog.every = time.Second
	d.shortMsg = [2]string{
		fmt.Sprintf("demux: client message under %d bytes; dropped", hdr),
		fmt.Sprintf("demux: message under %d bytes for clients dropped", hdr),
	}
	for _, name := range names {
		addr := "@" + strings.TrimPrefix(name, "@")
		a, err := unixsock.Accept(s.inherit, s.log, "demux", "unixpacket", SocketSpec{Addr: addr},
			opts.StreamOptions, d.serve, nil)
		if err == nil {
			err = s.Add(acceptorFront{a})
			if err != nil {
				a.Close(context.Background(), false)
			}
		}
		if err != nil {
			d.Close(context.Background())
			return nil, err
		}
		d.accs = append(d.accs, a)
	}
	return d, nil
}

// Addrs returns the socket addresses served ("@mctp-mux", ...).
func (d *Demux) Addrs() []string {
	out := make([]string, len(d.accs))
	for i, a := range d.accs {
		out[i] = a.Addr()
	}
	return out
}

// Close stops accepting and disconnects every client, waiting up to
// ctx's deadline for their goroutines.
func (d *Demux) Close(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, a := range d.accs {
		wg.Add(1)
		go func() { defer wg.Done(); a.Close(ctx, false) }()
	}
	wg.Wait()
	return nil
}

// Tagged reports whether frames carry a tag byte (DemuxOptions.Tagged).
func (d *Demux) Tagged() bool { return d.hdr == 3 }

// Registered returns the number of clients registered for exactly typ.
func (d *Demux) Registered(typ byte) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.clients[typ])
}

// Stats returns the current counters.
func (d *Demux) Stats() DemuxStats {
	st := DemuxStats{
		Registrations: d.registrations.Load(),
		In:            d.in.Load(),
		Out:           d.out.Load(),
		Delivered:     d.delivered.Load(),
		DropShort:     d.dropShort.Load(),
		DropTooBig:    d.dropTooBig.Load(),
		DropRoute:     d.dropRoute.Load(),
		DropNoClient:  d.dropNoClient.Load(),
		DropOverflow:  d.dropQ.Load(),
		Overflows:     d.overflows.Load(),
		Clients:       map[byte]int{},
	}
	d.mu.RLock()
	for t, cs := range d.clients {
		if len(cs) > 0 {
			st.Clients[t] = len(cs)
		}
	}
	d.mu.RUnlock()
	return st
}

// Deliver queues [addr][typ][body] for every client registered for
// exactly typ, and returns how many it reached. It never blocks on a
// client and does not keep body, so the caller may reuse it. It is safe
// for concurrent use.
func (d *Demux) Deliver(addr, typ byte, body []byte) int {
	return d.DeliverTag(addr, 0, typ, body)
}

// DeliverTag is Deliver with a tag byte: on a tagged demux the frames
// are [addr][tag][typ][body]; on a plain one the tag is not part of the
// frame and is ignored.
func (d *Demux) DeliverTag(addr, tag, typ byte, body []byte) int {
	return d.deliver(d.frame(addr, tag, typ, body))
}

// DeliverTo queues [addr][tag][typ][body] (the tag only on a tagged
// demux) for the one client id, whatever type it registered, and
// reports whether that client took it: false when it is gone or its
// queue overflowed. body is not kept.
func (d *Demux) DeliverTo(id DemuxClientID, addr, tag, typ byte, body []byte) bool {
	d.mu.RLock()
	c := d.byID[id]
	d.mu.RUnlock()
	if c == nil || !c.enqueue(d.frame(addr, tag, typ, body)) {
		return false
	}
	d.delivered.Add(1)
	return true
}

// frame lays a message out for clients in one fresh slice.
func (d *Demux) frame(addr, tag, typ byte, body []byte) []byte {
	frame := make([]byte, d.hdr+len(body))
	frame[0], frame[d.hdr-1] = addr, typ
	if d.hdr == 3 {
		frame[1] = tag
	}
	copy(frame[d.hdr:], body)
	return frame
}

// DeliverFrame is Deliver for a message already laid out as
// [addr][type][body] ([addr][tag][type][body] on a tagged demux);
// shorter frames are dropped. b is not kept.
func (d *Demux) DeliverFrame(b []byte) int {
	if len(b) < d.hdr {
		d.dropShort.Add(1)
		d.dropLog.log(d.log, d.shortMsg[1], "len", len(b))
		return 0
	}
	return d.deliver(bytes.Clone(b))
}

// deliver fans frame out. frame is shared, read-only, by every queue.
func (d *Demux) deliver(frame []byte) int {
	n := 0
	typ := frame[d.hdr-1]
	d.mu.RLock()
	for _, c := range d.clients[typ] {
		if c.enqueue(frame) {
			n++
		}
	}
	d.mu.RUnlock()
	if n == 0 {
		d.dropNoClient.Add(1)
		d.dropLog.log(d.log, "demux: no client for message type; dropped", "type", typ, "addr", frame[0], "len", len(frame)-d.hdr)
		return 0
	}
	d.delivered.Add(1)
	return n
}

// ErrDemuxShort is ParseDemuxFrame's error for a frame shorter than
// its header.
var ErrDemuxShort = errors.New("demux: frame shorter than its header")

// ParseDemuxFrame splits a demux frame, [addr][type][body] or, tagged,
// [addr][tag][type][body]. Body aliases b; Client is left zero.
func ParseDemuxFrame(b []byte, tagged bool) (DemuxMessage, error) {
	if tagged {
		if len(b) < 3 {
			return DemuxMessage{}, fmt.Errorf("%w: %d of 3 bytes", ErrDemuxShort, len(b))
		}
		return DemuxMessage{Addr: b[0], Tag: b[1], Type: b[2], Body: b[3:]}, nil
	}
	if len(b) < 2 {
		return DemuxMessage{}, fmt.Errorf("%w: %d of 2 bytes", ErrDemuxShort, len(b))
	}
	return DemuxMessage{Addr: b[0], Type: b[1], Body: b[2:]}, nil
}

// serve runs one client connection: registration, then its messages.
func (d *Demux) serve(ctx context.Context, conn *net.UnixConn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	cred, _ := unixsock.PeerCred(conn)
	buf := make([]byte, d.opts.MaxMessage)

	n, _, _, _, err := conn.ReadMsgUnix(buf, nil)
	if err != nil || n == 0 {
		d.log.Debug("demux: client left before registering", "pid", cred.PID, "err", err)
		return
	}
	typ := buf[0]
	if typ == 0 {
		d.log.Info("demux: client registered type 0; closing it", "pid", cred.PID, "uid", cred.UID)
		return
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		d.log.Error("demux: client socket unusable", "pid", cred.PID, "err", err)
		return
	}
	c := &demuxClient{
		d: d, conn: conn, typ: typ, pid: cred.PID, rc: rc,
		id:   DemuxClientID(d.lastID.Add(1)),
		wake: make(chan struct{}, 1),
		dead: make(chan struct{}),
	}
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
	for {
		n, _, flags, _, err := conn.ReadMsgUnix(buf, nil)
		if err != nil {
			if errors.Is(err, syscall.ECONNRESET) && !reset {
				// The client closed with messages to it still unread.
				// Linux reports that once, ahead of the messages the
				// client sent before closing: read those before leaving.
				reset = true
				continue
			}
			switch {
			case errors.Is(err, net.ErrClosed) || c.killed():
				// We closed it: overflow, shutdown, a failed write.
			case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
				// A client closing is no failure.
				d.log.Debug("demux: client disconnected", "type", typ, "pid", cred.PID, "err", err)
			default:
				d.log.Info("demux: client read failed; disconnecting", "type", typ, "pid", cred.PID, "err", err)
			}
			return
		}
		if n == 0 {
			// libmctp treats a zero-length datagram (or EOF) as a
			// disconnect; it is how a client closes normally.
			d.log.Debug("demux: client disconnected", "type", typ, "pid", cred.PID)
			return
		}
		if flags&syscall.MSG_TRUNC != 0 {
			d.dropTooBig.Add(1)
			d.dropLog.log(d.log, "demux: client message too big; dropped", "type", typ, "pid", cred.PID, "max", d.opts.MaxMessage)
			continue
		}
		m, perr := ParseDemuxFrame(buf[:n], d.Tagged())
		if perr != nil {
			d.dropShort.Add(1)
			d.dropLog.log(d.log, d.shortMsg[0], "type", typ, "pid", cred.PID, "len", n)
			continue
		}
		d.in.Add(1)
		m.Body = bytes.Clone(m.Body)
		if m.Body == nil {
			m.Body = []byte{}
		}
		m.Client = c.id
		if err := d.opts.Router.Send(ctx, d, m); err != nil {
			d.dropRoute.Add(1)
			d.dropLog.log(d.log, "demux: router dropped client message", "type", m.Type, "addr", m.Addr, "tag", m.Tag, "pid", cred.PID, "err", err)
		}
	}
}

func (d *Demux) register(c *demuxClient) {
	d.mu.Lock()
	d.clients[c.typ] = append(d.clients[c.typ], c)
	d.byID[c.id] = c
	d.mu.Unlock()
	d.registrations.Add(1)
}

func (d *Demux) unregister(c *demuxClient) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.byID, c.id)
	cs := d.clients[c.typ]
	for i, x := range cs {
		if x == c {
			// A fresh slice, so that a type that once had many clients
			// does not keep a large backing array.
			n := make([]*demuxClient, 0, len(cs)-1)
			n = append(append(n, cs[:i]...), cs[i+1:]...)
			if len(n) == 0 {
				delete(d.clients, c.typ)
			} else {
				d.clients[c.typ] = n
			}
			return
		}
	}
}

// demuxClient is one registered connection and its outgoing queue.
type demuxClient struct {
	d    *Demux
	conn *net.UnixConn
	typ  byte
	pid  int32
	id   DemuxClientID

	mu      sync.Mutex
	q       [][]byte
	spare   [][]byte // writer-owned, reused as the next queue
	msgs    int      // queued plus being written by the writer
	bytes   int
	writing bool // enqueue or the writer is writing to conn
	closed  bool
	rc      syscall.RawConn

	wake     chan struct{}
	dead     chan struct{}
	killOnce sync.Once
}

// enqueue hands frame to the client without blocking. When nothing is
// queued or being written it tries one non-blocking write straight away,
// which saves a goroutine wake-up per message on an idle client; on
// EAGAIN, or when messages are already waiting, the frame is queued for
// the writer. On overflow the client is disconnected and its queue
// discarded.
func (c *demuxClient) enqueue(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if !c.writing && len(c.q) == 0 {
		c.writing = true
		c.mu.Unlock()
		done, err := c.tryWrite(frame)
		c.mu.Lock()
		c.writing = false
		switch {
		case err != nil:
			c.mu.Unlock()
			c.writeFailed(err)
			return false
		case done:
			more := len(c.q) > 0
			c.mu.Unlock()
			c.d.out.Add(1)
			if more {
				c.signal()
			}
			return true
		case c.closed:
			c.mu.Unlock()
			return false
		}
		// EAGAIN: queue it, ahead of anything queued meanwhile.
		c.q = append(c.q, nil)
		copy(c.q[1:], c.q)
		c.q[0] = frame
		c.msgs++
		c.bytes += len(frame)
		c.mu.Unlock()
		c.signal()
		return true
	}
	if c.msgs+1 > c.d.opts.QueueMsgs || c.bytes+len(frame) > c.d.opts.QueueBytes {
		lost := c.msgs + 1
		c.closed = true
		c.q = nil
		c.mu.Unlock()
		c.d.overflows.Add(1)
		c.d.dropQ.Add(uint64(lost))
		c.d.log.Warn("demux: client queue overflow; disconnecting it",
			"type", c.typ, "pid", c.pid, "lost", lost,
			"max_msgs", c.d.opts.QueueMsgs, "max_bytes", c.d.opts.QueueBytes)
		c.kill()
		return false
	}
	c.q = append(c.q, frame)
	c.msgs++
	c.bytes += len(frame)
	c.mu.Unlock()
	c.signal()
	return true
}

func (c *demuxClient) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// tryWrite makes one non-blocking write attempt. done is false when the
// socket buffer is full.
func (c *demuxClient) tryWrite(frame []byte) (done bool, err error) {
	var werr error
	if cerr := c.rc.Write(func(fd uintptr) bool {
		for {
			_, werr = syscall.Write(int(fd), frame)
			if werr != syscall.EINTR {
				break
			}
		}
		return true // never wait: the caller must not block
	}); cerr != nil {
		return false, cerr
	}
	if werr == syscall.EAGAIN {
		return false, nil
	}
	if werr != nil {
		return false, fmt.Errorf("write: %w", werr)
	}
	return true, nil
}

func (c *demuxClient) writeFailed(err error) {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		// The client closed its end. Stop writing to it but leave the
		// connection to the reader: what the client sent before closing
		// is still queued for us, and the reader ends at its EOF.
		c.mu.Lock()
		c.closed = true
		c.q = nil
		c.mu.Unlock()
		return
	}
	if !c.killed() {
		c.d.log.Info("demux: write to client failed; disconnecting", "type", c.typ, "pid", c.pid, "err", err)
	}
	c.kill()
}

// write drains the queue to the socket until the client dies. It holds
// the writing token while it writes, so that enqueue's direct writes
// never overtake queued messages.
func (c *demuxClient) write() {
	for {
		select {
		case <-c.wake:
		case <-c.dead:
			return
		}
		for {
			c.mu.Lock()
			if c.closed || c.writing || len(c.q) == 0 {
				c.mu.Unlock()
				break
			}
			batch := c.q
			c.q = c.spare[:0]
			c.writing = true
			c.mu.Unlock()
			for i, m := range batch {
				if _, err := c.conn.Write(m); err != nil {
					c.writeFailed(err)
					return
				}
				c.d.out.Add(1)
				batch[i] = nil
				c.mu.Lock()
				c.msgs--
				c.bytes -= len(m)
				c.mu.Unlock()
			}
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			c.spare = batch
		}
	}
}

// kill closes the connection once; the reader and writer then end.
func (c *demuxClient) kill() {
	c.killOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.q = nil
		c.mu.Unlock()
		close(c.dead)
		c.conn.Close()
	})
}

func (c *demuxClient) killed() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
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

// acceptorFront runs a bare Acceptor as a front end.
type acceptorFront struct{ *unixsock.Acceptor }

func (a acceptorFront) Stop(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	return a.Close(ctx, handoff)
}
