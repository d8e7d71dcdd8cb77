package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// CommandSchema is a command as commands-get describes it: everything a
// client needs to bind words to its parameters with the registry's own
// rules (Command.Bind) and to print its usage, but not its handler.
type CommandSchema struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
	// Syntax is the short usage's parameter part (Command.Synopsis).
	Syntax          string        `json:"syntax,omitempty"`
	Comment         string        `json:"comment,omitempty"`
	Usage           string        `json:"usage,omitempty"`
	Params          []ParamSchema `json:"params,omitempty"`
	AnyArgs         bool          `json:"any-args,omitempty"`
	IgnoreExtraArgs bool          `json:"ignore-extra-args,omitempty"`
	Stream          bool          `json:"stream,omitempty"`
}

// ParamSchema is one parameter of a CommandSchema.
type ParamSchema struct {
	Name     string `json:"name"`
	Type     string `json:"type"` // string, int, bool or float
	Help     string `json:"help,omitempty"`
	Required bool   `json:"required,omitempty"`
	Default  any    `json:"default,omitempty"`
	// Range is [min, max] for a ranged Int or Float, [0, max bytes] for
	// a ranged String.
	Range   []float64 `json:"range,omitempty"`
	Choices []string  `json:"choices,omitempty"`
	Rest    bool      `json:"rest,omitempty"`
	Aliases []Alias   `json:"aliases,omitempty"`
}

// Schema describes c.
func (c *Command) Schema() CommandSchema {
	s := CommandSchema{
		Name: c.Name, Aliases: c.Aliases, Syntax: c.Synopsis(), Comment: c.Comment, Usage: c.Usage,
		AnyArgs: c.AnyArgs, IgnoreExtraArgs: c.IgnoreExtraArgs, Stream: c.Stream,
	}
	for _, p := range c.Params {
		ps := ParamSchema{
			Name: p.Name, Type: p.Type.String(), Help: p.Help, Required: p.Required, Default: p.Default,
			Choices: p.Choices, Rest: p.Rest, Aliases: p.Aliases,
		}
		if p.Ranged {
			ps.Range = []float64{p.Min, p.Max}
		}
		s.Params = append(s.Params, ps)
	}
	return s
}

// ParseType reads a Type's name as Type.String writes it.
func ParseType(s string) (Type, error) {
	for _, t := range []Type{String, Int, Bool, Float} {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown parameter type %q", s)
}

// NewCommandFromSchema returns a command built from s that runs h: a
// proxy for a command served elsewhere, which binds its arguments (and
// prints its usage and refusals) exactly as the original does. Defaults
// arrive as JSON values and are converted to the parameter's type.
func NewCommandFromSchema(s CommandSchema, h Handler) (*Command, error) {
	c := &Command{
		Name: s.Name, Aliases: s.Aliases, Syntax: s.Syntax, Comment: s.Comment, Usage: s.Usage,
		AnyArgs: s.AnyArgs, IgnoreExtraArgs: s.IgnoreExtraArgs, Stream: s.Stream, Handler: h,
	}
	for _, ps := range s.Params {
		t, err := ParseType(ps.Type)
		if err != nil {
			return nil, fmt.Errorf("command %q: parameter %q: %w", s.Name, ps.Name, err)
		}
		p := Param{Name: ps.Name, Type: t, Help: ps.Help, Required: ps.Required, Choices: ps.Choices, Rest: ps.Rest, Aliases: ps.Aliases}
		switch len(ps.Range) {
		case 0:
		case 2:
			p.Ranged, p.Min, p.Max = true, ps.Range[0], ps.Range[1]
		default:
			return nil, fmt.Errorf("command %q: parameter %q: range has %d values, want 2", s.Name, ps.Name, len(ps.Range))
		}
		if ps.Default != nil {
			// Convert without the range: the default is the original's
			// whatever it is, and aliases do not apply to it.
			q := Param{Type: t}
			v, err := q.Convert(ps.Default)
			if err != nil {
				return nil, fmt.Errorf("command %q: default of %q: %w", s.Name, ps.Name, err)
			}
			p.Default = v
		}
		c.Params = append(c.Params, p)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("command %w", err)
	}
	return c, nil
}

// DecodeCommandSchemas reads commands-get's "commands" list; numbers
// stay json.Number until NewCommandFromSchema converts them.
func DecodeCommandSchemas(raw []byte) ([]CommandSchema, error) {
	var v struct {
		Commands []CommandSchema `json:"commands"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("commands-get reply: %w", err)
	}
	return v.Commands, nil
}

// commandsGetCommand returns commands-get, which describes the
// registry's commands with their parameter schema.
func (r *Registry) commandsGetCommand() *Command {
	return &Command{
		Name:    "commands-get",
		Comment: "describe the commands and their parameters",
		Usage: "Each command with its aliases, syntax, comment, usage, parameters\n" +
			"(name, type, required, default, range, choices, aliases) and whether\n" +
			"it streams: what a hub needs to bind a console line to the command\n" +
			"with the daemon's own rules. list-commands gives only the names.",
		Params: []Param{{Name: "command", Type: String, Help: "describe only this command (a name or an alias)"}},
		Handler: func(_ context.Context, c *Call) Result {
			var cs []*Command
			if name := c.Args.String("command"); name != "" {
				cmd, ok := r.Lookup(name)
				if !ok {
					return UnsupportedResult(name)
				}
				cs = []*Command{cmd}
			} else {
				cs = r.Commands()
			}
			list := make([]CommandSchema, len(cs))
			for i, cmd := range cs {
				list[i] = cmd.Schema()
			}
			return OK(strconv.Itoa(len(list))+" commands", map[string]any{"commands": list})
		},
	}
}

// Input returns an AnyArgs command's input as the front end parsed it:
// its positional words and named values. Other commands have none.
func (a Args) Input() Input {
	if a.cmd == nil || !a.cmd.AnyArgs {
		return Input{}
	}
	return a.in
}

// Named returns the parameters the caller gave, by name, as plain JSON
// values (int64, float64, bool, string; a Rest parameter as []string):
// the bound call encoded for a JSON channel, which binds it again to the
// same values. Defaults are left out, for the receiver to apply.
func (a Args) Named() map[string]any {
	if a.cmd == nil {
		return nil
	}
	if a.cmd.AnyArgs {
		m := make(map[string]any, len(a.any))
		for k, v := range a.any {
			m[k] = v
		}
		return m
	}
	m := make(map[string]any)
	for i, p := range a.cmd.Params {
		switch {
		case p.Rest && len(a.rest) > 0:
			m[p.Name] = append([]string(nil), a.rest...)
		case !p.Rest && a.given[i]:
			m[p.Name] = a.vals[i]
		}
	}
	return m
}
