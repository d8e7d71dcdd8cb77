package kea

import (
	"bytes"
	"errors"
	"fmt"
)

// DefaultMaxRequest bounds one Kea request (16 MiB). Kea itself has no
// limit, so a client streaming an endless unbalanced value grows its
// buffer without end; we refuse past this size instead.
const DefaultMaxRequest = 16 << 20

// feedStatus is where a keaFeed stands.
type feedStatus int

const (
	feedNeedMore feedStatus = iota
	feedComplete
	feedFailed
)

func (s feedStatus) String() string {
	switch s {
	case feedComplete:
		return "complete"
	case feedFailed:
		return "failed"
	}
	return "need-more"
}

// feedState is the framing state machine's state. The states mirror
// Kea's JSONFeed, so that framing errors read the same.
type feedState int

const (
	fsStart           feedState = iota // no byte seen yet
	fsWhitespace                       // whitespace or a comment seen before the value
	fsHashBefore                       // "# ..." before the value
	fsSlashBefore                      // "/" before the value
	fsLineBefore                       // "// ..." before the value
	fsBlockBefore                      // "/* ..." before the value
	fsBlockStarBefore                  // "/* ... *" before the value
	fsInner                            // inside the value, outside strings
	fsString                           // inside a string
	fsEscape                           // after a backslash in a string
	fsHash                             // "# ..." inside the value
	fsSlash                            // "/" inside the value
	fsLine                             // "// ..." inside the value
	fsBlock                            // "/* ..." inside the value
	fsBlockStar                        // "/* ... *" inside the value
	fsDone
	fsFailed
)

// keaFeed frames one Kea request: it buffers input until the braces and
// brackets of the first value balance (outside strings, honouring
// escapes), dropping comments, and only then is the value parsed. It is
// split from the parser, as Kea's JSONFeed is, so that a request arriving
// in many small reads costs one pass over the bytes, not one parse per
// read.
//
// Comments inside the value are removed but their newlines are kept, so
// that the parser's line numbers still match the input. Two fixes over
// Kea: a "//" comment keeps its newline as "#" does (Kea drops it, which
// can glue "[1// x\n2]" into "[12]"), and "**/" ends a block comment.
type keaFeed struct {
	st    feedState
	depth int
	out   []byte
	err   string
	// n counts the raw bytes consumed, comments and leading whitespace
	// included; max bounds it.
	n   int
	max int
}

func newKeaFeed(max int) *keaFeed {
	if max <= 0 {
		max = DefaultMaxRequest
	}
	return &keaFeed{max: max}
}

// reset makes f a new feed bounded by max (0 for DefaultMaxRequest),
// keeping its buffer for the output.
func (f *keaFeed) reset(max int) {
	if max <= 0 {
		max = DefaultMaxRequest
	}
	*f = keaFeed{max: max, out: f.out[:0]}
}

// Status reports whether the feed needs more input, holds a complete
// value or failed.
func (f *keaFeed) Status() feedStatus {
	switch f.st {
	case fsDone:
		return feedComplete
	case fsFailed:
		return feedFailed
	}
	return feedNeedMore
}

// Err is the failure text, as Kea words it.
func (f *keaFeed) Err() string { return f.err }

// Output is the value's text with comments removed (Kea's "processed
// text"). Before completion it is the partial command.
func (f *keaFeed) Output() []byte { return f.out }

// Consumed is the number of raw input bytes consumed.
func (f *keaFeed) Consumed() int { return f.n }

func (f *keaFeed) fail(format string, a ...any) {
	f.err = fmt.Sprintf(format, a...)
	f.st = fsFailed
}

// Write feeds p and returns how many bytes were consumed. It stops at
// the end of the first complete value or at the first error; the rest
// of p (trailing bytes) is not consumed. Once complete or failed it
// consumes nothing.
func (f *keaFeed) Write(p []byte) int {
	if cap(f.out) == 0 && len(p) > 0 {
		// Most requests arrive in one read: room for it at once, rather
		// than growing the buffer a few times.
		f.out = make([]byte, 0, min(len(p), f.max))
	}
	i := 0
	for i < len(p) && f.st != fsDone && f.st != fsFailed {
		if f.n >= f.max {
			f.fail("request too large: exceeds %d bytes", f.max)
			break
		}
		// Fast path: copy a run of plain string bytes at once.
		if f.st == fsString {
			rest := p[i:]
			if room := f.max - f.n; len(rest) > room {
				rest = rest[:room]
			}
			k := bytes.IndexAny(rest, "\"\\")
			if k < 0 {
				k = len(rest)
			}
			if k > 0 {
				f.out = append(f.out, rest[:k]...)
				f.n += k
				i += k
				continue
			}
		}
		f.step(p[i])
		f.n++
		i++
	}
	return i
}

