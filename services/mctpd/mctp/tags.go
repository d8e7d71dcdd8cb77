package mctp

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// The tag byte of mctpd's tagged demux frames, [eid][tag byte][type]
// [body], both ways. Its low four bits are the MCTP header's TO bit and
// message tag, as Linux AF_MCTP sockets carry them in the address.
const (
	// TagOwner is the TO bit: set on requests, clear on responses.
	TagOwner = 0x08
	// TagValue masks the message tag, 0..7.
	TagValue = 0x07
	// TagAllocate, from a client, asks the daemon to allocate a tag for
	// a request: the only valid byte with TO set is TagRequest.
	TagAllocate = 0x80
	// TagRequest (0x88) sends a request with a tag the daemon picks;
	// the response, TO clear with that tag, goes to the sender alone.
	TagRequest = TagAllocate | TagOwner
	// TagError, towards a client, marks an error frame:
	// [eid][0x40][type][code][text], answering the client's message to
	// eid of that type.
	TagError = 0x40
)

// Error frame codes, the first body byte of a TagError frame.
const (
	// TagErrBadTag: the tag byte was neither TagRequest nor 0..7.
	TagErrBadTag = 1
	// TagErrNoTag: every tag for that destination is outstanding.
	TagErrNoTag = 2
	// TagErrSend: no route, or the binding refused the message.
	TagErrSend = 3
)

// Tag errors.
var (
	ErrTagByte = errors.New("mctp: tag byte is neither 0x88 (allocate, TO=1) nor 0x00-0x07 (response, TO=0)")
	ErrNoTag   = errors.New("mctp: no free tag")
)

// ParseClientTag decodes the tag byte of a tagged client's message:
// TagRequest asks for an allocated tag (alloc true, TO=1), 0..7 is a
// response with that tag (TO=0). Anything else is ErrTagByte: TO=1 with
// a tag the client chose would collide with allocated ones, and the
// high bits are reserved.
func ParseClientTag(b byte) (alloc bool, tag uint8, err error) {
	switch {
	case b == TagRequest:
		return true, 0, nil
	case b&^TagValue == 0:
		return false, b, nil
	default:
		return false, 0, fmt.Errorf("%w: %#02x", ErrTagByte, b)
	}
}

// DefaultTagTimeout is how long an allocated tag waits for its
// response: the reassembly timeout, as Linux keeps a tag's key for 6 s.
const DefaultTagTimeout = DefaultReassemblyTimeout

// TagOptions configures Tags; zero values mean the defaults.
type TagOptions struct {
	Timeout time.Duration
	// Now is the clock; tests inject one to step over the timeout.
	Now func() time.Time
}

// anyPeer is the key of tags allocated for requests to the null or
// broadcast EID, whose responses come from other EIDs.
const anyPeer = BroadcastEID

// Tags allocates message tags for tagged clients' requests, per
// destination EID, and finds the owner of each response, as the Linux
// kernel's tag keys do for AF_MCTP sockets.
//
// Tag 0 is never allocated: libmctp-format clients send every request
// with TO=1 and tag 0, so responses on tag 0 always belong to them and
// are delivered as before. That leaves 7 tags per destination.
//
// A tag is outstanding from Alloc until the response from that EID
// arrives (Match), the timeout passes, or its owner disconnects
// (ReleaseOwner). A disconnected owner's tag may be allocated again at
// once, but until then, and until it expires, its response still
// matches, with owner 0: it is dropped rather than handed to clients
// that did not ask. Tags for requests to the null or broadcast EID match
// responses from any EID and are released only by the timeout or their
// owner, since several endpoints may answer. Memory is bounded: at most
// one entry per destination EID.
type Tags struct {
	opts  TagOptions
	mu    sync.Mutex
	peers map[byte]*peerTags
}

type peerTags struct {
	owner   [TagValue + 1]ClientID // 0: free
	expires [TagValue + 1]time.Time
	gone    [TagValue + 1]bool // the owner disconnected
	last    uint8              // the tag allocated last, where the next search starts
}

// NewTags returns an empty allocator.
func NewTags(opts TagOptions) *Tags {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTagTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Tags{opts: opts, peers: map[byte]*peerTags{}}
}

func peerKey(eid byte) byte {
	if eid == NullEID {
		return anyPeer
	}
	return eid
}

// Alloc returns a free tag (1..7) for a request from owner to dest and
// records owner for the response. Tags are handed out round robin, so
// that a late response to an expired tag is unlikely to meet a new
// request's.
func (t *Tags) Alloc(dest byte, owner ClientID) (uint8, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	p := t.peers[peerKey(dest)]
	if p == nil {
		p = &peerTags{}
		t.peers[peerKey(dest)] = p
	}
	for i := uint8(1); i <= TagValue; i++ {
		tag := (p.last+i-1)%TagValue + 1
		if p.owner[tag] != 0 && !p.gone[tag] && now.Before(p.expires[tag]) {
			continue
		}
		p.owner[tag] = owner
		p.gone[tag] = false
		p.expires[tag] = now.Add(t.opts.Timeout)
		p.last = tag
		return tag, nil
	}
	return 0, fmt.Errorf("%w for EID %d: %d requests outstanding", ErrNoTag, dest, TagValue)
}

// Match finds the owner of a response (TO=0) from src with tag, and
// releases the tag unless it was allocated for the null or broadcast
// EID. ok is false when no live allocation matches; owner is 0 when
// the tag's owner has disconnected.
func (t *Tags) Match(src byte, tag uint8) (owner ClientID, ok bool) {
	tag &= TagValue
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	for _, key := range []byte{src, anyPeer} {
		p := t.peers[key]
		if p == nil || p.owner[tag] == 0 {
			continue
		}
		if !now.Before(p.expires[tag]) {
			t.free(p, tag)
			continue
		}
		owner = p.owner[tag]
		if p.gone[tag] {
			owner = 0
		}
		if key != anyPeer {
			t.free(p, tag)
		}
		return owner, true
	}
	return 0, false
}

// Release frees dest's tag, as when its request could not be sent.
func (t *Tags) Release(dest byte, tag uint8) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[peerKey(dest)]; p != nil {
		t.free(p, tag&TagValue)
	}
}

// ReleaseOwner makes every tag owner holds free for Alloc, and returns
// how many it held; their responses are still recognised (see Tags).
func (t *Tags) ReleaseOwner(owner ClientID) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.peers {
		for tag := range p.owner {
			if p.owner[tag] == owner && !p.gone[tag] {
				p.gone[tag] = true
				n++
			}
		}
	}
	return n
}

// Outstanding returns the number of live allocations, dropping expired
// ones.
func (t *Tags) Outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	n := 0
	for _, p := range t.peers {
		for tag := range p.owner {
			if p.owner[tag] == 0 || p.gone[tag] {
				continue
			}
			if !now.Before(p.expires[tag]) {
				t.free(p, uint8(tag))
				continue
			}
			n++
		}
	}
	return n
}

// free clears one tag. The peer's entry stays, small and bounded by
// the 256 EIDs, so that its round robin goes on where it was.
func (t *Tags) free(p *peerTags, tag uint8) {
	p.owner[tag] = 0
	p.gone[tag] = false
}
