// Package logring keeps a daemon's recent log in memory for its control
// channel's log-get command: a Ring holds the last lines (bounded by a
// count and by bytes), each with a sequence number that only grows, and
// Tee is a slog.Handler that sends every record to the daemon's own
// handler and, formatted as slog's text lines, into the ring.
//
// A reader pages through the ring with a cursor: Since(cursor, limit)
// returns the lines numbered above the cursor and the next cursor, and
// says how many lines it could not return (pushed out of the ring or
// left out by the limit), so that a follower knows it missed some.
package logring
