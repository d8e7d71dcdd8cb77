// Package ipc is the IPC front end of the control plane: the nose
// line-JSON protocol of Intona's Ethernet Debugger host tool, on an
// AF_UNIX stream socket.
//
// The pieces:
//
//   - Serve listens (Addr resolves nose's --ipc-server NAME) and Connect
//     dials out (nose's --ipc-connect); both serve a connection the same
//     way and pass the daemon's published events on as log events.
//   - Server is a listener: Broadcast, Writer, Active, Dropped.
//   - Client, Dial and Event are the client side (the ctl command's).
//   - ParseLine, SplitWords and BindWords read the text form as nose
//     does; Help and HelpParam are nose's help.
//
// The wire:
//
// Every JSON request line gets exactly one reply line, in request order:
//
//	{"id":N, <arguments flattened>, "success":true}
//	{"id":N, "error":"…", "success":false}
//
// The id is nose's: a number is truncated to an integer (4.5 gives 4),
// anything else, or no id, gives -1. Keys a command has no parameter for
// are ignored, as nose ignores them. A number for an integer parameter
// loses its fraction, as in nose (ctl.Input.TruncateReals). A result
// with arguments is the reply's data; a result with only a text (nose's
// LOG lines: "success", hw_info, help) sends that text as log events
// before a bare reply. An error is a log event "error: …" and a reply
// with success:false, the text also under "error" (nose's reply carries
// no text, and its failure replies are not even well-formed JSON; ours
// are). Replies are encoded by jsonenc's Compact style: a value JSON
// cannot hold (NaN) is an error reply, where nose would print "nan".
//
// Text-form lines ("mdio_read A 1") reply as nose does: with log events
// only, the result's text (nose's wording, "result: value=0x7949") or,
// for a command without one, its arguments as "key: value" lines; an
// error is one "error: …" event. There is no reply line.
//
// Log events {"type":"log","msg":"…\n"} may come at any time, between
// whole lines only. A command's output goes to the client that ran it;
// broadcasts (link events) go to every client. nose logs a command's
// output to every client; we do not, so that no client's script reads
// replies to commands it did not send.
//
// A line over MaxLine bytes gets an error and none of it runs. nose
// instead runs its first 4095 bytes, or its tail when it arrives in
// pieces, without a word to the client: that may run a command the
// client never sent, and leaves it no clue.
//
// Slow clients: each connection has a bounded outgoing queue. Broadcast
// events that do not fit are dropped for that client only (counted and
// logged). Replies are never dropped: when the queue is full, the
// connection stops reading requests until its client reads, so a client
// that does not read only stalls itself.
package ipc
