package ctl

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ctl/internal/jsonenc"
)

// Type is the type of a command parameter.
type Type int

// Parameter types. Int accepts decimal, 0x hex, 0o/0 octal and 0b binary
// spellings in text framings and integral JSON numbers (or such strings) in
// JSON framings.
const (
	String Type = iota
	Int
	Bool
	Float
)

func (t Type) String() string {
	switch t {
	case Int:
		return "int"
	case Bool:
		return "bool"
	case Float:
		return "float"
	default:
		return "string"
	}
}

// Param describes one parameter of a command.
type Param struct {
	Name string
	Type Type
	// Help is a one-line description shown in long usage.
	Help string
	// Required parameters have no default. Optional ones take Default
	// (which must be of the Go type matching Type: int64, string, bool or
	// float64; nil means the zero value) when absent.
	Required bool
	Default  any
	// Min and Max bound Int and Float values (inclusive) when Ranged is
	// set. For String, Max bounds the length in bytes when Ranged is set.
	Ranged   bool
	Min, Max float64
	// Choices, when not empty, lists the only accepted String values.
	Choices []string
	// Rest marks the last parameter as taking every remaining positional
	// argument as a list of strings (for example sfptpd's
	// "block_clock=1,clk0,clk1").
	Rest bool
	// Aliases are names a string value may use instead of the value
	// itself, matched without regard to case (nose's port names "A",
	// "B", "AB" for a phy bitmask, "nop" for page -1). They apply in
	// every framing, before conversion and range checks.
	Aliases []Alias
}

// Alias is one special value of a parameter: Name stands for Value.
type Alias struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// resolveAlias returns the value an alias stands for, or raw unchanged.
func (p *Param) resolveAlias(raw any) any {
	s, ok := raw.(string)
	if !ok {
		return raw
	}
	for _, a := range p.Aliases {
		if strings.EqualFold(s, a.Name) {
			return a.Value
		}
	}
	return raw
}

// Input is a command invocation as a front end parsed it, before
// validation. Text framings fill Positional (and Named from --name=value);
// JSON framings fill Named with decoded JSON values (numbers as
// json.Number), which the schema binds as they are: nothing is encoded
// again on the way to the handler.
type Input struct {
	Positional []string
	Named      map[string]any
	// Raw, when set, encodes the JSON arguments in the front end's own
	// layout. It runs only if a handler asks (Args.Raw), so that no
	// request pays for an encoding nobody reads.
	Raw func() json.RawMessage
	// TruncateReals makes Int parameters take a JSON number with a
	// fraction, truncated towards zero (1.9 → 1, -0.5 → 0), for a JSON
	// framing whose reference implementation reads every number as a
	// double and stores it in an integer, so that its clients may send
	// 1.0 or 1.9. A framing whose reference rejects a real where it
	// wants an integer leaves it off.
	TruncateReals bool
	// Front is the front end the request came through; Registry.Run
	// counts the request under it.
	Front Front
}

// Args holds a command's validated, converted parameters. Handlers read
// them with the typed accessors; names not in the schema panic, because
// that is a programming error caught by the handler's own tests.
type Args struct {
	cmd *Command
	// vals and given are indexed like cmd.Params: a handler reads a few
	// parameters, and a short scan beats building two maps per call.
	vals  []any
	given []bool
	rest  []string
	raw   func() json.RawMessage
	any   map[string]any
	in    Input // an AnyArgs command's input
}

func (a Args) get(name string, t Type) any {
	i := a.index(name)
	if i < 0 || a.vals == nil || a.cmd.Params[i].Rest {
		panic(fmt.Sprintf("ctl: command %q has no %s parameter %q", a.cmd.Name, t, name))
	}
	return a.vals[i]
}

// Int returns an Int parameter.
func (a Args) Int(name string) int64 { return a.get(name, Int).(int64) }

// String returns a String parameter.
func (a Args) String(name string) string { return a.get(name, String).(string) }

