package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/tickbox-fw/tickbox/internal/logring"
)

// schemaCommands covers every kind of parameter a schema carries.
func schemaCommands() []*Command {
	nop := func(context.Context, *Call) Result { return OK("", nil) }
	return []*Command{
		mdioRead(new(Args)),
		{
			Name: "kinds", Syntax: "mode [ratio] [on] [tags...]", Comment: "every type", Usage: "line one\nline two",
			Aliases: []string{"kinds-get"},
			Params: []Param{
				{Name: "mode", Type: String, Required: true, Choices: []string{"fast", "slow"}, Help: "how"},
				{Name: "ratio", Type: Float, Default: 1.5, Ranged: true, Min: 0.5, Max: 2},
				{Name: "on", Type: Bool, Default: true},
				{Name: "name", Type: String, Ranged: true, Max: 4},
				{Name: "port", Type: Int, Default: int64(1), Aliases: []Alias{{"A", "1"}, {"B", "2"}}, Ranged: true, Min: 1, Max: 3},
				{Name: "tags", Type: String, Rest: true},
			},
			Handler: nop,
		},
		{Name: "anything", AnyArgs: true, Syntax: "[ARGS...]", Handler: nop},
		{Name: "follow", Stream: true, Handler: nop, Params: []Param{{Name: "interval", Type: Int, Default: int64(250)}}},
		{Name: "lax", IgnoreExtraArgs: true, Handler: nop, Params: []Param{{Name: "n", Type: Int}}},
	}
}

// TestSchemaRoundTrip checks that a command rebuilt from commands-get's
// JSON binds, refuses and describes itself exactly as the original.
func TestSchemaRoundTrip(t *testing.T) {
	r := NewRegistry(Options{Name: "test", Logger: quietLogger()})
	r.MustRegister(schemaCommands()...)
	res := r.Invoke(context.Background(), "commands-get", Input{}, nil)
	if res.Code != Success {
		t.Fatalf("commands-get: %+v", res)
	}
	raw, err := json.Marshal(res.Args)
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := DecodeCommandSchemas(raw)
	if err != nil {
		t.Fatal(err)
	}
	proxies := map[string]*Command{}
	for _, s := range schemas {
		c, err := NewCommandFromSchema(s, func(context.Context, *Call) Result { return OK("", nil) })
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		proxies[c.Name] = c
	}
	if len(proxies) != len(r.Commands()) {
		t.Fatalf("%d schemas for %d commands", len(proxies), len(r.Commands()))
	}
	inputs := []struct {
		cmd string
		in  Input
	}{
		{"mdio_read", Input{Positional: []string{"1", "1"}}},
		{"mdio_read", Input{Positional: []string{"0x3", "31", "7"}}},
		{"mdio_read", Input{Positional: []string{"4", "1"}}},
		{"mdio_read", Input{Positional: []string{"1"}}},
		{"mdio_read", Input{Positional: []string{"x", "1"}}},
		{"mdio_read", Input{Positional: []string{"1", "1", "1", "1"}}},
		{"mdio_read", Input{Positional: []string{"1", "1"}, Named: map[string]any{"bogus": "1"}}},
		{"kinds", Input{Positional: []string{"fast"}}},
		{"kinds", Input{Positional: []string{"medium"}}},
		{"kinds", Input{Positional: []string{"slow", "0.7", "off", "abcd", "b", "t1", "t2"}}},
		{"kinds", Input{Positional: []string{"slow", "3"}}},
		{"kinds", Input{Positional: []string{"slow", "1", "maybe"}}},
		{"kinds", Input{Positional: []string{"slow", "1", "1", "abcde"}}},
		{"kinds", Input{Positional: []string{"slow", "1", "1", "x", "C"}}},
		{"kinds", Input{Named: map[string]any{"mode": "fast", "port": "a", "tags": []any{"x"}}}},
		{"anything", Input{Positional: []string{"a", "b"}, Named: map[string]any{"k": "v"}}},
		{"follow", Input{Positional: []string{"10"}}},
		{"lax", Input{Positional: []string{"1", "2"}, Named: map[string]any{"zz": "1"}}},
		{"log-get", Input{}},
		{"commands-get", Input{Positional: []string{"kinds"}}},
		{"version-get", Input{Positional: []string{"extra"}}},
	}
	for _, tt := range inputs {
		t.Run(fmt.Sprintf("%s %v %v", tt.cmd, tt.in.Positional, tt.in.Named), func(t *testing.T) {
			orig, ok := r.Lookup(tt.cmd)
			if !ok {
				if tt.cmd == "log-get" { // this registry has no ring
					if _, ok := proxies[tt.cmd]; ok {
						t.Fatal("log-get described by a registry without a log ring")
					}
					return
				}
				t.Fatalf("no %s", tt.cmd)
			}
			proxy := proxies[tt.cmd]
			if orig.IgnoreExtraArgs {
				tt.in = orig.dropExtraArgs(tt.in)
			}
			want, werr := orig.Bind(tt.in)
			got, gerr := proxy.Bind(tt.in)
			if fmt.Sprint(werr) != fmt.Sprint(gerr) {
				t.Fatalf("proxy refuses with %v, original with %v", gerr, werr)
			}
			if werr == nil && !reflect.DeepEqual(want.Named(), got.Named()) {
				t.Fatalf("proxy binds %v, original %v", got.Named(), want.Named())
			}
			if orig.LongUsage() != proxy.LongUsage() || orig.ShortUsage() != proxy.ShortUsage() {
				t.Fatalf("usage differs:\n%s\n%s", orig.LongUsage(), proxy.LongUsage())
			}
			if !reflect.DeepEqual(orig.Aliases, proxy.Aliases) || orig.Stream != proxy.Stream || orig.AnyArgs != proxy.AnyArgs {
				t.Fatalf("flags differ: %+v vs %+v", orig.Schema(), proxy.Schema())
			}
			// What the proxy sends binds on the original to the same
			// values, as a JSON channel delivers it.
			if werr == nil && !orig.AnyArgs {
				wire, _ := json.Marshal(got.Named())
				var named map[string]any
				dec := json.NewDecoder(strings.NewReader(string(wire)))
				dec.UseNumber()
				if err := dec.Decode(&named); err != nil {
					t.Fatal(err)
				}
				again, err := orig.Bind(Input{Named: named})
				if err != nil || !reflect.DeepEqual(again.vals, want.vals) || !reflect.DeepEqual(again.rest, want.rest) {
					t.Fatalf("%s sent as %s binds to %v %v (%v), want %v %v", tt.cmd, wire, again.vals, again.rest, err, want.vals, want.rest)
				}
			}
		})
	}
}

