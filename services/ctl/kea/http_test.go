package kea

import (
	"context"
	"encoding/json"
	"testing"
)

// FuzzKeaHTTPBody checks that any HTTP body gets either the 400 verdict
// or a JSON list of answers with result codes in 0..4, as the HTTP
// channel sends them.
func FuzzKeaHTTPBody(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{"command":"list-commands"}`, "{\"command\":\"echo\"}\n", ` {"command":"echo","arguments":{"a":1}} `,
		`{"command":"echo"} x`, `# c` + "\n" + `{"command":"echo"}`, `[1]`, `null`, `{"x":1}`, `{bad`,
		`{"command":"echo","service":["a"]}`, `{"command":"typed","arguments":{"n":"1"}}`,
	} {
		f.Add([]byte(s))
	}
	k := &httpChannel{engine: keaFuzzServer().engine}
	f.Fuzz(func(t *testing.T, data []byte) {
		reply, ok := k.handleBody(context.Background(), data, "127.0.0.1")
		if !ok {
			if _, err := parseKeaBody(data); err == nil && len(data) > 0 {
				t.Fatalf("%q refused but parses", data)
			}
			return
		}
		var list []any
		if err := json.Unmarshal(reply, &list); err != nil || len(list) != 1 {
			t.Fatalf("reply %q is not a list of one: %v", reply, err)
		}
		checkKeaAnswer(t, list[0], reply)
	})
}
