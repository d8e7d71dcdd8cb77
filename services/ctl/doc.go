// Package ctl is the core of tickbox's control plane: one command
// registry that several wire protocols expose. A daemon registers each
// command once; the front ends only translate their framing into an
// Input and the Result back into their reply.
//
// The pieces:
//
//   - Registry holds the commands, the common ones every daemon serves
//     (list-commands, version-get, status-get, build-report, config-get,
//     shutdown) and the process state they report; NewRegistry(Options).
//   - Command, Param and Type are the schema; Registry.Run binds an
//     Input to it (Command.Bind), so handlers see only valid Args.
//   - Call, Result and Code are what a handler gets and returns; a
//     streaming command writes to Call.Out until cancelled.
//   - Front names the front end in Input.Front; Run (and Count, for
//     requests refused before Run) count requests by front end and
//     result, and a front end implementing ConnCounter has its
//     connections counted: status-get reports both for every daemon.
//   - Tokenize, ParseText and ParseWords read text command lines.
//   - Server runs the front ends over a Registry: Run, Close, Reexec
//     (an in-place re-exec that hands sockets and connections over),
//     ReexecCommand, and Publish/Subscribe for the daemon's events.
//   - Frontend is the seam a front-end package implements; it registers
//     with Server.Add and uses Registry, Logger, Inheritance and Fail.
//   - SocketSpec, StreamOptions and PeerPolicy are the socket rules of
//     internal/unixsock (stale-socket replacement, modes, SO_PEERCRED on
//     abstract names, connection limits, socket activation).
//
// The front ends live in their own packages: services/ctl/dgram
// (sfptpd's datagram socket), services/ctl/kea (Kea's JSON control
// channel), services/ctl/ipc (nose's line-JSON IPC) and
// services/ctl/console (a One-com/gone style text console). The hub
// that fronts the daemons is services/ctl/hub, and services/ctl/metrics
// turns what they report into Prometheus metrics.
package ctl
