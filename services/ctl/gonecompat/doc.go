// Package gonecompat holds the side-by-side transcript test of ctl's
// console against One-com/gone's own ctrl server: both run with the same
// commands, get the same input lines, and their outputs are compared
// byte for byte.
//
// It is a package of its own because gone's sd package, which its ctrl
// server imports, takes LISTEN_FDS and LISTEN_FDNAMES from the
// environment when it initialises; in ctl's own test binary that would
// steal the sockets its socket-activation and re-exec tests pass to
// their child processes.
package gonecompat
