// Package dgram is the datagram front end of the control plane:
// sfptpd's control socket, an AF_UNIX SOCK_DGRAM socket taking one
// "cmd[=p1[,p2...]]" command per datagram, with no reply.
//
// The pieces:
//
//   - Serve starts the front end (Server, Options, Stats); commands run
//     one at a time in arrival order, every outcome is logged, and a
//     full queue pauses reading instead of dropping a command.
//   - Parse splits one datagram as sfptpd does (MaxLen bytes at most).
//   - Send is the client, sfptpdctl's: Error spells failures in its
//     words.
package dgram
