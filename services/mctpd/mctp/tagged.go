package mctp

// Tagged routing: clients of the tagged demux (Options.Tagged) use the
// MCTP tag as Linux AF_MCTP sockets do. A request sent with TagRequest
// gets a tag from Tags, and its response (TO=0, that tag, from that EID)
// goes to the requesting client alone; a response sent with tag byte
// 0..7 leaves with TO=0 and exactly that tag. Requests from other
// endpoints (TO=1) reach both kinds of client of their type, tagged ones
// with the tag byte TagOwner|tag. Responses no allocation claims, tag 0
// among them, reach the libmctp-format clients as before, never tagged
// ones. A message that cannot be sent is answered with a TagError frame.

import "context"

// ClientGone releases the tags a tagged client held; it is the tagged
// demux's disconnect hook.
func (r *Router) ClientGone(id ClientID) {
	if n := r.tags.ReleaseOwner(id); n > 0 {
		r.log.Debug("mctp: tags of a gone client released", "client", id, "tags", n)
	}
}

// SendTagged sends a message from a tagged client (the tagged demux's
// sender): a request (TagRequest) with a tag allocated for its
// destination, or a response (0..7) with exactly that tag. Failures are
// answered with a TagError frame to the client, and returned for the
// demux to count and log. It is safe for concurrent use; it does not
// keep m.Body.
func (r *Router) SendTagged(ctx context.Context, m ClientMessage) error {
	alloc, tag, err := ParseClientTag(m.Tag)
	if err != nil {
		r.drop(DropTagByte)
		r.tagError(m, TagErrBadTag, err)
		return err
	}
	if alloc {
		if tag, err = r.tags.Alloc(m.Addr, m.Client); err != nil {
			r.drop(DropTagExhausted)
			r.tagError(m, TagErrNoTag, err)
			return err
		}
	}
	msg := make([]byte, 1+len(m.Body))
	msg[0] = m.Type
	copy(msg[1:], m.Body)
	own := r.EID()
	if m.Addr == own {
		if len(msg) < 2 {
			if alloc {
				r.tags.Release(m.Addr, tag)
			}
			r.drop(DropShortMessage)
			r.tagError(m, TagErrSend, ErrShortMessage)
			return ErrShortMessage
		}
		r.inbound(nil, own, alloc, tag, msg)
		return nil
	}
	if err := r.transmit(ctx, r.route(m.Addr), m.Addr, own, alloc, tag, msg, true); err != nil {
		if alloc {
			r.tags.Release(m.Addr, tag)
		}
		r.tagError(m, TagErrSend, err)
		return err
	}
	return nil
}

// tagError answers a tagged client's message that was not sent with
// [dest][TagError][type][code][text].
func (r *Router) tagError(m ClientMessage, code byte, err error) {
	if r.tagged != nil {
		r.tagged.DeliverTo(m.Client, m.Addr, TagError, m.Type, append([]byte{code}, err.Error()...))
	}
}

// deliverTagged offers an inbound message to the tagged clients: a
// response on a tag one of them was allocated goes to that client alone
// (claimed: nobody else gets it), a request to every tagged client of
// its type. n is how many took it.
func (r *Router) deliverTagged(src byte, to bool, tag uint8, typ byte, body []byte) (n int, claimed bool) {
	if r.tagged == nil {
		return 0, false
	}
	// Tag 0 is never allocated: skip the lookup for libmctp's tag.
	if !to && tag != 0 {
		if owner, ok := r.tags.Match(src, tag); ok {
			if !r.tagged.DeliverTo(owner, src, tag, typ, body) {
				r.drop(DropTagOwnerGone)
			}
			return 0, true
		}
	}
	if to && r.tagged.Registered(typ) > 0 {
		n = r.tagged.DeliverTag(src, TagOwner|tag, typ, body)
	}
	return n, false
}
