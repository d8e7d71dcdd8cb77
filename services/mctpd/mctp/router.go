package mctp

// Routing: the router between the local clients (Clients, the demuxes)
// and the bindings.
//
// A client's message to a remote EID leaves with TO=1 and tag 0, as
// libmctp's demux daemon sends it, so existing clients produce identical
// wire bytes; the response comes back on tag 0 too and the clients match
// it themselves (by type and instance ID), not by the tag. It leaves on
// the binding the first matching route names, or else on the first
// binding (the default route). A message to the local EID loops back:
// control requests to the responder, the rest to the clients of its type.
//
// Back-pressure: a local client's message is never dropped because its
// binding's queue is full. On a binding.Backpressure binding (serial,
// I2C) Send waits for room, so the demux reads nothing more from that
// client meanwhile and its socket pushes back, as libmctp's blocking
// write does; clients whose messages take other bindings, or loop back,
// go on unhindered. The wait ends in a drop (DropSendTimeout) only when
// the binding makes no progress for Options.SendTimeout. Control replies
// and forwarded packets, which leave from a binding's receive path,
// never wait.
//
// Sequence numbers continue from one message to the next on each
// binding, as libmctp's per-bus tx_seq does, for the messages this
// endpoint originates (forwarded packets keep theirs).
//
// Received packets pass the header checks and drop rules, then go to the
// bridge (bridge.go) when they are for another endpoint, else through
// reassembly to the control responder or the clients (deliver). Tagged
// clients' requests and responses: tagged.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// Route sends destinations First..Last over one binding.
type Route struct {
	First, Last byte
	Binding     string
}

// ParseRoute parses "EID[-EID]=BINDING".
func ParseRoute(s string) (Route, error) {
	eids, name, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Route{}, fmt.Errorf("route %q: want EID[-EID]=BINDING", s)
	}
	lo, hi, rng := strings.Cut(eids, "-")
	if !rng {
		hi = lo
	}
	f, err := parseEID(lo)
	if err != nil {
		return Route{}, fmt.Errorf("route %q: %w", s, err)
	}
	l, err := parseEID(hi)
	if err != nil {
		return Route{}, fmt.Errorf("route %q: %w", s, err)
	}
	if l < f {
		return Route{}, fmt.Errorf("route %q: range %d-%d is empty", s, f, l)
	}
	return Route{First: f, Last: l, Binding: name}, nil
}

func parseEID(s string) (byte, error) {
	v, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("EID %q: %w", s, err)
	}
	return byte(v), nil
}

// Options configures a Router.
type Options struct {
	// EID is the local endpoint ID; it must satisfy ValidEID.
	EID byte
	// Bindings are the physical media; at least one. With two or more
	// the router is also a bridge: see Router.
	Bindings []binding.Binding
	// Routes are static routes, first match wins. Client messages to a
	// destination no route covers take the first binding (the default
	// route).
	Routes []Route
	// UUID answers Get UUID.
	UUID [16]byte
	// Reassembly tunes the reassembler (timeout, contexts, clock).
	Reassembly ReassemblerOptions
	// Tags tunes the tag allocator of tagged clients (timeout, clock).
	Tags TagOptions
	// Clients are the libmctp-format clients (the plain demux), and
	// Tagged the tag-aware ones (the tagged demux; see tagged.go). Either
	// may be nil when there are none. The router delivers received
	// messages to them; their messages come in through Send and
	// SendTagged.
	Clients Clients
	Tagged  Clients
	// SendTimeout is how long a local client's message waits for a
	// binding that makes no progress (a queue that does not drain, a
	// link that stays down) before it is dropped as DropSendTimeout;
	// 0 means DefaultSendTimeout. A binding that drains restarts it.
	SendTimeout time.Duration
	Log         *slog.Logger
}

// DefaultSendTimeout is Options.SendTimeout's default: longer than the
// serial binding's write timeout and a reopen of a vanished tty, so that
// a short outage costs nothing.
const DefaultSendTimeout = 10 * time.Second

// TypeControlReplies is the registration byte under which demux
// clients receive control messages that are not requests to this
// endpoint: replies from remote endpoints and from the local responder.
// The demux cannot register type 0 (libmctp closes such a client), and
// 0x80 - the control type with the integrity-check bit, which control
// messages never carry - is otherwise unused, so the frame a client
// receives is [source EID][0x80][control header and data].
const TypeControlReplies = 0x80