// Bool returns a Bool parameter.
func (a Args) Bool(name string) bool { return a.get(name, Bool).(bool) }

// Float returns a Float parameter.
func (a Args) Float(name string) float64 { return a.get(name, Float).(float64) }

// Given reports whether the caller supplied the parameter (as opposed to
// its default being used).
func (a Args) Given(name string) bool {
	i := a.index(name)
	return i >= 0 && a.given != nil && a.given[i]
}

// index returns the position of the named parameter, or -1.
func (a Args) index(name string) int {
	if a.cmd == nil {
		return -1
	}
	for i := range a.cmd.Params {
		if a.cmd.Params[i].Name == name {
			return i
		}
	}
	return -1
}

// Rest returns the values collected by a Rest parameter.
func (a Args) Rest() []string { return a.rest }

// Raw returns the JSON arguments in the layout of the front end they
// came through (AnyArgs commands); nil for a framing without them.
func (a Args) Raw() json.RawMessage {
	if a.raw == nil {
		return nil
	}
	return a.raw()
}

// Any returns the arguments of an AnyArgs command as a map: named
// arguments as decoded, positional ones under "0", "1", ...
func (a Args) Any() map[string]any { return a.any }

// ParamError is a parameter validation failure. Its text names the
// parameter.
type ParamError struct {
	Command string
	Param   string
	Msg     string
}

func (e *ParamError) Error() string {
	if e.Param == "" {
		return fmt.Sprintf("%s: %s", e.Command, e.Msg)
	}
	return fmt.Sprintf("%s: parameter '%s' %s", e.Command, e.Param, e.Msg)
}

// Bind validates in against c's schema and converts every value. It is
// the only place parameters are checked; handlers never see invalid
// input. Registry.Run binds before it runs a command; a front end calls
// Bind itself only to report a refusal before it starts one.
func (c *Command) Bind(in Input) (Args, error) {
	a := Args{cmd: c, raw: in.Raw}
	if c.AnyArgs {
		a.in = in
		a.any = make(map[string]any, len(in.Named)+len(in.Positional))
		for k, v := range in.Named {
			a.any[k] = normalizeJSON(v)
		}
		for i, p := range in.Positional {
			a.any[strconv.Itoa(i)] = p
		}
		return a, nil
	}
	a.vals = make([]any, len(c.Params))
	a.given = make([]bool, len(c.Params))
	perr := func(p, format string, args ...any) error {
		return &ParamError{Command: c.Name, Param: p, Msg: fmt.Sprintf(format, args...)}
	}
	pos := in.Positional
	for i, p := range c.Params {
		if p.Rest {
			if i < len(pos) {
				a.rest = append([]string(nil), pos[i:]...)
				for _, s := range a.rest {
					if _, err := p.Convert(s); err != nil {
						return a, perr(p.Name, "%v", err)
					}
				}
				pos = nil
			}
			if v, ok := in.Named[p.Name]; ok {
				list, err := restFromJSON(v)
				if err != nil {
					return a, perr(p.Name, "%v", err)
				}
				a.rest = append(a.rest, list...)
			}
			a.given[i] = len(a.rest) > 0
			if p.Required && len(a.rest) == 0 {
				return a, perr(p.Name, "is missing")
			}
			continue
		}
		var raw any
		var have bool
		if i < len(pos) {
			raw, have = pos[i], true
			if _, dup := in.Named[p.Name]; dup {
				return a, perr(p.Name, "is given twice")
			}
		} else if v, ok := in.Named[p.Name]; ok {
			raw, have = v, true
		}
		if !have {
			if p.Required {
				return a, perr(p.Name, "is missing")
			}
			a.vals[i] = p.DefaultValue()
			continue
		}
		v, err := p.convertIn(raw, in.TruncateReals)
		if err != nil {
			return a, perr(p.Name, "%v", err)
		}
		a.vals[i] = v
		a.given[i] = true
	}
	if n := len(c.Params); len(pos) > n && (n == 0 || !c.Params[n-1].Rest) {
		return a, &ParamError{Command: c.Name, Msg: fmt.Sprintf("unexpected parameter %q: takes at most %d", pos[n], n)}
	}
	for k := range in.Named {
		if c.Param(k) == nil {
			return a, perr(k, "is not supported")
		}
	}
	return a, nil
}

