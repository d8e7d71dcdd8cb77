package kea

import (
	"context"
	"encoding/json"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"unicode/utf8"
)

func TestKeaParse(t *testing.T) {
	cases := []struct {
		in   string
		want any
		err  string
	}{
		{`{"command": }`, nil, "error: unexpected character } in <wire>:0:13"},
		{"{\n\"command\": }", nil, "error: unexpected character } in <wire>:1:13"},
		{`{"a":1,}`, nil, "String expected in <wire>:0:8"},
		{`{"a" 1}`, nil, `'1' read, one of ":" expected in <wire>:0:6`},
		{`{"a":1 2}`, nil, `'2' read, one of ",}" expected in <wire>:0:8`},
		{`{"a":tru}`, nil, "Bad boolean value: tru in <wire>:0:5"},
		{`{"a":nil}`, nil, "Bad null value: nil in <wire>:0:5"},
		{`{"a":1-2}`, nil, "Number overflow: 1-2 in <wire>:0:5"},
		{`{"a":99999999999999999999}`, nil, "Number overflow: 99999999999999999999 in <wire>:0:5"},
		{`{"a":"\q"}`, nil, "Bad escape in <wire>:0:7"},
		{`{"a":"x`, nil, "Unterminated string in <wire>:0:8"},
		{`{`, nil, "Unterminated map, <string> or } expected in <wire>:0:1"},
		{`{"a":1`, nil, `EOF read, one of ",}" expected in <wire>:0:7`},
		{`[`, nil, "nothing read"},
		{`{}`, map[string]any{}, ""},
		{`{ }`, map[string]any{}, ""},
		{`[]`, []any{}, ""},
		{`[1,]`, []any{json.Number("1")}, ""},
		{`{"a":1,"a":2}`, map[string]any{"a": json.Number("2")}, ""},
		{`{"n":[+5,-1.50,1e3,true,false,null,"\u00e9\n\ud83d\ude00"]}`, map[string]any{"n": []any{
			json.Number("5"), json.Number("-1.5"), json.Number("1000"), true, false, nil, "é\n😀"}}, ""},
	}
	for _, tc := range cases {
		got, err := parseKeaWire([]byte(tc.in))
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestKeaParseDepth(t *testing.T) {
	deep := make([]byte, 0, 400)
	for i := 0; i < 200; i++ {
		deep = append(deep, '[')
	}
	_, err := parseKeaWire(deep)
	if err == nil || err.Error() != "error: nesting deeper than 100 levels in <wire>:0:101" {
		t.Errorf("deep nesting: %v", err)
	}
}

func TestKeaEncode(t *testing.T) {
	type st struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	cases := []struct {
		v    any
		want string
	}{
		{nil, `null`},
		{map[string]any{}, `{  }`},
		{[]any{}, `[  ]`},
		{[]string{"a", "b"}, `[ "a", "b" ]`},
		{map[string]any{"z": 1, "a": []any{true, 1.5, int64(-3)}}, `{ "a": [ true, 1.5, -3 ], "z": 1 }`},
		{st{A: 1, B: "x"}, `{ "a": 1, "b": "x" }`},
		{"q\"\\\n\x01é\xff\x7f", `"q\"\\\n\u0001é\ufffd\u007f"`},
		{uint8(7), `7`},
	}
	for _, tc := range cases {
		if got := string(appendKeaJSON(nil, tc.v)); got != tc.want {
			t.Errorf("%#v: got %s, want %s", tc.v, got, tc.want)
		}
	}
	if got := string(keaReply(ctl.Result{Code: ctl.Conflict, Text: "t", Args: map[string]any{"k": "v"}})); got != `{ "arguments": { "k": "v" }, "result": 4, "text": "t" }` {
		t.Errorf("reply layout %s", got)
	}
}

// keaFuzzServer is a Kea front end without a socket, for driving request
// handling directly.
func keaFuzzServer() *Server {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := ctl.NewRegistry(ctl.Options{Name: "fuzz", Version: "1", Logger: log})
	d.MustRegister(&ctl.Command{Name: "typed", Params: []ctl.Param{{Name: "n", Type: ctl.Int}, {Name: "s", Type: ctl.String}},
		Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			return ctl.OK("", map[string]any{"n": c.Args.Int("n")})
		}})
	d.MustRegister(&ctl.Command{Name: "echo", AnyArgs: true,
		Handler: func(_ context.Context, c *ctl.Call) ctl.Result { return ctl.OK("", c.Args.Any()) }})
	return &Server{engine: engine{front: ctl.FrontKea, r: d, log: log, opts: Options{MaxRequest: 1 << 16}}}
}

// checkKeaAnswer asserts that an answer is a map with a result code
// 0..4.
func checkKeaAnswer(t *testing.T, v any, reply []byte) {
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("answer is not a map: %s", reply)
	}
	code, ok := m["result"].(float64)
	if !ok || code < 0 || code > 4 || code != float64(int(code)) {
		t.Fatalf("bad result code in %s", reply)
	}
	for k := range m {
		if k != "result" && k != "text" && k != "arguments" {
			t.Fatalf("unexpected key %q in %s", k, reply)
		}
	}
}

