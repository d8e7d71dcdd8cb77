package logring

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Default bounds of a daemon's ring.
const (
	DefaultLines = 1000
	DefaultBytes = 256 << 10
	// MaxLine bounds one kept line in bytes; a longer record is cut
	// and ends in "...".
	MaxLine = 4096
)

// Line is one kept log line.
type Line struct {
	Seq  uint64 `json:"seq"`
	Line string `json:"line"`
}

// Ring is a bounded ring of log lines. It is safe for concurrent use.
type Ring struct {
	maxLines, maxBytes int
	epoch              int64

	mu    sync.Mutex
	lines []Line // circular, oldest at head
	head  int
	n     int
	bytes int    // bytes of the kept lines' text
	seq   uint64 // sequence number of the newest line (0: none yet)
}

// New returns a ring keeping at most maxLines lines and maxBytes bytes
// of their text (DefaultLines and DefaultBytes when not positive).
func New(maxLines, maxBytes int) *Ring {
	if maxLines <= 0 {
		maxLines = DefaultLines
	}
	if maxBytes <= 0 {
		maxBytes = DefaultBytes
	}
	return &Ring{maxLines: maxLines, maxBytes: maxBytes, epoch: time.Now().UnixNano(), lines: make([]Line, maxLines)}
}

// Epoch identifies this ring: the time it was made, in nanoseconds. A
// reader that sees it change knows the daemon restarted and its cursor
// belongs to the previous ring.
func (r *Ring) Epoch() int64 { return r.epoch }

// Append adds one line (a trailing newline is dropped, an overlong line
// cut) and returns its sequence number. The oldest lines leave the ring
// until both bounds hold.
func (r *Ring) Append(s string) uint64 {
	s = strings.TrimRight(s, "\n")
	if lim := min(MaxLine, r.maxBytes); len(s) > lim {
		cut := lim - len("...")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.n > 0 && (r.n == r.maxLines || r.bytes+len(s) > r.maxBytes) {
		r.bytes -= len(r.lines[r.head].Line)
		r.lines[r.head] = Line{}
		r.head = (r.head + 1) % r.maxLines
		r.n--
	}
	r.seq++
	r.lines[(r.head+r.n)%r.maxLines] = Line{Seq: r.seq, Line: s}
	r.n++
	r.bytes += len(s)
	return r.seq
}

// Since returns, oldest first, the lines numbered above since: the last
// limit of them when limit is positive, all that are kept otherwise.
// next is the cursor for the following call (the newest sequence number
// so far), and missed counts the lines above since that are not
// returned, because they left the ring or the limit left them out.
func (r *Ring) Since(since uint64, limit int) (lines []Line, next, missed uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next = r.seq
	if since >= r.seq {
		return nil, next, 0
	}
	first := r.seq - uint64(r.n) + 1 // oldest kept
	from := max(since+1, first)
	count := int(r.seq - from + 1)
	if limit > 0 && count > limit {
		from += uint64(count - limit)
		count = limit
	}
	missed = from - (since + 1)
	lines = make([]Line, count)
	off := int(from - first)
	for i := range count {
		lines[i] = r.lines[(r.head+off+i)%r.maxLines]
	}
	return lines, next, missed
}

// Stats returns the number of lines and bytes kept and the newest
// sequence number.
func (r *Ring) Stats() (lines, bytes int, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.bytes, r.seq
}
