// Package console is the text console front end of the control plane:
// a console that a user of One-com/gone's ctrl server drives as that,
// on an AF_UNIX stream socket.
//
// The pieces:
//
//   - Serve starts a console (Server, Options): whitespace-split command
//     lines, "?" for gone's command table, "q" to quit, "! cmd" to run
//     one command and half-close, gone's "Error:  text" lines, streaming
//     commands that run until the next line, and persistent commands
//     that survive an in-place re-exec (ctl.Server.Reexec hands the
//     connections over with their unread input).
//   - Dial and Pipe are the client side (the ctl command's).
package console
