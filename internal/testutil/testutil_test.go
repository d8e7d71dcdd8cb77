package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder stands in for a test so that a helper's failure can be
// checked: Fatal records the message and ends the goroutine, as the real
// one does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(a ...any) {
	r.mu.Lock()
	r.failed = fmt.Sprint(a...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, a ...any) { r.Fatal(fmt.Sprintf(format, a...)) }

// run calls f with a recorder in its own goroutine and returns the
// failure message ("" when f passed).
func run(f func(tb testing.TB)) string {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func TestUnhex(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		fail string
	}{
		{"", []byte{}, ""},
		{"01ff", []byte{1, 0xff}, ""},
		{"01 02  0a", []byte{1, 2, 10}, ""},
		{"0", nil, `bad hex "0"`},
		{"zz", nil, `bad hex "zz"`},
	} {
		var got []byte
		fail := run(func(tb testing.TB) { got = Unhex(tb, tc.in) })
		if tc.fail != "" {
			if !strings.Contains(fail, tc.fail) {
				t.Errorf("Unhex(%q) failure %q, want %q", tc.in, fail, tc.fail)
			}
			continue
		}
		if fail != "" || !bytes.Equal(got, tc.want) {
			t.Errorf("Unhex(%q) = % x, %q; want % x", tc.in, got, fail, tc.want)
		}
	}
}

func TestWaitFor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after int // cond holds from this call on; -1: never
		fail  string
	}{
		{"holds at once", 0, ""},
		{"holds later", 5, ""},
		{"never holds", -1, "timed out after 50ms waiting for the moon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			fail := run(func(tb testing.TB) {
				WaitFor(tb, "the moon", 50*time.Millisecond, func() bool {
					calls++
					return tc.after >= 0 && calls > tc.after
				})
			})
			if fail != tc.fail {
				t.Fatalf("failure %q, want %q", fail, tc.fail)
			}
			if tc.after >= 0 && calls != tc.after+1 {
				t.Fatalf("cond called %d times, want %d", calls, tc.after+1)
			}
		})
	}
}

func TestLockedBuffer(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				fmt.Fprintf(&b, "line\n")
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "line\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
	b.Reset()
	if s := b.String(); s != "" {
		t.Fatalf("after Reset: %q", s)
	}
}

func TestShortDir(t *testing.T) {
	var dir string
	t.Run("make", func(t *testing.T) {
		dir = ShortDir(t)
		// Room for a socket name under sun_path's 107 bytes.
		sock := filepath.Join(dir, "control.sock")
		if len(sock) > 80 {
			t.Fatalf("%s is %d bytes long", sock, len(sock))
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind after the test: %v", dir, err)
	}
}

// keaServer answers each connection's request with reply and records
// what it was sent; it reads one JSON value, as a Kea server does.
func keaServer(t *testing.T, reply string) (path string, got func() []string) {
	path = filepath.Join(ShortDir(t), "k.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var reqs []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var raw json.RawMessage
			if err := json.NewDecoder(c).Decode(&raw); err == nil {
				mu.Lock()
				reqs = append(reqs, string(raw))
				mu.Unlock()
				c.Write([]byte(reply))
			}
			c.Close()
		}
	}()
	return path, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reqs...)
	}
}

func TestKea(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply string
		call  func(tb testing.TB, path string) any
		want  any // what call returns
		req   string
		fail  string
	}{
		{
			name:  "command without arguments",
			reply: `{ "result": 0, "arguments": { "eid": 8 } }`,
			call:  func(tb testing.TB, p string) any { return KeaCommand(tb, p, "endpoints-get", nil) },
			want:  map[string]any{"result": 0.0, "arguments": map[string]any{"eid": 8.0}},
			req:   `{"command":"endpoints-get"}`,
		},
		{
			name:  "command with arguments keeps a failed result",
			reply: `{ "result": 1, "text": "bad eid" }`,
			call:  func(tb testing.TB, p string) any { return KeaCommand(tb, p, "eid-set", map[string]any{"eid": 5}) },
			want:  map[string]any{"result": 1.0, "text": "bad eid"},
			req:   `{"arguments":{"eid":5},"command":"eid-set"}`,
		},
		{
			name:  "raw call",
			reply: `{ "result": 0 }`,
			call:  func(tb testing.TB, p string) any { return string(KeaCall(tb, p, []byte(`{"command": "x"}`))) },
			want:  `{ "result": 0 }`,
			req:   `{"command": "x"}`,
		},
		{
			name:  "arguments decoded",
			reply: `{ "result": 0, "arguments": { "interfaces": ["lo"] } }`,
			call: func(tb testing.TB, p string) any {
				var a struct{ Interfaces []string }
				KeaArguments(tb, p, "interfaces-get", &a)
				return a.Interfaces
			},
			want: []string{"lo"},
			req:  `{"command":"interfaces-get"}`,
		},
		{
			name:  "arguments need result 0",
			reply: `{ "result": 2, "text": "unknown command" }`,
			call:  func(tb testing.TB, p string) any { KeaArguments(tb, p, "nope", nil); return nil },
			req:   `{"command":"nope"}`,
			fail:  `kea nope: reply { "result": 2, "text": "unknown command" }`,
		},
		{
			name:  "arguments need a result",
			reply: `{ "text": "what" }`,
			call:  func(tb testing.TB, p string) any { KeaArguments(tb, p, "nope", nil); return nil },
			req:   `{"command":"nope"}`,
			fail:  `kea nope: reply { "text": "what" }`,
		},
		{
			name:  "reply not JSON",
			reply: `garbage`,
			call:  func(tb testing.TB, p string) any { return KeaCommand(tb, p, "x", nil) },
			req:   `{"command":"x"}`,
			fail:  "kea x: reply garbage",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, reqs := keaServer(t, tc.reply)
			var got any
			fail := run(func(tb testing.TB) { got = tc.call(tb, path) })
			if !strings.HasPrefix(fail, tc.fail) || (tc.fail == "") != (fail == "") {
				t.Fatalf("failure %q, want %q", fail, tc.fail)
			}
			if r := reqs(); len(r) != 1 || r[0] != tc.req {
				t.Fatalf("server got %q, want %q", r, tc.req)
			}
			if tc.fail == "" && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("no server", func(t *testing.T) {
		path := filepath.Join(ShortDir(t), "none.sock")
		fail := run(func(tb testing.TB) { KeaCall(tb, path, []byte(`{}`)) })
		if !strings.Contains(fail, "no such file or directory") {
			t.Fatalf("failure %q", fail)
		}
	})
}