// step consumes one byte.
func (f *keaFeed) step(c byte) {
	switch f.st {
	case fsStart, fsWhitespace:
		switch c {
		case '\t', '\n', '\r', ' ':
			f.st = fsWhitespace
		case '#':
			f.st = fsHashBefore
		case '/':
			f.st = fsSlashBefore
		case '{', '[':
			f.out = append(f.out, c)
			f.depth = 1
			f.st = fsInner
		default:
			if f.st == fsStart {
				f.fail("invalid first character %c", c)
			} else {
				f.fail("invalid character %c", c)
			}
		}
	case fsHashBefore, fsLineBefore:
		if c == '\n' {
			f.st = fsWhitespace
		}
	case fsSlashBefore:
		switch c {
		case '/':
			f.st = fsLineBefore
		case '*':
			f.st = fsBlockBefore
		default:
			f.fail("invalid characters /%c", c)
		}
	case fsBlockBefore:
		if c == '*' {
			f.st = fsBlockStarBefore
		}
	case fsBlockStarBefore:
		switch c {
		case '/':
			f.st = fsWhitespace
		case '*':
		default:
			f.st = fsBlockBefore
		}
	case fsInner:
		switch c {
		case '{', '[':
			f.out = append(f.out, c)
			f.depth++
		case '}', ']':
			f.out = append(f.out, c)
			f.depth--
			if f.depth == 0 {
				f.st = fsDone
			}
		case '"':
			f.out = append(f.out, c)
			f.st = fsString
		case '#':
			f.st = fsHash
		case '/':
			f.st = fsSlash
		default:
			f.out = append(f.out, c)
		}
	case fsString:
		f.out = append(f.out, c)
		switch c {
		case '"':
			f.st = fsInner
		case '\\':
			f.st = fsEscape
		}
	case fsEscape:
		f.out = append(f.out, c)
		f.st = fsString
	case fsHash, fsLine:
		if c == '\n' {
			f.out = append(f.out, c)
			f.st = fsInner
		}
	case fsSlash:
		switch c {
		case '/':
			f.st = fsLine
		case '*':
			f.st = fsBlock
		default:
			f.fail("invalid characters /%c", c)
		}
	case fsBlock:
		switch c {
		case '*':
			f.st = fsBlockStar
		case '\n':
			f.out = append(f.out, c)
		}
	case fsBlockStar:
		switch c {
		case '/':
			f.st = fsInner
		case '*':
		case '\n':
			f.out = append(f.out, c)
			f.st = fsBlock
		default:
			f.st = fsBlock
		}
	}
}

// StripComments returns the one JSON value in data with Kea's comments
// (#, // and /* */) removed, for reading a Kea-style configuration file
// with a standard JSON decoder. Whitespace and comments may follow the
// value; anything else is an error.
func StripComments(data []byte) ([]byte, error) {
	f := newKeaFeed(len(data) + 1)
	n := f.Write(data)
	switch f.Status() {
	case feedFailed:
		return nil, fmt.Errorf("%s", f.Err())
	case feedNeedMore:
		return nil, fmt.Errorf("unexpected end of input after %d bytes", len(data))
	}
	rest := newKeaFeed(len(data) + 1)
	rest.Write(data[n:])
	switch {
	case rest.Status() != feedNeedMore || len(rest.Output()) > 0:
		return nil, fmt.Errorf("data after the value at byte %d", n)
	case rest.st == fsBlockBefore || rest.st == fsBlockStarBefore:
		return nil, errors.New("unterminated /* comment after the value")
	case rest.st == fsSlashBefore:
		return nil, fmt.Errorf("data after the value at byte %d", n)
	}
	return f.Output(), nil
}
