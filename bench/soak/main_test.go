package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/mctpd/serial"
	"golang.org/x/sys/unix"
)

func TestStatusKiB(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		err      string
	}{
		{"proc status", "Name:\tmctpd\nVmPeak:\t 1265424 kB\nVmRSS:\t    6548 kB\nRssAnon:\t    2156 kB\n", 6548, ""},
		{"no line", "Name:\tx\nVmSize:\t 1 kB\n", 0, "no VmRSS line"},
		{"no unit", "VmRSS:\t 12\n", 0, "odd VmRSS line"},
		{"negative", "VmRSS:\t -12 kB\n", 0, "odd VmRSS line"},
		{"not a number", "VmRSS:\t 1x kB\n", 0, "odd VmRSS line"},
		{"another key first", "VmRSSX:\t 5 kB\nVmRSS: 7 kB\n", 7, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := statusKiB(strings.NewReader(tc.in), "VmRSS")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	// This process's own status has the line.
	if n, err := rssKiB(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("own RSS %d, %v", n, err)
	}
}

func FuzzStatusKiB(f *testing.F) {
	f.Add("VmRSS:\t    6548 kB\n")
	f.Add("VmRSS: 0 kB")
	f.Add("VmRSS:\n")
	f.Fuzz(func(t *testing.T, in string) {
		n, err := statusKiB(strings.NewReader(in), "VmRSS")
		if err == nil && n < 0 {
			t.Fatalf("negative %d from %q", n, in)
		}
	})
}

// openSlave opens a relay's link as mctpd does: raw already, since the
// relay set the termios.
func openSlave(t *testing.T, link string) *os.File {
	t.Helper()
	f, err := os.OpenFile(link, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readFull(t *testing.T, f *os.File, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	f.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	for got < n {
		k, err := f.Read(buf[got:])
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", got, n, err)
		}
		got += k
	}
	return buf
}

// TestRelayPull runs the relay between two ptys, as between the two
// mctpds: bytes cross both ways unchanged; a pull passes on the first
// half of the next frame from A to B, which B reads, then B reads a
// hangup; after the restore the same names carry bytes again.
func TestRelayPull(t *testing.T) {
	dir := t.TempDir()
	la, lb := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	r, err := newRelay(la, lb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	a, b := openSlave(t, la), openSlave(t, lb)
	// Both ways, bytes DSP0253 escapes and a CR/LF a cooked tty would
	// translate included.
	frame := serial.Encode(append([]byte{1, 9, 8, 0xc8, 0x7e, 0x7d, '\r', '\n', 0x03, 0x11}, bytes.Repeat([]byte{0x5a}, 60)...))
	for _, dir := range []struct{ from, to *os.File }{{a, b}, {b, a}} {
		if _, err := dir.from.Write(frame); err != nil {
			t.Fatal(err)
		}
		if got := readFull(t, dir.to, len(frame)); !bytes.Equal(got, frame) {
			t.Fatalf("got % x, want % x", got, frame)
		}
	}
	// Pull while a frame is on its way, B reading meanwhile as mctpd
	// does (a hangup discards what is left unread).
	type read struct {
		b   []byte
		err error
	}
	readB := make(chan read, 1)
	go func() {
		var got []byte
		buf := make([]byte, 256)
		b.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			n, err := b.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				readB <- read{got, err}
				return
			}
		}
	}()
	type pulled struct {
		rep cutReport
		err error
	}
	done := make(chan pulled, 1)
	go func() { rep, err := r.pull(10 * time.Second); done <- pulled{rep, err} }()
	time.Sleep(100 * time.Millisecond) // the copier sees the cut before the frame
	if _, err := a.Write(frame); err != nil {
		t.Fatal(err)
	}
	p := <-done
	if p.err != nil {
		t.Fatal(p.err)
	}
	if p.rep.Passed <= 3 || p.rep.Passed >= len(frame)-3 || p.rep.Passed+p.rep.Held != len(frame) {
		t.Fatalf("cut %+v of a %d-byte frame", p.rep, len(frame))
	}
	rb := <-readB
	if !bytes.Equal(rb.b, frame[:p.rep.Passed]) {
		t.Fatalf("B read % x before the hangup, want the first %d bytes", rb.b, p.rep.Passed)
	}
	if errors.Is(rb.err, os.ErrDeadlineExceeded) {
		t.Fatalf("B read no hangup: %v", rb.err)
	}
	if _, err := os.Lstat(la); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("link %s still there: %v", la, err)
	}
	if err := r.restore(); err != nil {
		t.Fatal(err)
	}
	a2, b2 := openSlave(t, la), openSlave(t, lb)
	if _, err := a2.Write(frame); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, b2, len(frame)); !bytes.Equal(got, frame) {
		t.Fatalf("after restore got % x", got)
	}
}
