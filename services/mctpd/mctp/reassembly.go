package mctp

import (
	"log/slog"
	"sync"
	"time"
)

// Reassembly defaults. libmctp keeps contexts forever; a lost EOM would
// then pin memory, so tickbox expires them and bounds their number.
const (
	DefaultReassemblyTimeout = 6 * time.Second
	DefaultMaxContexts       = 16
)

// Drop reasons, the keys of the drop counters in stats-get.
const (
	DropShort        = "short"          // under the 4-byte header
	DropVersion      = "version"        // header version not 1
	DropSrcBroadcast = "src-broadcast"  // source EID 0xFF
	DropDest         = "dest-not-local" // dest not own, 0 or 0xFF, and no other binding to forward to
	DropNoContext    = "no-context"     // non-SOM packet without a message in progress
	DropSeq          = "sequence"       // sequence number not previous+1 mod 4
	DropMiddleSize   = "middle-size"    // middle packet size differs from the SOM's
	DropEOMSize      = "eom-size"       // EOM packet larger than the SOM's
	DropTooBig       = "too-big"        // message over 64 KiB
	DropRestarted    = "restarted"      // partial message replaced by a new SOM
	DropTimeout      = "timeout"        // partial message older than the timeout
	DropEvicted      = "evicted"        // partial message evicted for a new one
	DropEmpty        = "empty"          // message without a type byte
	DropNoRoute      = "no-route"       // no route for a packet to forward (bridges of three or more bindings)
	DropLoop         = "loop"           // the route leads back out of the binding the packet came in on
	DropMTU          = "mtu"            // forwarded packet's payload over the out binding's MTU
	DropForwardSend  = "forward-send"   // the out binding refused a forwarded packet (queue full, link down)
	DropSend         = "send-error"     // the binding refused a message for good (not busy: bad length, link gone at shutdown, no medium)
	DropSendTimeout  = "send-timeout"   // a local client's message waited longer than the send timeout for a binding that made no progress (link down, line stuck)
	DropTxTooBig     = "tx-too-big"     // a local client's message over 64 KiB, never put on the wire
	DropShortMessage = "short-message"  // a message of its type byte only, inbound or looped back (libmctp delivers none under 2 bytes)
	DropNoClient     = "no-client"      // inbound message no client registered for
	DropTagByte      = "tag-byte"       // tagged client's tag byte neither 0x88 nor 0..7
	DropTagExhausted = "tag-exhausted"  // tagged client's request while every tag for its destination is outstanding
	DropTagOwnerGone = "tag-owner-gone" // response for an allocated tag whose client is gone or overflowed
)

// ReassemblerOptions configures a Reassembler; zero values mean the
// defaults.
type ReassemblerOptions struct {
	Timeout     time.Duration
	MaxContexts int
	// Now is the clock; tests inject one to step over the timeout.
	Now func() time.Time
	Log *slog.Logger
	// Drop is called with the reason of every message or packet
	// dropped by reassembly.
	Drop func(reason string)
}

type reasmKey struct{ src, dest, tag byte }

type reasmCtx struct {
	buf      []byte
	lastSeq  uint8
	fragSize int
	started  time.Time
	order    uint64
}

// Reassembler rebuilds messages from packets with libmctp's rules:
// contexts keyed by (src, dest, tag); a SOM starts (or restarts) a
// message and fixes the fragment size; each further packet has the
// next sequence number mod 4; middle packets are exactly the SOM's
// size and the EOM packet no bigger; any violation drops the message;
// messages over 64 KiB are dropped. It is safe for concurrent use.
type Reassembler struct {
	opts ReassemblerOptions
	mu   sync.Mutex
	ctxs map[reasmKey]*reasmCtx
	next uint64
	// nextExpiry is no later than the oldest context's deadline (zero
	// with no context), so that Add scans for expired contexts only
	// when one may have expired instead of on every packet.
	nextExpiry time.Time
}

// initialCapacity is how many packets' worth of buffer a message in
// progress starts with: enough for 1 KiB at the baseline MTU, so that a
// message of a few KiB grows a couple of times rather than from two
// packets up. MaxMessage bounds it, whatever the fragment size.
const initialCapacity = 16

// NewReassembler returns an empty Reassembler.
func NewReassembler(opts ReassemblerOptions) *Reassembler {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultReassemblyTimeout
	}
	if opts.MaxContexts <= 0 {
		opts.MaxContexts = DefaultMaxContexts
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Drop == nil {
		opts.Drop = func(string) {}
	}
	return &Reassembler{opts: opts, ctxs: map[reasmKey]*reasmCtx{}}
}