// Router is mctpd's MCTP core: it routes messages between its local
// clients and the bindings (router.go), gives tagged clients their tags
// (tagged.go) and, with two or more bindings, bridges them (bridge.go).
// Its clients are fixed at construction (Options.Clients,
// Options.Tagged).
type Router struct {
	log      *slog.Logger
	eid      atomic.Uint32
	bindings map[string]binding.Binding
	order    []string
	list     []binding.Binding
	index    map[string]int
	routes   []Route
	reasm    *Reassembler
	resp     Responder
	// forwarded counts packets per (in, out) binding pair, at
	// in*len(list)+out, so the receive path takes no lock.
	forwarded []atomic.Uint64
	// tx, one per binding, keeps the packets of one locally originated
	// message contiguous on that binding (clients send concurrently, all
	// with tag 0, and interleaved packets would corrupt the far end's
	// reassembly) and holds the binding's next sequence number. Its lock
	// is held only while a message is queued, never across a wait for
	// room, so the receive path's control replies never stall behind a
	// waiting client. Forwarded packets do not take it: each is whole on
	// its own and keyed by another source.
	tx          []txState
	sendTimeout time.Duration

	tags *Tags
	// plain and tagged are Options.Clients and Options.Tagged, set once
	// by New and only read afterwards.
	plain, tagged Clients

	pktIn, pktOut, msgIn, msgOut, sendWaits atomic.Uint64
	dropMu                                  sync.Mutex
	drops                                   map[string]uint64
}

// txState is one binding's send lock and next sequence number.
type txState struct {
	mu  sync.Mutex
	seq uint8
}

