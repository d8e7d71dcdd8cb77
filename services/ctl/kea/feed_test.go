package kea

import (
	"bytes"
	"strings"
	"testing"
)

func TestKeaFeed(t *testing.T) {
	cases := []struct {
		in       string
		status   feedStatus
		out      string // processed text
		err      string
		consumed int // -1: all of in
	}{
		{`{"a":1}`, feedComplete, `{"a":1}`, "", -1},
		{`  [1,[2]] tail`, feedComplete, `[1,[2]]`, "", 9},
		{`{"a":"}"}`, feedComplete, `{"a":"}"}`, "", -1},
		{`{"a":"\"}"}`, feedComplete, `{"a":"\"}"}`, "", -1},
		{`{"a":"\\"}`, feedComplete, `{"a":"\\"}`, "", -1},
		{"# c {\n{}", feedComplete, `{}`, "", -1},
		{"// c {\n{}", feedComplete, `{}`, "", -1},
		{"/* { */{}", feedComplete, `{}`, "", -1},
		{"/* **/{}", feedComplete, `{}`, "", -1},
		{"{# c }\n}", feedComplete, "{\n}", "", -1},
		{"{// c }\n}", feedComplete, "{\n}", "", -1},
		{"{/* c \n }*/}", feedComplete, "{\n}", "", -1},
		{`{"a//b":"#"}`, feedComplete, `{"a//b":"#"}`, "", -1},
		{`{"a"`, feedNeedMore, `{"a"`, "", -1},
		{`   `, feedNeedMore, ``, "", -1},
		{`/* {} `, feedNeedMore, ``, "", -1},
		{`x`, feedFailed, ``, "invalid first character x", -1},
		{`"a"`, feedFailed, ``, "invalid first character \"", 1},
		{` x`, feedFailed, ``, "invalid character x", -1},
		{"#\nx", feedFailed, ``, "invalid character x", -1},
		{`/x{}`, feedFailed, ``, "invalid characters /x", 2},
		{`{/x}`, feedFailed, `{`, "invalid characters /x", 3},
	}
	for _, tc := range cases {
		for _, split := range []int{0, 1} {
			f := newKeaFeed(0)
			n := 0
			if split == 0 {
				n = f.Write([]byte(tc.in))
			} else {
				for i := 0; i < len(tc.in); i++ {
					n += f.Write([]byte{tc.in[i]})
				}
			}
			want := tc.consumed
			if want < 0 {
				want = len(tc.in)
			}
			if f.Status() != tc.status || string(f.Output()) != tc.out || f.Err() != tc.err || n != want || f.Consumed() != want {
				t.Errorf("%q split=%d: status %v out %q err %q consumed %d/%d; want %v %q %q %d",
					tc.in, split, f.Status(), f.Output(), f.Err(), n, f.Consumed(), tc.status, tc.out, tc.err, want)
			}
		}
	}
}

func TestKeaFeedLimit(t *testing.T) {
	f := newKeaFeed(10)
	if n := f.Write([]byte(`{"a":"xx"}`)); n != 10 || f.Status() != feedComplete {
		t.Fatalf("exactly at the limit: %d %v %s", n, f.Status(), f.Err())
	}
	f = newKeaFeed(10)
	f.Write([]byte(`{"a":"xxx`))
	f.Write([]byte(`"}`))
	if f.Status() != feedFailed || f.Err() != "request too large: exceeds 10 bytes" || f.Consumed() != 10 {
		t.Fatalf("over the limit: %v %q %d", f.Status(), f.Err(), f.Consumed())
	}
}

// feedResult runs data through a feed in pieces of the given sizes
// (cycled; 0 means all at once).
func feedResult(data []byte, sizes []int) (feedStatus, []byte, string, int) {
	return feedResultWith(newKeaFeed(1<<12), data, sizes)
}

// feedResultWith is feedResult with a given feed.
func feedResultWith(f *keaFeed, data []byte, sizes []int) (feedStatus, []byte, string, int) {
	total := 0
	for i, k := 0, 0; i < len(data); k++ {
		n := len(data) - i
		if len(sizes) > 0 {
			n = min(n, 1+sizes[k%len(sizes)])
		}
		c := f.Write(data[i : i+n])
		total += c
		if c < n {
			// The feed stops only when it is done.
			if f.Status() == feedNeedMore {
				return feedFailed, nil, "stopped early while needing more", total
			}
			break
		}
		i += n
	}
	return f.Status(), append([]byte(nil), f.Output()...), f.Err(), total
}

// FuzzKeaFeed checks that framing does not depend on how the input is
// split into reads, and the output's basic shape.
func FuzzKeaFeed(f *testing.F) {
	for _, s := range []string{
		`{"command":"list-commands"}`, "# c\n{\"a\":[1,2]}", "/* x */ {\"a\":\"}\\\"\"} tail",
		`[{"a":1}]{}`, ` x`, `/x`, "{// c\n}", "{\"a\":/* \n */1}", `{"a`, "{\"\\",
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		st, out, errText, n := feedResult(data, nil)
		if n > len(data) || len(out) > n {
			t.Fatalf("consumed %d of %d, output %d", n, len(data), len(out))
		}
		if n > 1<<12 {
			t.Fatalf("consumed %d past the limit", n)
		}
		for _, sizes := range [][]int{{0}, {int(step)}, {int(step), 0, 3}} {
			st2, out2, err2, n2 := feedResult(data, sizes)
			if st2 != st || !bytes.Equal(out, out2) || err2 != errText || n2 != n {
				t.Fatalf("split %v differs: %v %q %q %d vs whole %v %q %q %d", sizes, st2, out2, err2, n2, st, out, errText, n)
			}
		}
		// A feed reset after another request (as a pooled connection's
		// is) frames the same way as a new one.
		used := newKeaFeed(1 << 12)
		used.Write([]byte(`/* an earlier request */ {"command": "x", "arguments": {"a": [1, "}"]}}`))
		used.reset(1 << 12)
		st3, out3, err3, n3 := feedResultWith(used, data, []int{int(step)})
		if st3 != st || !bytes.Equal(out, out3) || err3 != errText || n3 != n {
			t.Fatalf("reset feed differs: %v %q %q %d vs new %v %q %q %d", st3, out3, err3, n3, st, out, errText, n)
		}
		switch st {
		case feedComplete:
			if len(out) < 2 || (out[0] != '{' && out[0] != '[') || (out[len(out)-1] != '}' && out[len(out)-1] != ']') {
				t.Fatalf("complete output %q", out)
			}
			if errText != "" {
				t.Fatalf("complete with error %q", errText)
			}
			// The parser must not panic on anything the feed passes.
			parseKeaWire(out)
		case feedFailed:
			if errText == "" {
				t.Fatal("failed without a text")
			}
		case feedNeedMore:
			if n != len(data) {
				t.Fatalf("needs more but left %d bytes", len(data)-n)
			}
		}
	})
}

func TestStripComments(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: `{"a": 1}`, want: `{"a": 1}`},
		{in: "# c\n{\"a\": /* x */ 1} // end", want: `{"a":  1}`},
		{in: "{\"a\": 1}\n# trailing\n", want: `{"a": 1}`},
		{in: `{"a": 1} {}`, err: "data after the value"},
		{in: `{"a": 1} /* open`, err: "unterminated"},
		{in: `{"a": 1} /`, err: "data after the value"},
		{in: `{"a": `, err: "unexpected end"},
		{in: `nope`, err: "invalid first character"},
	}
	for _, tc := range tests {
		got, err := StripComments([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
