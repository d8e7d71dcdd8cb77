// Package demux is mctpd's libmctp-compatible demultiplexer: the
// AF_UNIX SOCK_SEQPACKET server on abstract names ("mctp-mux",
// "mctp-demux") through which handler programs (PLDM, NVMe-MI tools)
// exchange MCTP messages with the router.
//
//   - Server (New, Serve, Options, Stats): the server; New first, Serve
//     once the sender exists. A client registers one message type with
//     its first byte, then exchanges [addr][type][body] datagrams,
//     [addr][tag][type][body] on a tagged demux. Each client has a
//     bounded queue, and one that stops reading is disconnected rather
//     than allowed to stall the others. The server implements
//     mctp.Clients: the router delivers to it.
//   - Sender, SenderFunc, Loopback: where client messages go; mctpd's
//     router (mctp.Router.Send, SendTagged), or a loopback for a demux
//     without a wire.
//   - Conn (Dial, DialTagged): the client side, as the mctp command and
//     the tests use it.
//   - Message, ParseFrame: the frame layout, shared by both sides.
//
// The socket rules (abstract names, peer checks, connection limits,
// inherited sockets) are internal/unixsock's.
package demux