// New returns a Router; Run starts its bindings.
func New(opts Options) (*Router, error) {
	if !ValidEID(opts.EID) {
		return nil, fmt.Errorf("mctp: EID %d is not valid (0, 1-7 and 255 are reserved)", opts.EID)
	}
	if len(opts.Bindings) == 0 {
		return nil, errors.New("mctp: no binding")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &Router{log: opts.Log, bindings: map[string]binding.Binding{}, index: map[string]int{}, routes: opts.Routes, drops: map[string]uint64{},
		plain: opts.Clients, tagged: opts.Tagged}
	for _, b := range opts.Bindings {
		if _, dup := r.bindings[b.Name()]; dup {
			return nil, fmt.Errorf("mctp: binding %q given twice", b.Name())
		}
		if b.MTU() <= 0 {
			return nil, fmt.Errorf("mctp: binding %q: MTU %d", b.Name(), b.MTU())
		}
		r.bindings[b.Name()] = b
		r.index[b.Name()] = len(r.order)
		r.order = append(r.order, b.Name())
		r.list = append(r.list, b)
	}
	for _, rt := range opts.Routes {
		if _, ok := r.bindings[rt.Binding]; !ok {
			return nil, fmt.Errorf("mctp: route %d-%d: no binding %q (bindings: %s)", rt.First, rt.Last, rt.Binding, strings.Join(r.order, ", "))
		}
	}
	r.forwarded = make([]atomic.Uint64, len(r.list)*len(r.list))
	r.tx = make([]txState, len(r.list))
	r.sendTimeout = opts.SendTimeout
	if r.sendTimeout <= 0 {
		r.sendTimeout = DefaultSendTimeout
	}
	r.eid.Store(uint32(opts.EID))
	ro := opts.Reassembly
	if ro.Log == nil {
		ro.Log = opts.Log
	}
	ro.Drop = r.drop
	r.reasm = NewReassembler(ro)
	r.tags = NewTags(opts.Tags)
	r.resp = Responder{
		EID: r.EID,
		SetEID: func(e byte) {
			r.log.Info("mctp: local EID set", "eid", e)
			r.SetEID(e)
		},
		Types: r.clientTypes,
		UUID:  opts.UUID,
	}
	return r, nil
}

// EID returns the local EID.
func (r *Router) EID() byte { return byte(r.eid.Load()) }

// SetEID changes the local EID; it must satisfy ValidEID.
func (r *Router) SetEID(e byte) { r.eid.Store(uint32(e)) }

// UUID returns the endpoint's UUID.
func (r *Router) UUID() [16]byte { return r.resp.UUID }

func (r *Router) drop(reason string) {
	r.dropMu.Lock()
	r.drops[reason]++
	r.dropMu.Unlock()
}

// clientTypes lists the types local clients registered, sorted.
func (r *Router) clientTypes() []byte {
	seen := map[byte]bool{}
	for _, c := range []Clients{r.plain, r.tagged} {
		if c == nil {
			continue
		}
		for _, t := range c.Types() {
			if t != TypeControlReplies {
				seen[t] = true
			}
		}
	}
	var ts []byte
	for t := range seen {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// ErrShortMessage is the error for a client's message to the local EID
// that is only a type byte: libmctp's demux daemon delivers no message
// under 2 bytes, so neither does mctpd.
var ErrShortMessage = errors.New("mctp: message of a type byte only is not delivered")

// Send sends a message from a libmctp-format client (the plain demux's
// sender): to the local EID it is looped back (control requests to the
// responder), to any other it goes out on the routed binding, waiting
// while that binding is busy (see the back-pressure note above). It is
// safe for concurrent use; it does not keep m.Body, which the demux
// reuses once Send returns.
func (r *Router) Send(ctx context.Context, m ClientMessage) error {
	own := r.EID()
	if m.Addr == own && len(m.Body) == 0 {
		r.drop(DropShortMessage)
		return ErrShortMessage
	}
	if m.Addr == own && m.Type != TypeControl {
		// Loopback of a non-control message: the demux copies the body
		// into the frames it queues, so building the message first
		// would only add a copy per message. It is a request with tag
		// 0, as it would be on the wire.
		r.deliver(own, true, 0, m.Type, m.Body)
		return nil
	}
	msg := make([]byte, 1+len(m.Body))
	msg[0] = m.Type
	copy(msg[1:], m.Body)
	if m.Addr == own {
		r.inbound(nil, own, true, 0, msg)
		return nil
	}
	return r.transmit(ctx, r.route(m.Addr), m.Addr, own, true, 0, msg, true)
}

// inbound handles a complete message from src: the control responder
// answers requests to it (on binding b, or locally when b is nil), and
// the clients get everything else. A message of its type byte alone is dropped, as libmctp's
// demux daemon drops every message under 2 bytes.
func (r *Router) inbound(b binding.Binding, src byte, to bool, tag uint8, msg []byte) {
	if len(msg) < 2 {
		r.drop(DropShortMessage)
		r.log.Debug("mctp: message of a type byte only dropped", "src", src, "len", len(msg))
		return
	}
	if to && IsRequest(msg) && !IsTransportCommand(msg) {
		reply := r.resp.Respond(msg)
		if b == nil {
			r.msgOut.Add(1)
			r.deliver(src, false, tag, reply[0], reply[1:])
			return
		}
		// The receive path never waits: a reply the binding cannot
		// take now is dropped, and the requester retries.
		if err := r.transmit(context.Background(), b, src, r.EID(), false, tag, reply, false); err != nil {
			r.log.Warn("mctp: control reply not sent", "dest", src, "err", err)
		}
		return
	}
	r.deliver(src, to, tag, msg[0], msg[1:])
}

// deliver hands an inbound message (its type and the bytes after it) to
// the clients of its type; control messages go to TypeControlReplies
// clients. A response whose tag a tagged client was allocated goes to
// that client alone (deliverTagged). Other responses go to the
// libmctp-format clients, requests to those and to the tagged clients
// of the type.
func (r *Router) deliver(src byte, to bool, tag uint8, typ byte, body []byte) {
	if typ == TypeControl {
		typ = TypeControlReplies
	}
	n, claimed := r.deliverTagged(src, to, tag, typ, body)
	if claimed {
		return
	}
	// The plain demux counts and logs a message nobody took; when a
	// tagged client took it, it is not offered to an empty type.
	if r.plain != nil && (n == 0 || r.plain.Registered(typ) > 0) {
		n += r.plain.DeliverTag(src, 0, typ, body)
	}
	if n == 0 {
		r.drop(DropNoClient)
	}
}

// route picks the binding for a locally originated message: the first
// matching route, else the default route (the first binding).
func (r *Router) route(dest byte) binding.Binding {
	if rt, ok := r.match(dest); ok {
		return r.bindings[rt.Binding]
	}
	return r.list[0]
}

func (r *Router) match(dest byte) (Route, bool) {
	for _, rt := range r.routes {
		if dest >= rt.First && dest <= rt.Last {
			return rt, true
		}
	}
	return Route{}, false
}

// ErrTooBig is transmit's error for a message over MaxMessage, which no
// receiver would reassemble: it is never put on the wire.
var ErrTooBig = fmt.Errorf("mctp: message over the %d-byte maximum", MaxMessage)

// transmit fragments msg at b's MTU, numbers the packets from the
// binding's sequence and queues them. With wait (a local client's
// message) on a binding.Backpressure binding it waits while the binding
// is busy or its link down, until the binding has made no progress for
// the send timeout or ctx ends; without, a busy binding is a drop.
func (r *Router) transmit(ctx context.Context, b binding.Binding, dest, src byte, to bool, tag uint8, msg []byte, wait bool) error {
	if len(msg) > MaxMessage {
		r.drop(DropTxTooBig)
		return fmt.Errorf("%w: %d bytes to EID %d not sent", ErrTooBig, len(msg), dest)
	}
	pkts := Fragment(dest, src, to, tag, msg, b.MTU())
	tx := &r.tx[r.index[b.Name()]]
	bp, ok := b.(binding.Backpressure)
	if !wait || !ok {
		if err := r.queue(tx, b, pkts); err != nil {
			r.drop(DropSend)
			return fmt.Errorf("mctp: send on %s: %w", b.Name(), err)
		}
		return nil
	}
	var timer *time.Timer
	for {
		room := bp.Room()
		err := r.queue(tx, b, pkts)
		if err == nil {
			return nil
		}
		if !errors.Is(err, binding.ErrBusy) && !errors.Is(err, binding.ErrLinkDown) {
			r.drop(DropSend)
			return fmt.Errorf("mctp: send on %s: %w", b.Name(), err)
		}
		if timer == nil {
			r.sendWaits.Add(1)
			timer = time.NewTimer(r.sendTimeout)
			defer timer.Stop()
		}
		select {
		case <-room:
			// The binding moved: the timeout counts from here.
			timer.Reset(r.sendTimeout)
		case <-timer.C:
			r.drop(DropSendTimeout)
			return fmt.Errorf("mctp: send on %s: no progress for %v: %w", b.Name(), r.sendTimeout, err)
		case <-ctx.Done():
			r.drop(DropSend)
			return fmt.Errorf("mctp: send on %s: %w (%w)", b.Name(), ctx.Err(), err)
		}
	}
}

// queue numbers pkts from the binding's sequence and hands them to b,
// under tx's lock and without waiting. The sequence advances by the
// packets b took.
func (r *Router) queue(tx *txState, b binding.Binding, pkts [][]byte) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	setSeq(pkts, tx.seq)
	if bs, ok := b.(binding.BatchSender); ok {
		// One hand-off for the whole message, all packets or none.
		if err := bs.SendBatch(pkts); err != nil {
			return err
		}
		tx.seq += uint8(len(pkts))
		r.pktOut.Add(uint64(len(pkts)))
		r.msgOut.Add(1)
		return nil
	}
	for _, p := range pkts {
		if err := b.Send(p); err != nil {
			return err
		}
		tx.seq++
		r.pktOut.Add(1)
	}
	r.msgOut.Add(1)
	return nil
}

// setSeq renumbers packets in place from seq, mod 4.
func setSeq(pkts [][]byte, seq uint8) {
	for i, p := range pkts {
		p[3] = p[3]&^(seqMask<<seqShift) | (seq+uint8(i))&seqMask<<seqShift
	}
}

// Run receives packets from every binding until ctx ends.
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(r.order))
	for i, name := range r.order {
		b := r.bindings[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if bb, ok := b.(binding.BatchBinding); ok {
				err = bb.RunBatches(ctx, func(pkts [][]byte) { r.ReceiveBatch(b, pkts) })
			} else {
				err = b.Run(ctx, func(pkt []byte) { r.Receive(b, pkt) })
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				errs[i] = fmt.Errorf("mctp: binding %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Receive handles one packet from binding b: header checks, drop
// rules, reassembly, then the control responder or the clients.
func (r *Router) Receive(b binding.Binding, pkt []byte) {
	r.receive(b, pkt, time.Time{})
}

// ReceiveBatch handles packets that one read of binding b completed, in
// order, as Receive does, with one clock reading for all of them (see
// Reassembler.AddAt).
func (r *Router) ReceiveBatch(b binding.Binding, pkts [][]byte) {
	if len(pkts) == 0 {
		return
	}
	now := r.reasm.Now()
	for _, p := range pkts {
		r.receive(b, p, now)
	}
}

// receive handles one packet; a zero now makes reassembly read the clock.
func (r *Router) receive(b binding.Binding, pkt []byte, now time.Time) {
	r.pktIn.Add(1)
	h, err := ParseHeader(pkt)
	if err != nil {
		if errors.Is(err, ErrShortPacket) {
			r.drop(DropShort)
		} else {
			r.drop(DropVersion)
		}
		return
	}
	own := r.EID()
	if h.Src == BroadcastEID {
		r.drop(DropSrcBroadcast)
		return
	}
	if h.Dest != own && h.Dest != NullEID && h.Dest != BroadcastEID {
		if len(r.list) == 1 {
			r.drop(DropDest)
			return
		}
		r.forward(b, h, pkt)
		return
	}
	var msg []byte
	if now.IsZero() {
		msg = r.reasm.Add(h, pkt[HeaderLen:])
	} else {
		msg = r.reasm.AddAt(h, pkt[HeaderLen:], now)
	}
	if msg == nil {
		return
	}
	r.msgIn.Add(1)
	r.inbound(b, h.Src, h.TO, h.Tag, msg)
}

// Stats are the router's counters for stats-get.
type Stats struct {
	PacketsIn uint64 `json:"packets-in"`
	// SendWaits counts local clients' messages that waited for a busy
	// binding (and were not dropped for it: see DropSendTimeout).
	SendWaits   uint64            `json:"send-waits"`
	PacketsOut  uint64            `json:"packets-out"`
	MessagesIn  uint64            `json:"messages-in"`
	MessagesOut uint64            `json:"messages-out"`
	Drops       map[string]uint64 `json:"drops"`
	Reassembly  int               `json:"reassembly-pending"`
	// TagsOutstanding counts tags allocated to tagged clients' requests
	// and not yet answered, expired or released.
	TagsOutstanding int                          `json:"tags-outstanding"`
	Bindings        map[string]map[string]uint64 `json:"bindings"`
	// PacketsForwarded is the sum of Forwarded; forwarded packets count
	// in PacketsIn but not in PacketsOut, which is what this endpoint
	// originates.
	PacketsForwarded uint64 `json:"packets-forwarded"`
	// Forwarded has one entry per ordered pair of distinct bindings
	// (none with a single binding), in command-line order.
	Forwarded []ForwardStat `json:"forwarded"`
}

// Stats returns the current counters.
func (r *Router) Stats() Stats {
	st := Stats{
		PacketsIn:       r.pktIn.Load(),
		PacketsOut:      r.pktOut.Load(),
		SendWaits:       r.sendWaits.Load(),
		MessagesIn:      r.msgIn.Load(),
		MessagesOut:     r.msgOut.Load(),
		Drops:           map[string]uint64{},
		Reassembly:      r.reasm.Pending(),
		TagsOutstanding: r.tags.Outstanding(),
		Bindings:        map[string]map[string]uint64{},
		Forwarded:       []ForwardStat{},
	}
	r.dropMu.Lock()
	for k, v := range r.drops {
		st.Drops[k] = v
	}
	r.dropMu.Unlock()
	for n, b := range r.bindings {
		st.Bindings[n] = b.Stats()
	}
	for i, in := range r.order {
		for o, out := range r.order {
			if i == o {
				continue
			}
			n := r.forwarded[i*len(r.list)+o].Load()
			st.PacketsForwarded += n
			st.Forwarded = append(st.Forwarded, ForwardStat{In: in, Out: out, Packets: n})
		}
	}
	return st
}

// Routes returns the static routes in match order, then the default
// route for client messages (First 0, Last 255, the first binding).
// Forwarded packets do not take the default route; see
// BindingInfo.ForwardTo.
func (r *Router) Routes() []Route {
	out := append([]Route(nil), r.routes...)
	return append(out, Route{First: 0, Last: 255, Binding: r.order[0]})
}

// Bindings returns the binding names in the order given.
func (r *Router) Bindings() []string { return append([]string(nil), r.order...) }

// BindingInfo describes one binding for endpoints-get and routes-get.
type BindingInfo struct {
	Name string `json:"name"`
	MTU  int    `json:"mtu"`
	// Default marks the binding of the default route, which client
	// messages without a matching route take.
	Default bool `json:"default"`
	// ForwardTo is where packets received on this binding for an
	// endpoint no route covers are forwarded: the other binding of a
	// two-binding bridge, else empty (they are dropped as no-route, or
	// as dest-not-local with a single binding).
	ForwardTo string `json:"forward-to"`
}

// BindingInfo returns the bindings in the order given.
func (r *Router) BindingInfo() []BindingInfo {
	out := make([]BindingInfo, len(r.list))
	for i, b := range r.list {
		out[i] = BindingInfo{Name: b.Name(), MTU: b.MTU(), Default: i == 0}
		if len(r.list) == 2 {
			out[i].ForwardTo = r.order[1-i]
		}
	}
	return out
}
