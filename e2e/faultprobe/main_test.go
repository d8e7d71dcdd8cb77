package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// serveOnce listens on a unix stream socket and answers each connection
// with reply once it has read a request; a nil reply closes the
// connection unanswered.
func serveOnce(t *testing.T, path string, reply []byte) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(buf); err != nil {
					return
				}
				if reply != nil {
					c.Write(reply)
				}
			}()
		}
	}()
}

// staleSocket leaves a socket file nothing listens on, as a killed
// daemon does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// TestProbeClassify: the outcomes the fault test tells apart, over real
// sockets: an answer, an absent or dead daemon, and a malformed answer.
func TestProbeClassify(t *testing.T) {
	const version = "v9-test"
	tests := []struct {
		name, kind string
		setup      func(t *testing.T, path string)
		want       string // result, or its prefix for bad
	}{
		{"kea answer", "kea", func(t *testing.T, p string) {
			serveOnce(t, p, []byte(`{ "result": 0, "text": "v9-test" }`))
		}, "ok"},
		{"kea no socket", "kea", func(*testing.T, string) {}, "down"},
		{"kea stale socket", "kea", staleSocket, "down"},
		{"kea closed unanswered", "kea", func(t *testing.T, p string) { serveOnce(t, p, nil) }, "down"},
		{"kea cut reply", "kea", func(t *testing.T, p string) { serveOnce(t, p, []byte(`{ "result": 0, "te`)) }, "bad:"},
		{"kea wrong version", "kea", func(t *testing.T, p string) {
			serveOnce(t, p, []byte(`{ "result": 0, "text": "v8" }`))
		}, "bad:"},
		{"kea failure", "kea", func(t *testing.T, p string) {
			serveOnce(t, p, []byte(`{ "result": 1, "text": "v9-test" }`))
		}, "bad:"},
		{"ipc answer", "ipc", func(t *testing.T, p string) {
			serveOnce(t, p, []byte(`{"type":"log","msg":"PHY B up\n"}`+"\n"+`{"id":7,"extended":"mdiod v9-test\nbuilt: x\n","success":true}`+"\n"))
		}, "ok"},
		{"ipc cut line", "ipc", func(t *testing.T, p string) { serveOnce(t, p, []byte(`{"id":7,"ext`)) }, "bad:"},
		{"ipc closed unanswered", "ipc", func(t *testing.T, p string) { serveOnce(t, p, nil) }, "down"},
		{"ipc stale socket", "ipc", staleSocket, "down"},
		{"console answer", "console", func(t *testing.T, p string) { serveOnce(t, p, []byte("v9-test\n")) }, "ok"},
		{"console closed unanswered", "console", func(t *testing.T, p string) { serveOnce(t, p, nil) }, "down"},
		{"console wrong output", "console", func(t *testing.T, p string) {
			serveOnce(t, p, []byte("Unknown command, try: ?\n"))
		}, "bad:"},
		{"dgram no socket", "dgram", func(*testing.T, string) {}, "down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(testutil.ShortDir(t), "s.sock")
			tc.setup(t, path)
			addr := path
			if tc.kind == "dgram" {
				addr += ",interfaceinsert=eth0"
			}
			got := probe(tc.kind, addr, version)
			if got != tc.want && !(strings.HasSuffix(tc.want, ":") && strings.HasPrefix(got, tc.want)) {
				t.Fatalf("probe %s: %q, want %q", tc.kind, got, tc.want)
			}
		})
	}
	if got := classify(context.DeadlineExceeded); !strings.HasPrefix(got, "bad:") {
		t.Errorf("a timeout is %q, want bad", got)
	}
}
