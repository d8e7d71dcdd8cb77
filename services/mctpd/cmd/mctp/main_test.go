package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// serve runs a demux with mctpd's router (EID 8, null binding) on a
// random name, and its tagged demux on that name plus "-tagged".
func serve(t *testing.T) (string, *ctl.Demux) {
	t.Helper()
	name, dm, _ := serveTagged(t)
	return name, dm
}

func serveTagged(t *testing.T) (string, *ctl.Demux, *ctl.Demux) {
	t.Helper()
	r, err := mctp.New(mctp.Options{EID: 8, Bindings: []binding.Binding{&mctp.Null{}}, UUID: [16]byte{0: 0xab, 15: 0xcd}})
	if err != nil {
		t.Fatal(err)
	}
	srv := ctl.NewServer(ctl.NewRegistry(ctl.Options{Name: "mctpd", Logger: slog.New(slog.DiscardHandler)}))
	name := "mctp-cli-test-" + rand.Text()[:10]
	dm, err := srv.ServeDemux([]string{name}, ctl.DemuxOptions{Router: r})
	if err != nil {
		t.Fatal(err)
	}
	td, err := srv.ServeDemux([]string{name + "-tagged"}, ctl.DemuxOptions{Router: r, Tagged: true, OnDisconnect: r.ClientGone})
	if err != nil {
		t.Fatal(err)
	}
	r.AttachTagged(td)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, dm) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close(context.Background())
	})
	return name, dm, td
}

func TestCtrl(t *testing.T) {
	name, _ := serve(t)
	for _, tc := range []struct{ cmd, want string }{
		{"get-eid", "eid 8 type 0x01 medium 0x00\n"},
		{"get-version", "1.0\n1.1\n1.2\n1.3.3\n"},
		{"get-types", "types 0\n"},
		{"get-uuid", "uuid ab000000-0000-0000-0000-0000000000cd\n"},
	} {
		var out bytes.Buffer
		if err := run([]string{"-demux", name, "ctrl", tc.cmd, "-eid", "8"}, &out, io.Discard); err != nil {
			t.Fatalf("%s: %v", tc.cmd, err)
		}
		if out.String() != tc.want {
			t.Errorf("%s: %q, want %q", tc.cmd, out.String(), tc.want)
		}
	}
	// The null binding reaches no remote endpoint: no reply comes.
	err := run([]string{"-demux", name, "ctrl", "get-eid", "-eid", "9", "-timeout", "100ms"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no reply") {
		t.Errorf("remote get-eid: %v", err)
	}
}

func TestSendRecv(t *testing.T) {
	name, dm := serve(t)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"-demux", name, "recv", "-type", "1", "-n", "2", "-timeout", "5s"}, &out, io.Discard)
	}()
	for i := 0; dm.Stats().Clients[1] == 0; i++ {
		if i > 500 {
			t.Fatal("recv did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, body := range []string{"1122", "7e7d"} {
		if err := run([]string{"-demux", name, "send", "-eid", "8", "-type", "1", body}, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("%v; got %q", err, out.String())
	}
	if out.String() != "8 1 1122\n8 1 7e7d\n" {
		t.Errorf("recv printed %q", out.String())
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"send", "-eid", "8", "-type", "1", "zz"},
		{"send", "-type", "1", "00"},
		{"recv"},
		{"ctrl"},
		{"ctrl", "get-bogus", "-eid", "8"},
		{"ctrl", "get-eid"},
		{"send", "-eid", "8", "-type", "1", "-tag", "1", "00"},
		{"-tagged", "send", "-eid", "8", "-type", "1", "-tag", "8", "00"},
	} {
		err := run(args, io.Discard, io.Discard)
		ee, ok := err.(*cli.ExitError)
		if !ok || ee.Code != 2 {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// TestTagged runs each command on the tagged demux: ctrl gets its reply
// by tag, recv shows TO and the tag, send sends requests with an
// allocated tag or responses with a given one, and reports mctpd's
// error frames.
func TestTagged(t *testing.T) {
	name, dm, td := serveTagged(t)
	for _, args := range [][]string{
		{"-demux", name, "-tagged"},
		{"-tagged-demux", name + "-tagged"},
	} {
		var out bytes.Buffer
		if err := run(append(args, "ctrl", "get-eid", "-eid", "8"), &out, io.Discard); err != nil || out.String() != "eid 8 type 0x01 medium 0x00\n" {
			t.Fatalf("%q ctrl get-eid: %v %q", args, err, out.String())
		}
	}
	// A tagged and a plain receiver of type 1.
	var tout, pout bytes.Buffer
	done := make(chan error, 2)
	go func() {
		done <- run([]string{"-demux", name, "-tagged", "recv", "-type", "1", "-n", "1", "-timeout", "5s"}, &tout, io.Discard)
	}()
	go func() {
		done <- run([]string{"-demux", name, "recv", "-type", "1", "-n", "2", "-timeout", "5s"}, &pout, io.Discard)
	}()
	for i := 0; td.Registered(1) == 0 || dm.Registered(1) == 0; i++ {
		if i > 500 {
			t.Fatal("recv did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"send", "-eid", "8", "-type", "1", "1122"},
		{"send", "-eid", "8", "-type", "1", "-tag", "6", "3344"},
	} {
		if err := run(append([]string{"-demux", name, "-tagged"}, args...), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("%v; got %q and %q", err, tout.String(), pout.String())
		}
	}
	// The request (to the local EID, as if it came in) reaches both
	// receivers; it got tag 3, the two ctrl requests to EID 8 having
	// had 1 and 2. The response with tag 6 matches no allocation, so it
	// reaches the plain receiver only.
	if tout.String() != "8 1 1122 to=1 tag=3\n" {
		t.Errorf("tagged recv printed %q", tout.String())
	}
	if pout.String() != "8 1 1122\n8 1 3344\n" {
		t.Errorf("plain recv printed %q", pout.String())
	}
	err := run([]string{"-demux", name, "-tagged", "send", "-eid", "9", "-type", "1", "00"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refused the message to EID 9 type 1: code 3") {
		t.Errorf("send over the null binding: %v", err)
	}
	err = run([]string{"-demux", name, "-tagged", "ctrl", "get-eid", "-eid", "9"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "code 3") {
		t.Errorf("ctrl over the null binding: %v", err)
	}
}
