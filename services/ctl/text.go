package ctl

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTextTokens bounds the number of tokens in one text command line.
const MaxTextTokens = 256

// Tokenize splits a text command line the way nose's text form and the
// console read it: whitespace separates tokens; single and double quotes
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
	return wordsCommand(toks)
}

// wordsCommand maps a line's words to a command name and its input, as
// ParseText does for the IPC text form: --name=value is named, a bare
// --name is the named boolean true, "--help" asks for the usage and "--"
// ends option parsing.
func wordsCommand(words []string) (TextCommand, error) {
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

// SplitNose splits a line the way nose's text form does: whitespace
// separates words; '"' and '\” quote (a quote left open runs to the end
// of the line, as nose leaves it); a backslash followed by one of
// \ " ' space / b f n r t is that escape, inside quotes too, and any
// other backslash is kept as it is. An empty line gives one empty word,
// as nose's command name "" that nothing matches. There is no comment
// syntax inside a line: a first word starting with '#' makes the whole
// line a comment (see ParseNose).
func SplitNose(line string) ([]string, error) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	var words []string
	var cur []byte
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) && len(words) > 0 {
			break
		}
		cur = cur[:0]
		var quote byte
		for i < len(line) {
			c := line[i]
			switch {
			case quote != 0 && c == quote:
				quote = 0
				i++
				continue
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				i++
				continue
			case c == '\\' && i+1 < len(line) && noseEscape(line[i+1]) != 0:
				cur = append(cur, noseEscape(line[i+1]))
				i += 2
				continue
			case quote == 0 && isSpace(c):
			default:
				cur = append(cur, c)
				i++
				continue
			}
			break
		}
		words = append(words, string(cur))
		if len(words) > MaxTextTokens+1 {
			return nil, fmt.Errorf("too many arguments (more than %d)", MaxTextTokens)
		}
		if i == len(line) {
			break
		}
	}
	return words, nil
}

// noseEscape maps the character after a backslash to what nose's
// tokenizer makes of it; 0 means it is no escape.
func noseEscape(c byte) byte {
	switch c {
	case '\\', '"', '\'', ' ', '/':
		return c
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return 0
}

// ParseNose splits a nose text-form line into the command name and its
// argument words. Comment reports a line nose ignores silently: a blank
// one, or one whose first word starts with '#'.
func ParseNose(line string) (name string, args []string, comment bool, err error) {
	words, err := SplitNose(line)
	if err != nil {
		return "", nil, false, err
	}
	if words[0] == "" || words[0][0] == '#' {
		return "", nil, true, nil
	}
	return words[0], words[1:], false, nil
}

// NoseArgs binds nose text-form argument words to cmd's parameters the
// way nose does: words fill the parameters in order; "--name=value" and
// "--name value" name one ("--name" alone is true for a Bool parameter
// when no value follows); a bare "--" makes every later word positional.
// help reports "--help" (for a command without a parameter of that
// name). Like nose, it checks each word as it reaches it, its value
// included, and required parameters after the last word, so the first
// error is the one nose reports (in "mdio_read 1 1 # c" the page '#',
// not the unused 'c'). Errors use nose's wording, without its "error: "
// prefix.
func NoseArgs(cmd *Command, args []string) (in Input, help bool, err error) {
	positionalOnly := false
	given := map[string]bool{}
	npos := 0
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !positionalOnly && strings.HasPrefix(arg, "--") {
			arg = arg[2:]
			if arg == "" {
				positionalOnly = true
				continue
			}
			name, val, hasVal := strings.Cut(arg, "=")
			pi := cmd.paramIndex(name)
			if pi < 0 && !cmd.AnyArgs {
				if name == "help" {
					return in, true, nil
				}
				return in, false, fmt.Errorf("parameter --%s not found", clip(name, 64))
			}
			var p *Param
			if pi >= 0 {
				p = &cmd.Params[pi]
			}
			if !hasVal && (p == nil || p.Type == Bool) && (i+1 == len(args) || strings.HasPrefix(args[i+1], "--")) {
				val, hasVal = "true", true
			}
			if !hasVal {
				if i+1 == len(args) {
					if p == nil {
						return in, false, fmt.Errorf("parameter --%s expects an argument", clip(name, 64))
					}
					return in, false, fmt.Errorf("%s expects an argument", noseParamName(pi, p))
				}
				i++
				val = args[i]
			}
			if given[name] {
				if p == nil {
					return in, false, fmt.Errorf("parameter %s provided more than once", clip(name, 64))
				}
				return in, false, fmt.Errorf("%s provided more than once", noseParamName(pi, p))
			}
			given[name] = true
			if p != nil {
				if _, err := p.convert(val); err != nil {
					return in, false, fmt.Errorf("%s %s", noseParamName(pi, p), noseText(err))
				}
			}
			if in.Named == nil {
				in.Named = map[string]any{}
			}
			in.Named[name] = val
			continue
		}
		if !cmd.AnyArgs {
			if npos >= len(cmd.Params) {
				return in, false, fmt.Errorf("unused arguments starting with '%s'.", clip(arg, 64))
			}
			pi, p := npos, &cmd.Params[npos]
			if !p.Rest {
				if given[p.Name] {
					return in, false, fmt.Errorf("%s provided more than once", noseParamName(pi, p))
				}
				npos++
			}
			given[p.Name] = true
			if _, err := p.convert(arg); err != nil {
				return in, false, fmt.Errorf("%s %s", noseParamName(pi, p), noseText(err))
			}
		}
		in.Positional = append(in.Positional, arg)
	}
	if !cmd.AnyArgs {
		// nose checks the parameters no word gave after the last word.
		for i := range cmd.Params {
			if p := &cmd.Params[i]; p.Required && !given[p.Name] {
				return in, false, fmt.Errorf("%s is required.", noseParamName(i, p))
			}
		}
	}
	return in, false, nil
}

// noseParamName names a parameter in an error as nose does: its index,
// name and description, cut to 79 bytes as nose's 80-byte buffer cuts it.
func noseParamName(i int, p *Param) string {
	s := fmt.Sprintf("parameter %d/%s (%s)", i, p.Name, p.Help)
	if len(s) > 79 {
		s = s[:79]
	}
	return s
}
