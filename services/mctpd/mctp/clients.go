package mctp

// The router's local clients: the programs (PLDM, NVMe-MI handlers) that
// exchange messages with other endpoints through mctpd's demuxes
// (services/mctpd/demux). The router knows them only through Clients,
// and they reach the router through Router.Send and Router.SendTagged.

// ClientID identifies one local client connection for as long as its
// demux runs; IDs are never reused, and 0 is never a client's. The
// router keys tag allocations by it (Tags), so that a response reaches
// the client whose request it answers.
type ClientID uint64

// ClientMessage is one message from or to a local client. From a
// client, Addr is the destination; towards clients it is the source.
type ClientMessage struct {
	Addr byte
	// Tag is the byte between the address and the type on a tagged
	// demux, 0 on a plain one: the MCTP tag owner bit and message tag
	// (see TagOwner, TagValue, TagRequest).
	Tag  byte
	Type byte
	// Client is the connection the message came from, so that the
	// router can answer that client alone (Clients.DeliverTo).
	Client ClientID
	// Body is the message after the type byte.
	Body []byte
}

// Clients are the local clients of one demux, as the router delivers to
// them. Every method is safe for concurrent use and must not block on a
// client: the router calls them from the bindings' receive paths. None
// keeps body; the caller may reuse it.
type Clients interface {
	// DeliverTag gives a message of type typ from src to every client
	// registered for exactly typ, and returns how many took it. tag is
	// the tag byte of a tagged demux's frame; a plain demux leaves it
	// out, as libmctp's format has none.
	DeliverTag(src, tag, typ byte, body []byte) int
	// DeliverTo gives the message to the one client id, whatever type
	// it registered, and reports whether that client took it: false
	// when it is gone or cannot take more.
	DeliverTo(id ClientID, src, tag, typ byte, body []byte) bool
	// Registered returns the number of clients registered for exactly
	// typ.
	Registered(typ byte) int
	// Types returns the types at least one client registered, sorted.
	Types() []byte
}
