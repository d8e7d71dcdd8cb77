package ipc

import (
	"fmt"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// SplitWords splits a line the way nose's text form does: whitespace
// separates words; '"' and '\” quote (a quote left open runs to the end
// of the line, as nose leaves it); a backslash followed by one of
// \ " ' space / b f n r t is that escape, inside quotes too, and any
// other backslash is kept as it is. An empty line gives one empty word,
// as nose's command name "" that nothing matches. There is no comment
// syntax inside a line: a first word starting with '#' makes the whole
// line a comment (see ParseLine).
func SplitWords(line string) ([]string, error) {
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
		if len(words) > ctl.MaxTextTokens+1 {
			return nil, fmt.Errorf("too many arguments (more than %d)", ctl.MaxTextTokens)
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

// ParseLine splits a nose text-form line into the command name and its
// argument words. Comment reports a line nose ignores silently: a blank
// one, or one whose first word starts with '#'.
func ParseLine(line string) (name string, args []string, comment bool, err error) {
	words, err := SplitWords(line)
	if err != nil {
		return "", nil, false, err
	}
	if words[0] == "" || words[0][0] == '#' {
		return "", nil, true, nil
	}
	return words[0], words[1:], false, nil
}

// BindWords binds nose text-form argument words to cmd's parameters the
// way nose does: words fill the parameters in order; "--name=value" and
// "--name value" name one ("--name" alone is true for a Bool parameter
// when no value follows); a bare "--" makes every later word positional.
// help reports "--help" (for a command without a parameter of that
// name). Like nose, it checks each word as it reaches it, its value
// included, and required parameters after the last word, so the first
// error is the one nose reports (in "mdio_read 1 1 # c" the page '#',
// not the unused 'c'). Errors use nose's wording, without its "error: "
// prefix.
func BindWords(cmd *ctl.Command, args []string) (in ctl.Input, help bool, err error) {
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
			pi := cmd.ParamIndex(name)
			if pi < 0 && !cmd.AnyArgs {
				if name == "help" {
					return in, true, nil
				}
				return in, false, fmt.Errorf("parameter --%s not found", clip(name, 64))
			}
			var p *ctl.Param
			if pi >= 0 {
				p = &cmd.Params[pi]
			}
			if !hasVal && (p == nil || p.Type == ctl.Bool) && (i+1 == len(args) || strings.HasPrefix(args[i+1], "--")) {
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
				if _, err := p.Convert(val); err != nil {
					return in, false, fmt.Errorf("%s %s", noseParamName(pi, p), ctl.TerseText(err))
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
			if _, err := p.Convert(arg); err != nil {
				return in, false, fmt.Errorf("%s %s", noseParamName(pi, p), ctl.TerseText(err))
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
func noseParamName(i int, p *ctl.Param) string {
	s := fmt.Sprintf("parameter %d/%s (%s)", i, p.Name, p.Help)
	if len(s) > 79 {
		s = s[:79]
	}
	return s
}