// Param returns the named parameter, or nil.
func (c *Command) Param(name string) *Param {
	if i := c.ParamIndex(name); i >= 0 {
		return &c.Params[i]
	}
	return nil
}

// ParamIndex returns the position of the named parameter, or -1.
func (c *Command) ParamIndex(name string) int {
	for i := range c.Params {
		if c.Params[i].Name == name {
			return i
		}
	}
	return -1
}

// DefaultValue returns the value an absent optional parameter takes.
func (p *Param) DefaultValue() any {
	if p.Default != nil {
		return p.Default
	}
	switch p.Type {
	case Int:
		return int64(0)
	case Bool:
		return false
	case Float:
		return float64(0)
	default:
		return ""
	}
}

// ValueError is a value a parameter cannot take, returned by
// Param.Convert. Error gives the registry's wording; Terse is the same
// failure in the shorter words of a front end that names the parameter
// itself ("requires an integer, not 'x'.", "out of range: 9 > 8."), as
// nose's text form does.
type ValueError struct{ Msg, Terse string }

func (e *ValueError) Error() string { return e.Msg }

// TerseText returns the terse wording of a conversion error, or its
// text when it has none.
func TerseText(err error) string {
	if ve, ok := err.(*ValueError); ok {
		return ve.Terse
	}
	return err.Error()
}

// sameWords is a ValueError for a failure with no terse sentence of its
// own (types and checks nose lacks): both wordings are msg.
func sameWords(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &ValueError{Msg: msg, Terse: msg}
}

// Convert turns a text or JSON value into the parameter's Go type and
// checks its range.
func (p *Param) Convert(raw any) (any, error) { return p.convertIn(raw, false) }

// convertIn is convert; truncReals lets an Int parameter take a JSON
// number with a fraction (Input.TruncateReals).
func (p *Param) convertIn(raw any, truncReals bool) (any, error) {
	raw = p.resolveAlias(raw)
	switch p.Type {
	case Int:
		var n int64
		switch v := raw.(type) {
		case string:
			x, err := parseInt(v)
			if err != nil {
				return nil, err
			}
			n = x
		case json.Number:
			x, err := parseInt(string(v))
			if err != nil && truncReals {
				x, err = truncReal(string(v))
			}
			if err != nil {
				return nil, err
			}
			n = x
		case float64:
			if (v != math.Trunc(v) && !truncReals) || math.IsNaN(v) || math.Abs(v) > 1<<62 {
				return nil, &ValueError{Msg: fmt.Sprintf("must be an integer, got %v", v), Terse: "requires an integer."}
			}
			n = int64(v)
		case int64:
			n = v
		case int:
			n = int64(v)
		default:
			return nil, &ValueError{Msg: fmt.Sprintf("must be an integer, got %s", jsonenc.Kind(raw)), Terse: "requires an integer."}
		}
		if p.Ranged && float64(n) < p.Min {
			return nil, &ValueError{Msg: fmt.Sprintf("out of range: %d not in %s", n, p.rangeText()),
				Terse: fmt.Sprintf("out of range: %d < %d.", n, int64(p.Min))}
		}
		if p.Ranged && float64(n) > p.Max {
			return nil, &ValueError{Msg: fmt.Sprintf("out of range: %d not in %s", n, p.rangeText()),
				Terse: fmt.Sprintf("out of range: %d > %d.", n, int64(p.Max))}
		}
		return n, nil
	case Float:
		var f float64
		switch v := raw.(type) {
		case string:
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, &ValueError{Msg: fmt.Sprintf("must be a number, got %q", v), Terse: fmt.Sprintf("requires a number, not '%s'.", v)}
			}
			f = x
		case json.Number:
			x, err := v.Float64()
			if err != nil {
				return nil, &ValueError{Msg: fmt.Sprintf("must be a number, got %s", v), Terse: fmt.Sprintf("requires a number, not '%s'.", v)}
			}
			f = x
		case float64:
			f = v
		case int64:
			f = float64(v)
		default:
			return nil, &ValueError{Msg: fmt.Sprintf("must be a number, got %s", jsonenc.Kind(raw)), Terse: "requires a number."}
		}
		if p.Ranged && (f < p.Min || f > p.Max) {
			return nil, sameWords("out of range: %v not in %s", f, p.rangeText())
		}
		return f, nil
	case Bool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			switch strings.ToLower(v) {
			case "1", "true", "yes", "on":
				return true, nil
			case "0", "false", "no", "off":
				return false, nil
			}
			return nil, &ValueError{Msg: fmt.Sprintf("must be a boolean (true/false, 1/0, yes/no, on/off), got %q", v),
				Terse: fmt.Sprintf("requires true or false, not '%s'.", v)}
		case json.Number:
			switch v {
			case "0":
				return false, nil
			case "1":
				return true, nil
			}
		}
		return nil, &ValueError{Msg: fmt.Sprintf("must be a boolean, got %s", jsonenc.Kind(raw)), Terse: "requires bool."}
	default:
		var s string
		switch v := raw.(type) {
		case string:
			s = v
		case json.Number:
			s = string(v)
		default:
			return nil, &ValueError{Msg: fmt.Sprintf("must be a string, got %s", jsonenc.Kind(raw)), Terse: "must be a string."}
		}
		if p.Ranged && float64(len(s)) > p.Max {
			return nil, sameWords("is too long: %d bytes, at most %d", len(s), int(p.Max))
		}
		if len(p.Choices) > 0 {
			for _, c := range p.Choices {
				if c == s {
					return s, nil
				}
			}
			return nil, sameWords("must be one of %s, got %q", strings.Join(p.Choices, "|"), s)
		}
		return s, nil
	}
}

