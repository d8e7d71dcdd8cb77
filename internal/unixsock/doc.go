// Package unixsock holds tickbox's rules for the Unix sockets its servers
// listen on, shared by the control plane and the MCTP demux:
//
//   - Spec, ListenStream, ListenDgram: socket-file rules (stale sockets
//     replaced, live sockets and other files refused, modes) and abstract
//     names;
//   - Accept and Acceptor: the accept loop with SO_PEERCRED checks on
//     abstract sockets (PeerPolicy), a connection limit and shutdown;
//   - Inheritance (ReadEnv): sockets received through systemd socket
//     activation or a re-exec, and the Handoff state a re-exec passes on.
package unixsock
