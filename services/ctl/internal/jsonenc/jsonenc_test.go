package jsonenc

import (
	"encoding/json"
	"math"
	"testing"
)

func TestAppend(t *testing.T) {
	type st struct {
		B string `json:"b"`
		A int    `json:"a"`
	}
	for _, tc := range []struct {
		name            string
		v               any
		spaced, compact string
		compactErr      string
	}{
		{"nil", nil, `null`, `null`, ""},
		{"empty map", map[string]any{}, `{  }`, `{}`, ""},
		{"empty list", []any{}, `[  ]`, `[]`, ""},
		{"strings", []string{"a", "<&>"}, `[ "a", "<&>" ]`, `["a","<&>"]`, ""},
		{"nested", map[string]any{"z": 1, "a": []any{true, 1.5, int64(-3)}},
			`{ "a": [ true, 1.5, -3 ], "z": 1 }`, `{"a":[true,1.5,-3],"z":1}`, ""},
		{"small ints", []any{int8(-1), uint8(7), uint(8), int16(9)}, `[ -1, 7, 8, 9 ]`, `[-1,7,8,9]`, ""},
		// Kea's layout sorts a struct's fields; nose's keeps
		// encoding/json's order and escaping.
		{"struct", st{B: "<x>", A: 1}, `{ "a": 1, "b": "<x>" }`, `{"b":"\u003cx\u003e","a":1}`, ""},
		{"large float", 1e21, `1e+21`, `1e+21`, ""},
		{"small float", 1e-7, `1e-07`, `1e-7`, ""},
		{"float", 123.25, `123.25`, `123.25`, ""},
		{"million", 1e6, `1e+06`, `1000000`, ""},
		{"float32", float32(0.1), `0.1`, `0.1`, ""},
		{"NaN", math.NaN(), `null`, "", "unsupported value: NaN"},
		{"Inf in a map", map[string]any{"x": math.Inf(1)}, `{ "x": null }`, "", "unsupported value: +Inf"},
		{"number", json.Number("12"), `12`, `12`, ""},
		{"empty number", json.Number(""), `0`, `0`, ""},
		{"bad number", json.Number("1x"), `"unencodable value: invalid number \"1x\""`, "", `json: invalid number literal "1x"`},
		{"raw", json.RawMessage(`{"b":[1, 2],"a":null}`), `{ "a": null, "b": [ 1, 2 ] }`, `{"b":[1, 2],"a":null}`, ""},
		{"bad raw", json.RawMessage(`{`), `"undecodable value: unexpected EOF"`, "", "invalid json.RawMessage"},
		{"unencodable", map[string]any{"c": make(chan int)}, `{ "c": "unencodable value: json: unsupported type: chan int" }`, "",
			"json: unsupported type: chan int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Append(nil, tc.v, Spaced)
			if err != nil || string(got) != tc.spaced {
				t.Errorf("Spaced: got %s, %v; want %s", got, err, tc.spaced)
			}
			if !json.Valid(got) {
				t.Errorf("Spaced: invalid JSON %s", got)
			}
			got, err = Append(nil, tc.v, Compact)
			if tc.compactErr != "" {
				if err == nil || err.Error() != tc.compactErr {
					t.Errorf("Compact: got %s, %v; want error %q", got, err, tc.compactErr)
				}
				return
			}
			if err != nil || string(got) != tc.compact {
				t.Errorf("Compact: got %s, %v; want %s", got, err, tc.compact)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", `"plain"`},
		{"q\"\\\n\b\f\r\t\x01\x7f", `"q\"\\\n\b\f\r\t\u0001\u007f"`},
		{"bad \xff utf8", `"bad \ufffd utf8"`},
		{"line\u2028sep\u2029", `"line\u2028sep\u2029"`},
		{"é<&>", `"é<&>"`},
	} {
		if got := string(AppendString(nil, tc.in)); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, "null"}, {true, "boolean"}, {"s", "string"}, {json.Number("1"), "integer"},
		{json.Number("1.5"), "real"}, {json.Number("1e3"), "real"}, {1.5, "real"}, {int64(1), "integer"},
		{[]any{}, "list"}, {map[string]any{}, "map"}, {struct{}{}, "struct {}"},
	} {
		if got := Kind(tc.v); got != tc.want {
			t.Errorf("%#v: got %s, want %s", tc.v, got, tc.want)
		}
	}
}
