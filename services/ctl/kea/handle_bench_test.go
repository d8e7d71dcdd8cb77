package kea

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// BenchmarkKeaHandle is the work between reading a request and writing
// its reply, without the sockets: framing, parsing, checking, running
// and encoding list-commands, with the log at its default level.
func BenchmarkKeaHandle(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := keaTestDaemon("bench", nil, log)
	e := &engine{front: ctl.FrontKea, opts: Options{MaxRequest: DefaultMaxRequest}, log: log, r: d}
	req := []byte(`{"command":"list-commands"}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f := newKeaFeed(DefaultMaxRequest)
		f.Write(req)
		if isKeepOpen(f.Output()) {
			b.Fatal("keep-open")
		}
		if r := e.handleRequest(ctx, f.Output()); len(r) == 0 {
			b.Fatal("no reply")
		}
	}
}
