package kea

import (
	"encoding/json"
	"fmt"
	"github.com/tickbox-fw/tickbox/services/ctl/internal/jsonenc"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// keaMaxDepth bounds nesting in a request. Kea recurses without a bound
// in old versions; we must not, or a 16 MiB "[[[[..." would exhaust the
// stack.
const keaMaxDepth = 100

// keaWhitespace is what Kea's parser skips between tokens.
const keaWhitespace = " \b\f\n\r\t"

// JSONError is a parse error located the way Kea's Element::fromJSON
// locates it: "<msg> in <file>:<line>:<col>". Kea parses control-channel
// input "from wire", counting from line 0 and column 0, and moves the
// column one past each byte read, so "{\"command\": }" fails at
// <wire>:0:13. HasPos is false for Kea's position-less "nothing read".
type JSONError struct {
	Msg       string
	File      string
	Line, Col int
	HasPos    bool
}

func (e *JSONError) Error() string {
	if !e.HasPos {
		return e.Msg
	}
	return fmt.Sprintf("%s in %s:%d:%d", e.Msg, e.File, e.Line, e.Col)
}

// keaParser re-implements the behaviour of Kea's hand-written JSON
// reader (not its code): the same acceptance quirks (a trailing comma in
// a list is accepted, in a map it is "String expected") and the same
// error texts and positions, so that clients see Kea's replies. Values
// come out as encoding/json with UseNumber would give them: map[string]any
// (duplicate keys: the last wins, as in Kea), []any, string, json.Number
// (canonical spelling), bool and nil.
type keaParser struct {
	in        []byte
	i         int
	file      string
	line, pos int
	depth     int
}

// parseKeaWire parses a framed request as Kea's Element::fromWire does.
// Bytes after the first value are not examined (the feed never leaves
// any that matter).
func parseKeaWire(b []byte) (any, error) {
	p := &keaParser{in: b, file: "<wire>"}
	return p.value()
}

const eof = -1

func (p *keaParser) peek() int {
	if p.i >= len(p.in) {
		return eof
	}
	return int(p.in[p.i])
}

func (p *keaParser) get() int {
	c := p.peek()
	if c != eof {
		p.i++
	}
	return c
}

func (p *keaParser) errAt(line, pos int, format string, a ...any) error {
	return &JSONError{Msg: fmt.Sprintf(format, a...), File: p.file, Line: line, Col: pos, HasPos: true}
}

func isIn(c int, set string) bool {
	return c >= 0 && c < 256 && strings.IndexByte(set, byte(c)) >= 0
}

func (p *keaParser) skipWS() {
	for c := p.peek(); isIn(c, keaWhitespace); c = p.peek() {
		if c == '\n' {
			p.line++
			p.pos = 1
		} else {
			p.pos++
		}
		p.i++
	}
}

// skipTo reads up to one of chars, skipping mayskip bytes before it and
// after it; anything else is an error.
func (p *keaParser) skipTo(chars, mayskip string) (int, error) {
	c := p.get()
	p.pos++
	for c != eof {
		if c == '\n' {
			p.pos = 1
			p.line++
		}
		switch {
		case isIn(c, mayskip):
			c = p.get()
			p.pos++
		case isIn(c, chars):
			for n := p.peek(); isIn(n, mayskip); n = p.peek() {
				if n == '\n' {
					p.pos = 1
					p.line++
				} else {
					p.pos++
				}
				p.i++
			}
			return c, nil
		default:
			return 0, p.errAt(p.line, p.pos, "'%c' read, one of \"%s\" expected", c, chars)
		}
	}
	return 0, p.errAt(p.line, p.pos, "EOF read, one of \"%s\" expected", chars)
}

func (p *keaParser) value() (any, error) {
	p.skipWS()
	c := p.get()
	p.pos++
	switch {
	case c == eof:
		return nil, &JSONError{Msg: "nothing read"}
	case c >= '0' && c <= '9', c == '-', c == '+', c == '.':
		p.i--
		p.pos--
		return p.number()
	case c == 't', c == 'f':
		p.i--
		p.pos--
		return p.word("boolean")
	case c == 'n':
		p.i--
		p.pos--
		return p.word("null")
	case c == '"':
		p.i--
		p.pos--
		return p.str()
	case c == '[', c == '{':
		if p.depth >= keaMaxDepth {
			return nil, p.errAt(p.line, p.pos, "error: nesting deeper than %d levels", keaMaxDepth)
		}
		p.depth++
		defer func() { p.depth-- }()
		if c == '[' {
			return p.list()
		}
		return p.object()
	}
	return nil, p.errAt(p.line, p.pos, "error: unexpected character %c", c)
}

func (p *keaParser) number() (any, error) {
	start := p.pos
	j := p.i
	for j < len(p.in) && isIn(int(p.in[j]), "0123456789+-.eE") {
		j++
	}
	s := string(p.in[p.i:j])
	p.pos += j - p.i
	p.i = j
	if strings.ContainsAny(s, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, p.errAt(p.line, start, "Number overflow: %s", s)
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, p.errAt(p.line, start, "Number overflow: %s", s)
	}
	return json.Number(strconv.FormatInt(n, 10)), nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func (p *keaParser) word(kind string) (any, error) {
	start := p.pos
	j := p.i
	for j < len(p.in) && isAlpha(p.in[j]) {
		j++
	}
	w := string(p.in[p.i:j])
	p.pos += j - p.i
	p.i = j
	switch {
	case kind == "boolean" && w == "true":
		return true, nil
	case kind == "boolean" && w == "false":
		return false, nil
	case kind == "null" && w == "null":
		return nil, nil
	case kind == "boolean":
		return nil, p.errAt(p.line, start, "Bad boolean value: %s", w)
	}
	return nil, p.errAt(p.line, start, "Bad null value: %s", w)
}

func hexVal(c int) int {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return -1
}

// str reads a string. Unlike Kea, which only knows \u00XX, any \uXXXX
// escape (and surrogate pairs) is accepted.
func (p *keaParser) str() (string, error) {
	var sb []byte
	c := p.get()
	p.pos++
	if c != '"' {
		return "", p.errAt(p.line, p.pos, "String expected")
	}
	c = p.get()
	p.pos++
	for c != eof && c != '"' {
		if c != '\\' {
			sb = append(sb, byte(c))
			c = p.get()
			p.pos++
			continue
		}
		switch p.peek() {
		case '"':
			sb = append(sb, '"')
		case '/':
			sb = append(sb, '/')
		case '\\':
			sb = append(sb, '\\')
		case 'b':
			sb = append(sb, '\b')
		case 'f':
			sb = append(sb, '\f')
		case 'n':
			sb = append(sb, '\n')
		case 'r':
			sb = append(sb, '\r')
		case 't':
			sb = append(sb, '\t')
		case 'u':
			p.i++
			p.pos++
			r, err := p.hex4()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) && p.i+6 <= len(p.in) && p.in[p.i] == '\\' && p.in[p.i+1] == 'u' {
				save, savePos := p.i, p.pos
				p.i += 2
				p.pos += 2
				if r2, err := p.hex4(); err == nil && utf16.DecodeRune(r, r2) != utf8.RuneError {
					r = utf16.DecodeRune(r, r2)
				} else {
					p.i, p.pos = save, savePos
				}
			}
			sb = utf8.AppendRune(sb, r)
			c = p.get()
			p.pos++
			continue
		default:
			return "", p.errAt(p.line, p.pos, "Bad escape")
		}
		p.i++
		p.pos++
		c = p.get()
		p.pos++
	}
	if c == eof {
		return "", p.errAt(p.line, p.pos, "Unterminated string")
	}
	return string(sb), nil
}

// hex4 reads four hex digits.
func (p *keaParser) hex4() (rune, error) {
	var r rune
	for k := 0; k < 4; k++ {
		d := hexVal(p.peek())
		if d < 0 {
			return 0, p.errAt(p.line, p.pos, "Not hexadecimal in unicode escape")
		}
		r = r<<4 | rune(d)
		p.i++
		p.pos++
	}
	return r, nil
}

func (p *keaParser) list() (any, error) {
	out := []any{}
	p.skipWS()
	c := 0
	for c != eof && c != ']' {
		if p.peek() != ']' {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			if c, err = p.skipTo(",]", keaWhitespace); err != nil {
				return nil, err
			}
		} else {
			c = p.get()
			p.pos++
		}
	}
	return out, nil
}

func (p *keaParser) object() (any, error) {
	m := map[string]any{}
	p.skipWS()
	c := p.peek()
	switch c {
	case eof:
		return nil, p.errAt(p.line, p.pos, "Unterminated map, <string> or } expected")
	case '}':
		p.i++
		return m, nil
	}
	for c != eof && c != '}' {
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if _, err := p.skipTo(":", keaWhitespace); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		m[k] = v
		if c, err = p.skipTo(",}", keaWhitespace); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// keaTypeName names a decoded value's type as Kea's Element::typeToName.
func keaTypeName(v any) string { return jsonenc.Kind(v) }

// appendKeaJSON appends v in Kea's toJSON layout (jsonenc.Spaced), which
// never fails.
func appendKeaJSON(b []byte, v any) []byte {
	b, _ = jsonenc.Append(b, v, jsonenc.Spaced)
	return b
}
