package hub

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/internal/ctltest"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// daemon starts a registry named name on a Kea socket at path, with an
// echo command, and returns its server.
func daemon(t testing.TB, name, path string) *ctl.Server {
	t.Helper()
	r := ctl.NewRegistry(ctl.Options{Name: name, Version: name + "-1.0", Logger: slog.New(slog.DiscardHandler)})
	r.MustRegister(&ctl.Command{
		Name:    "echo",
		AnyArgs: true,
		Handler: func(_ context.Context, c *ctl.Call) ctl.Result { return ctl.OK(name, c.Args.Any()) },
	})
	srv := ctl.NewServer(r)
	if _, err := kea.Serve(srv, ctl.SocketSpec{Addr: path}, kea.Options{}); err != nil {
		t.Fatal(err)
	}
	ctltest.CloseOnCleanup(t, srv)
	return srv
}

func testHub(t *testing.T, timeout time.Duration, services ...string) (*Hub, map[string]string) {
	dir := testutil.ShortDir(t)
	cfg := &Config{Timeout: timeout}
	paths := map[string]string{}
	for _, s := range services {
		paths[s] = filepath.Join(dir, s+".sock")
		cfg.Sockets = append(cfg.Sockets, Socket{Service: s, Type: "unix", Name: paths[s]})
	}
	return New(cfg, nil), paths
}

func TestForward(t *testing.T) {
	h, paths := testHub(t, 5*time.Second, "a", "b", "down")
	daemon(t, "a", paths["a"])
	daemon(t, "b", paths["b"])
	ctx := context.Background()

	tests := []struct {
		service, command string
		args             map[string]any
		wantErr          error // nil: a reply is expected
		wantResult       int
		wantText         string
	}{
		{service: "a", command: "echo", args: map[string]any{"x": 1.0}, wantText: "a"},
		{service: "b", command: "echo", wantText: "b"},
		{service: "a", command: "nosuch", wantResult: 2, wantText: "'nosuch' command not supported."},
		{service: "down", command: "echo", wantErr: syscall_ENOENT},
		{service: "nobody", command: "echo", wantErr: kea.ErrNoService},
	}
	for _, tc := range tests {
		t.Run(tc.service+"/"+tc.command, func(t *testing.T) {
			r, err := h.Command(ctx, tc.service, tc.command, tc.args)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Result != tc.wantResult || r.Text != tc.wantText {
				t.Fatalf("reply = %d %q, want %d %q", r.Result, r.Text, tc.wantResult, tc.wantText)
			}
			if tc.args != nil {
				var got map[string]any
				if err := r.Decode(&got); err != nil || got["x"] != 1.0 {
					t.Fatalf("arguments = %v (%v)", got, err)
				}
			}
		})
	}
}