// truncReal converts a JSON number as nose does (a double stored in an
// integer): the fraction is dropped towards zero. Numbers outside the
// 64-bit range, where C's conversion is undefined, are refused.
func truncReal(s string) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f >= 0x1p63 || f < -0x1p63 {
		return 0, &ValueError{Msg: fmt.Sprintf("must be an integer, got %s", s), Terse: "requires an integer."}
	}
	return int64(f), nil
}

func (p *Param) rangeText() string {
	if p.Type == Int {
		return fmt.Sprintf("%d..%d", int64(p.Min), int64(p.Max))
	}
	return fmt.Sprintf("%v..%v", p.Min, p.Max)
}

// parseInt accepts decimal, 0x/0X hex, 0o octal and 0b binary, with an
// optional sign.
func parseInt(s string) (int64, error) {
	t := strings.TrimSpace(s)
	n, err := strconv.ParseInt(t, 0, 64)
	if err != nil {
		// nose's strtoll fails alike on both, with one sentence.
		terse := fmt.Sprintf("requires an integer, not '%s'.", s)
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, &ValueError{Msg: fmt.Sprintf("out of range: %q does not fit in 64 bits", s), Terse: terse}
		}
		return 0, &ValueError{Msg: fmt.Sprintf("must be an integer, got %q", s), Terse: terse}
	}
	return n, nil
}

func restFromJSON(v any) ([]string, error) {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			switch s := e.(type) {
			case string:
				out = append(out, s)
			case json.Number:
				out = append(out, string(s))
			default:
				return nil, fmt.Errorf("must be a list of strings, got an element of type %s", jsonenc.Kind(e))
			}
		}
		return out, nil
	case string:
		return []string{x}, nil
	}
	return nil, fmt.Errorf("must be a list of strings, got %s", jsonenc.Kind(v))
}

// normalizeJSON turns json.Number into int64 or float64 so that handlers
// and encoders see plain Go values.
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = normalizeJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalizeJSON(x[k])
		}
	}
	return v
}