func TestCommandsGet(t *testing.T) {
	r := NewRegistry(Options{Name: "test", Logger: quietLogger()})
	r.MustRegister(schemaCommands()...)
	tests := []struct {
		name  string
		in    Input
		code  Code
		names []string
		text  string
	}{
		{name: "one by alias", in: Input{Named: map[string]any{"command": "kinds-get"}}, names: []string{"kinds"}},
		{name: "unknown", in: Input{Positional: []string{"nope"}}, code: Unsupported, text: "'nope' command not supported."},
		{name: "extra refused", in: Input{Positional: []string{"a", "b"}}, code: Error, text: `commands-get: unexpected parameter "b": takes at most 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := r.Invoke(context.Background(), "commands-get", tt.in, nil)
			if res.Code != tt.code || (tt.text != "" && res.Text != tt.text) {
				t.Fatalf("commands-get: %d %q, want %d %q", res.Code, res.Text, tt.code, tt.text)
			}
			if tt.names == nil {
				return
			}
			list := res.Args.(map[string]any)["commands"].([]CommandSchema)
			var got []string
			for _, c := range list {
				got = append(got, c.Name)
			}
			if !reflect.DeepEqual(got, tt.names) {
				t.Fatalf("described %v, want %v", got, tt.names)
			}
			ps := list[0].Params
			if ps[4].Aliases[1] != (Alias{"B", "2"}) || !reflect.DeepEqual(ps[1].Range, []float64{0.5, 2}) || ps[1].Default != 1.5 {
				t.Fatalf("params: %+v", ps)
			}
		})
	}
}

func TestLogGet(t *testing.T) {
	ring := logring.New(5, 1<<20)
	log := slog.New(logring.Tee(slog.DiscardHandler, ring, slog.LevelInfo))
	r := NewRegistry(Options{Name: "test", Logger: log, LogRing: ring})
	for i := 1; i <= 8; i++ {
		log.Info("line", "n", i)
	}
	type reply struct {
		Lines  []logring.Line `json:"lines"`
		Next   uint64         `json:"next"`
		Missed uint64         `json:"missed"`
		Epoch  int64          `json:"epoch"`
	}
	tests := []struct {
		name         string
		in           Input
		err          string
		ns           []int
		next, missed uint64
	}{
		{name: "all kept", ns: []int{4, 5, 6, 7, 8}, next: 8, missed: 3},
		{name: "cursor", in: Input{Named: map[string]any{"since": json.Number("6")}}, ns: []int{7, 8}, next: 8},
		{name: "limit", in: Input{Positional: []string{"5", "2"}}, ns: []int{7, 8}, next: 8, missed: 1},
		{name: "up to date", in: Input{Positional: []string{"8"}}, ns: nil, next: 8},
		{name: "limit too big", in: Input{Positional: []string{"0", "1001"}}, err: "log-get: parameter 'limit' out of range: 1001 not in 1..1000"},
		{name: "negative cursor", in: Input{Positional: []string{"-1"}}, err: "log-get: parameter 'since' out of range: -1 not in 0..4611686018427387904"},
		{name: "unknown parameter", in: Input{Named: map[string]any{"level": "x"}}, err: "log-get: parameter 'level' is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := r.Invoke(context.Background(), "log-get", tt.in, nil)
			if tt.err != "" {
				if res.Code != Error || res.Text != tt.err {
					t.Fatalf("got %d %q, want error %q", res.Code, res.Text, tt.err)
				}
				return
			}
			raw, _ := json.Marshal(res.Args)
			var rep reply
			if err := json.Unmarshal(raw, &rep); err != nil {
				t.Fatal(err)
			}
			var ns []int
			for _, l := range rep.Lines {
				var n int
				if _, err := fmt.Sscanf(l.Line[strings.Index(l.Line, "n="):], "n=%d", &n); err != nil || uint64(n) != l.Seq {
					t.Fatalf("line %d: %q", l.Seq, l.Line)
				}
				ns = append(ns, n)
			}
			if !reflect.DeepEqual(ns, tt.ns) || rep.Next != tt.next || rep.Missed != tt.missed || rep.Epoch != ring.Epoch() {
				t.Fatalf("got %v next %d missed %d epoch %d, want %v next %d missed %d", ns, rep.Next, rep.Missed, rep.Epoch, tt.ns, tt.next, tt.missed)
			}
		})
	}
}

// FuzzCommandSchemas feeds commands-get replies, as a hub reads them
// from a daemon, to the decoder and the proxy builder: bad input is an
// error, never a panic, and a proxy that is built binds, describes
// itself and survives its own round trip.
func FuzzCommandSchemas(f *testing.F) {
	r := NewRegistry(Options{Name: "test", Logger: quietLogger()})
	r.MustRegister(schemaCommands()...)
	raw, _ := json.Marshal(r.Invoke(context.Background(), "commands-get", Input{}, nil).Args)
	f.Add(raw)
	f.Add([]byte(`{"commands":[{"name":"x","params":[{"name":"a","type":"int","range":[1]}]}]}`))
	f.Add([]byte(`{"commands":[{"name":"x","params":[{"name":"a","type":"int","rest":true},{"name":"b","type":"bool","default":"maybe"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		schemas, err := DecodeCommandSchemas(data)
		if err != nil {
			return
		}
		for _, s := range schemas {
			c, err := NewCommandFromSchema(s, nil)
			if err != nil {
				continue
			}
			usage := c.LongUsage()
			for _, in := range []Input{{}, {Positional: []string{"1", "x", "-3", "0x10"}}, {Named: map[string]any{"a": json.Number("2.5")}}} {
				if args, err := c.Bind(in); err == nil {
					args.Named()
				}
			}
			again, err := NewCommandFromSchema(c.Schema(), nil)
			if err != nil {
				t.Fatalf("a built command's own schema is refused: %v", err)
			}
			if again.LongUsage() != usage {
				t.Fatalf("usage changes in a round trip:\n%s\n%s", usage, again.LongUsage())
			}
		}
	})
}