// TestForwardRetry: a daemon that comes back while the first attempt
// fails is reached by the one retry; one that stays away costs exactly
// two attempts.
func TestForwardRetry(t *testing.T) {
	h, paths := testHub(t, 10*time.Second, "a")
	var attempts atomic.Int32
	dial := h.dial
	h.dial = func(ctx context.Context, path string) (*kea.Conn, error) {
		if attempts.Add(1) == 1 {
			// The daemon starts listening between the two attempts,
			// as a restarted daemon does.
			defer daemon(t, "a", paths["a"])
		}
		return dial(ctx, path)
	}
	r, err := h.Command(context.Background(), "a", "echo", nil)
	if err != nil || r.Text != "a" {
		t.Fatalf("reply %+v, err %v", r, err)
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}

	h2, _ := testHub(t, 10*time.Second, "gone")
	attempts.Store(0)
	dial2 := h2.dial
	h2.dial = func(ctx context.Context, path string) (*kea.Conn, error) {
		attempts.Add(1)
		return dial2(ctx, path)
	}
	if _, err := h2.Command(context.Background(), "gone", "echo", nil); !errors.Is(err, syscall_ENOENT) {
		t.Fatalf("err = %v, want ENOENT", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
}

// TestForwardKeepsConnections: forwards to a tickbox daemon reuse kept-
// open connections, a restart of the daemon costs no forward (the dead
// connection is replaced at once), and the pool stays bounded.
func TestForwardKeepsConnections(t *testing.T) {
	h, paths := testHub(t, 10*time.Second, "a")
	defer h.Close()
	srv := daemon(t, "a", paths["a"])
	var dials atomic.Int32
	dial := h.dial
	h.dial = func(ctx context.Context, path string) (*kea.Conn, error) {
		dials.Add(1)
		return dial(ctx, path)
	}
	ctx := context.Background()
	for i := range 50 {
		if r, err := h.Command(ctx, "a", "echo", map[string]any{"i": float64(i)}); err != nil || r.Text != "a" {
			t.Fatalf("forward %d: %+v %v", i, r, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("50 sequential forwards dialled %d times, want 1", n)
	}

	// Restart: the old process's connections die with it.
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	srv.Close(closeCtx)
	cancel()
	daemon(t, "a", paths["a"])
	start := time.Now()
	if r, err := h.Command(ctx, "a", "echo", nil); err != nil || r.Text != "a" {
		t.Fatalf("forward after the restart: %+v %v", r, err)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials after the restart, want 2", n)
	}
	if el := time.Since(start); el >= retryDelay {
		t.Errorf("a dead kept connection was retried after %v, want at once", el)
	}

	// Concurrent forwards dial more, but at most maxIdle stay.
	var wg sync.WaitGroup
	for range 4 * maxIdle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Command(ctx, "a", "echo", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	p := h.pools["a"]
	p.mu.Lock()
	idle := len(p.idle)
	p.mu.Unlock()
	if idle < 1 || idle > maxIdle {
		t.Fatalf("%d idle connections, want 1..%d", idle, maxIdle)
	}
	h.Close()
	if _, err := h.Command(ctx, "a", "echo", nil); err != nil {
		t.Fatalf("forward after Close: %v", err)
	}
	p.mu.Lock()
	idle = len(p.idle)
	p.mu.Unlock()
	if idle != 0 {
		t.Fatalf("a closed hub keeps %d connections", idle)
	}
}

// TestForwardOneShotDaemon: a daemon that answers one request per
// connection, as Kea's do (the keep-open request is an unknown command
// to it), gets a connection per request.
func TestForwardOneShotDaemon(t *testing.T) {
	h, paths := testHub(t, 10*time.Second, "kea")
	l, err := net.Listen("unix", paths["kea"])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				req := string(buf[:n])
				if strings.Contains(req, kea.KeepOpenCommand) {
					c.Write([]byte(`{ "result": 2, "text": "'` + kea.KeepOpenCommand + `' command not supported." }`))
					return
				}
				c.Write([]byte(`{ "arguments": { "echo": ` + strconv.Quote(req) + ` }, "result": 0 }`))
			}()
		}
	}()
	ctx := context.Background()
	for i := range 3 {
		r, err := h.Command(ctx, "kea", "version-get", nil)
		if err != nil || r.Result != 0 {
			t.Fatalf("forward %d: %+v %v", i, r, err)
		}
		var args struct{ Echo string }
		if err := r.Decode(&args); err != nil || args.Echo != `{"command":"version-get"}` {
			t.Fatalf("the daemon got %q (%v)", args.Echo, err)
		}
	}
	// One refused keep-open, then one connection per forward.
	if n := accepted.Load(); n != 4 {
		t.Fatalf("%d connections for 3 forwards, want 4", n)
	}
}

// TestForwardNoReply: a listener that accepts and closes without a
// reply is retried, then reported.
func TestForwardNoReply(t *testing.T) {
	h, paths := testHub(t, 10*time.Second, "mute")
	l, err := net.Listen("unix", paths["mute"])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			buf := make([]byte, 512)
			c.Read(buf)
			c.Close()
		}
	}()
	_, err = h.Command(context.Background(), "mute", "echo", nil)
	if !errors.Is(err, kea.ErrNoReply) {
		t.Fatalf("err = %v, want ErrNoReply", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (one retry)", n)
	}
}

// TestForwardTimeout: a daemon that accepts and never answers costs the
// configured timeout, not more, and is named as a timeout.
func TestForwardTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h, paths := testHub(t, timeout, "slow")
	l, err := net.Listen("unix", paths["slow"])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = h.Command(context.Background(), "slow", "echo", nil)
	var te *TimeoutError
	if !errors.As(err, &te) || te.Timeout != timeout {
		t.Fatalf("err = %v, want a TimeoutError of %v", err, timeout)
	}
	if !strings.Contains(err.Error(), "forwarding timeout of 300ms") {
		t.Fatalf("err = %q does not name the timeout", err)
	}
	if el := time.Since(start); el < timeout || el > timeout+5*time.Second {
		t.Fatalf("took %v with a timeout of %v", el, timeout)
	}
}

func TestServicesGet(t *testing.T) {
	h, paths := testHub(t, 5*time.Second, "a", "down", "b")
	daemon(t, "a", paths["a"])
	daemon(t, "b", paths["b"])
	states := h.ServicesGet(context.Background())
	if len(states) != 3 {
		t.Fatalf("%d states", len(states))
	}
	for i, want := range []struct {
		name string
		up   bool
	}{{"a", true}, {"down", false}, {"b", true}} {
		s := states[i]
		if s.Service != want.name || s.Up != want.up || s.Socket != paths[want.name] {
			t.Errorf("state %d = %+v, want %s up=%v", i, s, want.name, want.up)
		}
		if want.up {
			if s.PID != os.Getpid() || s.Version != want.name+"-1.0" || s.Error != "" || s.Status == nil {
				t.Errorf("state %d = %+v", i, s)
			}
		} else if !strings.Contains(s.Error, "no such file or directory") {
			t.Errorf("down service's error %q does not keep the OS text", s.Error)
		}
	}

	// services-get through the hub's own registry.
	r := ctl.NewRegistry(ctl.Options{Name: "hub", Logger: slog.New(slog.DiscardHandler)})
	r.MustRegister(h.Commands()...)
	res := r.Invoke(context.Background(), "services-get", ctl.Input{}, nil)
	if res.Code != ctl.Success || res.Text != "2 of 3 services up" {
		t.Fatalf("services-get = %+v", res)
	}
}

func TestDecodeReply(t *testing.T) {
	tests := []struct {
		in      string
		want    Reply
		wantErr bool
	}{
		{in: `{"result":0,"text":"x","arguments":{"a":1}}`, want: Reply{Text: "x", Arguments: []byte(`{"a":1}`)}},
		{in: `[{"result":1,"text":"no"},{"result":0}]`, want: Reply{Result: 1, Text: "no"}},
		{in: `[]`, wantErr: true},
		{in: `"x"`, wantErr: true},
		{in: `{"result":`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := decodeReply([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: err = %v", tc.in, err)
		}
		if err == nil && (got.Result != tc.want.Result || got.Text != tc.want.Text || string(got.Arguments) != string(tc.want.Arguments)) {
			t.Fatalf("%s: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
