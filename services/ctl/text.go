package ctl

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTextTokens bounds the number of tokens in one text command line.
const MaxTextTokens = 256

// Tokenize splits a text command line the way a quoting console reads it: whitespace separates tokens; single and double quotes
// group (a quoted empty string is a token); a backslash escapes the next
// character outside single quotes (\n, \t, \\ and \" are recognised
// inside double quotes); an unquoted '#' at the start of a token starts
// a comment that runs to the end of the line.
func Tokenize(line string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	inTok := false
	const (
		plain = iota
		single
		double
	)
	state := plain
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch state {
		case single:
			if ch == '\'' {
				state = plain
			} else {
				cur.WriteByte(ch)
			}
			continue
		case double:
			switch ch {
			case '"':
				state = plain
			case '\\':
				if i+1 >= len(line) {
					return nil, errors.New("unterminated escape at end of line")
				}
				i++
				cur.WriteByte(unescape(line[i]))
			default:
				cur.WriteByte(ch)
			}
			continue
		}
		switch {
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f':
			if inTok {
				toks = append(toks, cur.String())
				cur.Reset()
				inTok = false
			}
		case ch == '#' && !inTok:
			i = len(line)
		case ch == '\'':
			state, inTok = single, true
		case ch == '"':
			state, inTok = double, true
		case ch == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("unterminated escape at end of line")
			}
			i++
			cur.WriteByte(unescape(line[i]))
			inTok = true
		default:
			cur.WriteByte(ch)
			inTok = true
		}
		if len(toks) > MaxTextTokens {
			return nil, fmt.Errorf("too many arguments (more than %d)", MaxTextTokens)
		}
	}
	if state != plain {
		return nil, errors.New("unterminated quote")
	}
	if inTok {
		toks = append(toks, cur.String())
	}
	if len(toks) > MaxTextTokens {
		return nil, fmt.Errorf("too many arguments (more than %d)", MaxTextTokens)
	}
	return toks, nil
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	case '0':
		return 0
	}
	return c
}

// TextCommand is a parsed text command line.
type TextCommand struct {
	Name  string
	Input Input
	// Help is set when the line asked for the command's usage
	// ("cmd --help").
	Help bool
}

// ParseText tokenizes a text line into a command name and its input.
// Arguments of the form --name=value are named; a bare --name is the
// named boolean true; "--" ends option parsing; everything else is
// positional. An empty or comment-only line gives an empty Name.
func ParseText(line string) (TextCommand, error) {
	toks, err := Tokenize(line)
	if err != nil || len(toks) == 0 {
		return TextCommand{}, err
	}
	return ParseWords(toks)
}

// ParseWords maps a line's words (at least one) to a command name and
// its input, as ParseText does: --name=value is named, a bare --name is
// the named boolean true, "--help" asks for the usage and "--" ends
// option parsing. Front ends that split lines their own way share it.
func ParseWords(words []string) (TextCommand, error) {
	tc := TextCommand{Name: words[0]}
	opts := true
	for _, w := range words[1:] {
		if opts && w == "--" {
			opts = false
			continue
		}
		if opts && len(w) > 2 && strings.HasPrefix(w, "--") {
			name, val, hasVal := strings.Cut(w[2:], "=")
			if name == "help" && !hasVal {
				tc.Help = true
				continue
			}
			if tc.Input.Named == nil {
				tc.Input.Named = map[string]any{}
			}
			if _, dup := tc.Input.Named[name]; dup {
				return tc, fmt.Errorf("parameter '%s' is given twice", name)
			}
			if !hasVal {
				val = "true"
			}
			tc.Input.Named[name] = val
			continue
		}
		tc.Input.Positional = append(tc.Input.Positional, w)
	}
	return tc, nil
}
