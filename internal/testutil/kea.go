package testutil

import (
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"
)

// keaTimeout bounds one Kea exchange in a test: wide, because CI is a
// loaded machine, yet short enough that a server that never answers fails
// the test instead of hanging it.
const keaTimeout = 10 * time.Second

// KeaCall sends req to the Kea control channel socket at path and returns
// the reply, failing the test on any error. It speaks the channel itself
// (connect, write the request, read until the server closes, as a Kea
// server does after its reply) so that any package's tests can use it,
// including the control plane's own.
func KeaCall(t testing.TB, path string, req []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("unix", path, keaTimeout)
	if err != nil {
		t.Fatalf("kea %s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(keaTimeout))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("kea %s: write %s: %v", path, req, err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("kea %s: reply to %s: %v (read so far: %q)", path, req, err, b)
	}
	return b
}

// KeaCommand runs cmd with args (no "arguments" member when args is nil)
// and returns the decoded reply, whatever its result.
func KeaCommand(t testing.TB, path, cmd string, args any) map[string]any {
	t.Helper()
	b := KeaCall(t, path, keaRequest(t, cmd, args))
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("kea %s: reply %s: %v", cmd, b, err)
	}
	return m
}

// KeaArguments runs cmd without arguments, requires result 0 and decodes
// the reply's arguments into out (nil: only the result is checked).
func KeaArguments(t testing.TB, path, cmd string, out any) {
	t.Helper()
	b := KeaCall(t, path, keaRequest(t, cmd, nil))
	var reply struct {
		Result    *int
		Text      string
		Arguments json.RawMessage
	}
	if err := json.Unmarshal(b, &reply); err != nil || reply.Result == nil || *reply.Result != 0 {
		t.Fatalf("kea %s: reply %s (%v)", cmd, b, err)
	}
	if out != nil {
		if err := json.Unmarshal(reply.Arguments, out); err != nil {
			t.Fatalf("kea %s: arguments %s: %v", cmd, reply.Arguments, err)
		}
	}
}

func keaRequest(t testing.TB, cmd string, args any) []byte {
	t.Helper()
	req := map[string]any{"command": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("kea %s: encode arguments: %v", cmd, err)
	}
	return b
}