// Pending returns the number of messages in progress.
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ctxs)
}

// Now reads the reassembler's clock (ReassemblerOptions.Now).
func (r *Reassembler) Now() time.Time { return r.opts.Now() }

// Add takes one packet's header and payload. It returns the complete
// message (type byte first, a fresh slice) when h is the EOM of a valid
// message, else nil. payload is not kept.
func (r *Reassembler) Add(h Header, payload []byte) []byte {
	return r.AddAt(h, payload, r.opts.Now())
}

// AddAt is Add with the time of arrival given by the caller, read from
// Now: the router reads it once per batch of packets that one read of a
// medium completed, so a packet's time may be early by as long as the
// packets before it in its batch took to handle (microseconds against a
// timeout of seconds). now must not go backwards between calls by more
// than that.
func (r *Reassembler) AddAt(h Header, payload []byte, now time.Time) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.nextExpiry.IsZero() && !now.Before(r.nextExpiry) {
		r.expire(now)
	}
	key := reasmKey{h.Src, h.Dest, h.Tag}
	c := r.ctxs[key]
	if h.SOM {
		if c != nil {
			r.drop(key, DropRestarted)
		}
		if len(payload) > MaxMessage {
			r.opts.Drop(DropTooBig)
			return nil
		}
		if h.EOM {
			return r.finish(append([]byte(nil), payload...))
		}
		r.evictFor()
		if deadline := now.Add(r.opts.Timeout); r.nextExpiry.IsZero() || deadline.Before(r.nextExpiry) {
			r.nextExpiry = deadline
		}
		r.ctxs[key] = &reasmCtx{
			buf:      append(make([]byte, 0, min(MaxMessage, initialCapacity*len(payload))), payload...),
			lastSeq:  h.Seq,
			fragSize: len(payload),
			started:  now,
			order:    r.next,
		}
		r.next++
		return nil
	}
	if c == nil {
		r.opts.Drop(DropNoContext)
		return nil
	}
	if h.Seq != (c.lastSeq+1)&seqMask {
		r.drop(key, DropSeq)
		return nil
	}
	switch {
	case h.EOM && len(payload) > c.fragSize:
		r.drop(key, DropEOMSize)
		return nil
	case !h.EOM && len(payload) != c.fragSize:
		r.drop(key, DropMiddleSize)
		return nil
	case len(c.buf)+len(payload) > MaxMessage:
		r.drop(key, DropTooBig)
		return nil
	}
	c.buf = append(c.buf, payload...)
	c.lastSeq = h.Seq
	if !h.EOM {
		return nil
	}
	delete(r.ctxs, key)
	return r.finish(c.buf)
}

func (r *Reassembler) finish(msg []byte) []byte {
	if len(msg) == 0 {
		r.opts.Drop(DropEmpty)
		return nil
	}
	return msg
}

func (r *Reassembler) drop(key reasmKey, reason string) {
	delete(r.ctxs, key)
	r.opts.Drop(reason)
}

// expire drops contexts older than the timeout and recomputes
// nextExpiry from the ones left.
func (r *Reassembler) expire(now time.Time) {
	r.nextExpiry = time.Time{}
	for k, c := range r.ctxs {
		if now.Sub(c.started) >= r.opts.Timeout {
			r.opts.Log.Info("mctp: reassembly timed out", "src", k.src, "dest", k.dest, "tag", k.tag, "bytes", len(c.buf))
			r.drop(k, DropTimeout)
			continue
		}
		if deadline := c.started.Add(r.opts.Timeout); r.nextExpiry.IsZero() || deadline.Before(r.nextExpiry) {
			r.nextExpiry = deadline
		}
	}
}

// evictFor makes room for one more context by evicting the oldest.
func (r *Reassembler) evictFor() {
	for len(r.ctxs) >= r.opts.MaxContexts {
		var oldest reasmKey
		var order uint64
		first := true
		for k, c := range r.ctxs {
			if first || c.order < order {
				oldest, order, first = k, c.order, false
			}
		}
		r.opts.Log.Warn("mctp: reassembly contexts full, oldest evicted", "src", oldest.src, "dest", oldest.dest, "tag", oldest.tag, "max", r.opts.MaxContexts)
		r.drop(oldest, DropEvicted)
	}
}
