package i2c

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

const (
	own  = 0x10
	peer = 0x1d
)

// Byte-exact vectors, computed independently of this package: a Get EID
// request 8->9 written to the peer, and the peer's Get EID response in its
// mailbox (padded to the fixed read length by the test).
const (
	getEIDReq     = "01 09 08 c8 00 80 02"
	getEIDReqW    = "0f 08 21 01 09 08 c8 00 80 02 30"
	getEIDResp    = "01 08 09 c0 00 00 02 00 09 01 00"
	getEIDRespBox = "0c 3b 01 08 09 c0 00 00 02 00 09 01 00 81"
)

func TestPEC(t *testing.T) {
	if got := PEC([]byte("123456789")); got != 0xf4 {
		t.Fatalf("PEC(123456789) = %#02x, want 0xf4", got)
	}
}

func TestEncodeWrite(t *testing.T) {
	if got, want := EncodeWrite(own, peer, testutil.Unhex(t, getEIDReq)), testutil.Unhex(t, getEIDReqW); !bytes.Equal(got, want) {
		t.Fatalf("EncodeWrite = % x, want % x", got, want)
	}
}

func mailbox(t testing.TB, s string) []byte {
	r := make([]byte, ReadLen(binding.BaselineMTU))
	copy(r, testutil.Unhex(t, s))
	return r
}

func TestDecodeRead(t *testing.T) {
	badPEC := mailbox(t, getEIDRespBox)
	badPEC[13] ^= 1
	wrongSrc := mailbox(t, getEIDRespBox)
	wrongSrc[1] = 0x3a
	tests := []struct {
		name    string
		r       []byte
		want    []byte
		wantErr bool
	}{
		{"packet", mailbox(t, getEIDRespBox), testutil.Unhex(t, getEIDResp), false},
		{"empty mailbox", mailbox(t, "00"), nil, false},
		{"bad PEC", badPEC, nil, true},
		{"wrong source", wrongSrc, nil, true},
		{"count too small", mailbox(t, "04 3b 01 08 09"), nil, true},
		{"count too large", mailbox(t, "46"), nil, true},
		{"zero-length read", nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRead(peer, tc.r, binding.BaselineMTU+4)
			if (err != nil) != tc.wantErr || !bytes.Equal(got, tc.want) {
				t.Fatalf("DecodeRead = % x, %v; want % x, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	for _, a := range [][2]uint16{{0x80, 1}, {1, 0x80}, {0x1d, 0x1d}} {
		if _, err := New(&i2ctest.Playback{}, a[0], a[1], 0, nil); err == nil {
			t.Errorf("New(own %#x, peer %#x) accepted", a[0], a[1])
		}
	}
}

func TestBindingPlayback(t *testing.T) {
	bus := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: peer, W: testutil.Unhex(t, getEIDReqW)},
		{Addr: peer, W: []byte{CommandCode}, R: mailbox(t, getEIDRespBox)},
		{Addr: peer, W: []byte{CommandCode}, R: mailbox(t, "00")},
	}}
	b, err := New(bus, own, peer, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "i2c:playback:0x1d" || b.MTU() != binding.BaselineMTU {
		t.Errorf("Name/MTU = %q/%d", b.Name(), b.MTU())
	}
	if err := b.Send(testutil.Unhex(t, getEIDReq)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(make([]byte, 69)); err == nil {
		t.Fatal("69-byte packet accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []byte, 4)
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, func(p []byte) { got <- p }) }()
	select {
	case p := <-got:
		if !bytes.Equal(p, testutil.Unhex(t, getEIDResp)) {
			t.Fatalf("received % x, want %s", p, getEIDResp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no packet received")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		bus.Lock()
		n := bus.Count
		bus.Unlock()
		if n == len(bus.Ops) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("playback consumed %d of %d operations", n, len(bus.Ops))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := b.Stats()
	if s["tx_packets"] != 1 || s["rx_packets"] != 1 || s["tx_bad_length"] != 1 || s["rx_bad_pec"] != 0 {
		t.Errorf("stats %v", s)
	}
}

func TestBindingBusErrors(t *testing.T) {
	// The recorded write does not match, so the bus reports an error; the
	// binding must count it and carry on polling.
	bus := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: peer, W: []byte{0xff}},
	}}
	b, err := New(bus, own, peer, time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Send(testutil.Unhex(t, getEIDReq)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Run(ctx, func([]byte) { t.Error("unexpected packet") }); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := b.Stats()
	if s["tx_errors"] != 1 || s["rx_errors"] == 0 || s["outages"] != 1 {
		t.Fatalf("stats %v: want one write error, poll errors, one outage", s)
	}
}

func TestQueueOverflow(t *testing.T) {
	b, err := New(&i2ctest.Playback{}, own, peer, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	for range sendQueueLen + 5 {
		if err := b.Send(make([]byte, 8)); err == ErrQueueFull {
			full++
		}
	}
	if full != 5 || b.Stats()["tx_queue_full"] != 5 {
		t.Fatalf("queue full %d times, want 5", full)
	}
}

// encodeRead builds a mailbox answer the way a peer would.
func encodeRead(peerAddr uint16, pkt []byte, size int) []byte {
	r := make([]byte, size)
	r[0] = byte(len(pkt) + 1)
	r[1] = byte(peerAddr<<1 | 1)
	copy(r[2:], pkt)
	pec := pecUpdate(0, byte(peerAddr<<1), CommandCode, byte(peerAddr<<1|1))
	r[2+len(pkt)] = pecUpdate(pec, r[:2+len(pkt)]...)
	return r
}

func FuzzDecodeRead(f *testing.F) {
	f.Add(mailbox(f, getEIDRespBox))
	f.Add(mailbox(f, "00"))
	f.Fuzz(func(t *testing.T, r []byte) {
		pkt, err := DecodeRead(peer, r, binding.BaselineMTU+4)
		if err != nil || pkt == nil {
			return
		}
		if len(pkt) < 4 || len(pkt) > binding.BaselineMTU+4 || len(pkt) > len(r)-3 {
			t.Fatalf("packet length %d from %d bytes", len(pkt), len(r))
		}
		again, err := DecodeRead(peer, encodeRead(peer, pkt, len(r)), binding.BaselineMTU+4)
		if err != nil || !bytes.Equal(again, pkt) {
			t.Fatalf("round trip: % x, %v; want % x", again, err, pkt)
		}
	})
}
