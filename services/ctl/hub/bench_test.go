package hub

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/internal/ctltest"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// BenchmarkForward compares one echo sent to a daemon's Kea socket
// directly with the same echo through a hub's socket, in one process.
func BenchmarkForward(b *testing.B) {
	dir := testutil.ShortDir(b)
	daemonSock, hubSock := filepath.Join(dir, "d.sock"), filepath.Join(dir, "h.sock")
	daemon(b, "d", daemonSock)
	h := New(&Config{Sockets: []Socket{{Service: "d", Type: "unix", Name: daemonSock}}, Timeout: 10 * time.Second}, nil)
	r := ctl.NewRegistry(ctl.Options{Name: "hub", Logger: slog.New(slog.DiscardHandler)})
	srv := ctl.NewServer(r)
	if _, err := kea.Serve(srv, ctl.SocketSpec{Addr: hubSock}, kea.Options{Forward: h.Forward}); err != nil {
		b.Fatal(err)
	}
	ctltest.CloseOnCleanup(b, srv)
	for _, bc := range []struct{ name, sock, req string }{
		{"direct", daemonSock, `{"command":"echo","arguments":{"k":"v"}}`},
		{"hub", hubSock, `{"command":"echo","service":["d"],"arguments":{"k":"v"}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := []byte(bc.req)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := kea.Call(context.Background(), bc.sock, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
