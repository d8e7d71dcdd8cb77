package ipc

import (
	"fmt"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"strings"
)

// Help renders commands the way nose's "help [command]" lists them,
// so that people and scripts reading nose's help find the same shape.
// An empty filter or "all" lists every command; otherwise the commands
// whose name equals filter (ignoring case) or, unless exact, whose
// comment contains it. exact is "cmd --help", which prints one command
// without the "Commands matching" header.
func Help(cmds []*ctl.Command, filter string, exact bool) string {
	var b strings.Builder
	useFilter := filter != "" && !strings.EqualFold(filter, "all")
	if useFilter && !exact {
		fmt.Fprintf(&b, "Commands matching '%s':\n\n", filter)
	}
	if !useFilter {
		b.WriteString("List of commands:\n\n")
	}
	matches := 0
	for _, c := range cmds {
		if useFilter && !strings.EqualFold(c.Name, filter) && (exact || !strings.Contains(c.Comment, filter)) {
			continue
		}
		matches++
		fmt.Fprintf(&b, "  %s\n    %s\n", c.Name, c.Comment)
		if len(c.Params) > 0 {
			b.WriteString("\n    Parameters:\n")
		}
		for i := range c.Params {
			p := &c.Params[i]
			fmt.Fprintf(&b, "      %-15s %s\n", p.Name, p.Help)
			fmt.Fprintf(&b, "    %-17s Type: %s\n", "", noseTypeHelp(p))
			if p.Required {
				fmt.Fprintf(&b, "    %-17s Required parameter.\n", "")
			} else {
				fmt.Fprintf(&b, "    %-17s Default: '%s'\n", "", noseDefault(p))
			}
			if len(p.Aliases) > 0 {
				vals := make([]string, len(p.Aliases))
				for i, a := range p.Aliases {
					vals[i] = fmt.Sprintf("%s (%s)", a.Name, a.Value)
				}
				fmt.Fprintf(&b, "    %-17s Special values: %s\n", "", strings.Join(vals, ", "))
			}
		}
		b.WriteString("\n")
	}
	if useFilter && matches == 0 {
		b.WriteString("No matches. Use 'help' to list all commands.\n")
		return b.String()
	}
	b.WriteString("Syntax: command param1 param2...\n" +
		"Named parameters: command --paramname1=paramvalue1...\n" +
		"Values can be quoted with \"...\" (or '), some \\ escapes work.\n" +
		"You can add a ' -- ' after the command name to avoid\n" +
		"interpreting '--something...' as option name.\n" +
		"Or: {\"command\":\"cmd-name\",\"paramname1\":\"paramvalue1\", ...}\n")
	return b.String()
}

func noseTypeHelp(p *ctl.Param) string {
	switch p.Type {
	case ctl.Int:
		if len(p.Aliases) > 0 {
			return "integer or string choice"
		}
		return "integer"
	case ctl.Bool:
		return "bool: true/false"
	case ctl.Float:
		return "number"
	}
	return "string"
}

// noseDefault names a default as nose does: by its alias when it has
// one ("nop" rather than -1).
func noseDefault(p *ctl.Param) string {
	s := fmt.Sprint(p.DefaultValue())
	for _, a := range p.Aliases {
		if a.Value == s {
			return a.Name
		}
	}
	return s
}
