// Package kea is the Kea front end of the control plane: ISC Kea's JSON
// control channel on an AF_UNIX stream socket, one command per
// connection, answered with { "arguments": ..., "result": N, "text": ... }
// before the server closes the connection.
//
// The pieces:
//
//   - Serve starts a channel (Server, Options); with Options.Forward set
//     it routes on "service" as Kea's Control Agent does (ErrNoService).
//   - HTTPHandler serves the same channel over HTTP as Kea's Control
//     Agent does (POST, JSON list replies, its stock 400/401 answers via
//     WriteHTTPStatus), with the same request code as the socket.
//   - Call is the client: one request, one reply.
//   - The framing follows Kea's JSONFeed (feed.go) and the parser Kea's
//     Element::fromJSON (json.go), with the same acceptance quirks, error
//     texts and positions (JSONError), so that clients see Kea's replies.
//   - Replies are laid out as Kea's toJSON lays them out, by jsonenc's
//     Spaced style (a NaN is null where Kea writes "nan.0").
//
// Request arguments are parsed once and bound to the command's schema
// as they are; they are encoded again only for a handler that asks for
// the raw arguments, and for a forwarded request.
package kea
