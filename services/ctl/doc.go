// Package ctl is tickbox's control plane: one command registry exposed over
// several wire protocols.
//
// A daemon registers each command once in a Registry. The registry owns the
// parameter schema, converts and validates every argument, and runs the
// handler. Front ends only translate their framing into an Input and the
// Result back into their reply format:
//
//   - DgramServer: sfptpd's AF_UNIX datagram socket, "cmd[=p1,p2]" with no reply;
//   - KeaServer: Kea's JSON control channel, one command per connection;
//   - IPCServer: the nose line-JSON IPC with broadcast log events;
//   - ConsoleServer: a One-com/gone style text console with streaming and
//     persistent commands.
//
// All servers share the socket rules of internal/unixsock (stale-socket replacement,
// refusal of non-socket files, modes, SO_PEERCRED on abstract names,
// connection limits, socket activation and in-place re-exec).
package ctl