// FuzzKeaRequest checks that any input gets a valid JSON answer with a
// result code in 0..4, and that the encoder round-trips what the parser
// reads.
func FuzzKeaRequest(f *testing.F) {
	for _, s := range []string{
		`{"command":"list-commands"}`, `{}`, `{"command":1}`, `[1]`, `{"command":"x","foo":1}`,
		`{"command": }`, `x`, `{"command":"typed","arguments":{"n":"0x10","s":"a"}}`,
		`{"command":"echo","arguments":{"a":[1,{"b":null}],"c":"\u00e9"}}`,
		`{"command":"config-get","service":["a","b"]}`, `{"command":"typed","arguments":[1]}`,
		`{"command":"shutdown","remote-address":"::1"}`,
		// What Kea's Control Agent forwards, and service forms a daemon
		// ignores.
		`{ "command": "list-commands", "remote-address": "127.0.0.1", "service": [ "dhcp4" ] }`,
		`{"command":"config-get","service":"dhcp4"}`, `{"command":"config-get","service":[1,null,{}]}`,
		`{"command":"nosuch","service":["dhcp4","d2"],"arguments":[1]}`,
		// Common commands with arguments they do not take.
		`{"command":"config-get","arguments":{"x":1,"hash":"0"}}`, `{"command":"list-commands","arguments":[1,2]}`,
		`{"command":"version-get","arguments":"x"}`, `{"command":"status-get","arguments":{"service":["dhcp4"]}}`,
		`{"command":"build-report","arguments":true}`, `{"command":"typed","arguments":{"n":1,"bogus":2}}`,
	} {
		f.Add([]byte(s))
	}
	k := keaFuzzServer()
	f.Fuzz(func(t *testing.T, data []byte) {
		feed := newKeaFeed(k.opts.MaxRequest)
		feed.Write(data)
		var reply []byte
		switch feed.Status() {
		case feedNeedMore:
			return
		case feedFailed:
			reply = keaReply(ctl.Fail("%s", feed.Err()))
		default:
			v, err := parseKeaWire(feed.Output())
			if err == nil && utf8.Valid(feed.Output()) {
				enc := appendKeaJSON(nil, v)
				back, err := parseKeaWire(enc)
				if err != nil || !reflect.DeepEqual(back, v) {
					t.Fatalf("round trip of %q: %s gives %#v, %v", feed.Output(), enc, back, err)
				}
			}
			reply = k.handleRequest(context.Background(), feed.Output())
		}
		if len(reply) > 1<<20 {
			t.Fatalf("reply of %d bytes", len(reply))
		}
		var v any
		if err := json.Unmarshal(reply, &v); err != nil {
			t.Fatalf("reply %q is not JSON: %v", reply, err)
		}
		// A daemon answers with one map; only a hub (Forward set)
		// answers with a list, one answer per service.
		checkKeaAnswer(t, v, reply)
	})
}
