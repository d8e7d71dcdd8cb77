package ntp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// behaviour is how a fake server answers.
type behaviour struct {
	offset   time.Duration // the server's clock minus real time
	stratum  uint8
	leap     uint8
	rootDisp time.Duration
	refID    uint32
	kod      string // answer with a kiss-of-death of this code
	raw      []byte // answer with these bytes instead
	silent   bool   // never answer
	mode     uint8  // 0: server (4)
	badOrig  bool   // do not echo the client's transmit timestamp
}

// fakeServer is a small NTP server on a loopback address, answering
// each query as its behaviour says.
type fakeServer struct {
	conn *net.UDPConn
	addr string
	wg   sync.WaitGroup

	mu      sync.Mutex
	b       behaviour
	queries int
}

func startFake(t *testing.T, ip string, b behaviour) *fakeServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("fake NTP server on %s: %v", ip, err)
	}
	f := &fakeServer{conn: conn, addr: conn.LocalAddr().String(), b: b}
	f.wg.Go(f.serve)
	t.Cleanup(func() {
		conn.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) set(b behaviour) {
	f.mu.Lock()
	f.b = b
	f.mu.Unlock()
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries
}

func (f *fakeServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := f.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		rx := time.Now()
		f.mu.Lock()
		f.queries++
		b := f.b
		f.mu.Unlock()
		if b.silent || n < 48 {
			continue
		}
		pkt := b.raw
		if pkt == nil {
			pkt = b.packet(buf[:n], rx)
		}
		_, _ = f.conn.WriteToUDP(pkt, from)
	}
}

// ntpTime encodes t as an NTP timestamp (seconds since 1900, 32.32).
func ntpTime(t time.Time) uint64 {
	const era = 2208988800
	sec := uint64(t.Unix() + era)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// ntpShort encodes a duration in NTP's 16.16 seconds.
func ntpShort(d time.Duration) uint32 {
	return uint32(d.Seconds() * 65536)
}

func (b behaviour) packet(req []byte, rx time.Time) []byte {
	mode := b.mode
	if mode == 0 {
		mode = 4
	}
	stratum, ref := b.stratum, b.refID
	if b.kod != "" {
		stratum = 0
		ref = binary.BigEndian.Uint32([]byte((b.kod + "    ")[:4]))
	}
	var p bytes.Buffer
	p.WriteByte(b.leap<<6 | 4<<3 | mode)
	p.WriteByte(stratum)
	p.WriteByte(6)    // poll
	p.WriteByte(0xEC) // precision 2^-20
	_ = binary.Write(&p, binary.BigEndian, ntpShort(time.Millisecond))
	_ = binary.Write(&p, binary.BigEndian, ntpShort(b.rootDisp))
	_ = binary.Write(&p, binary.BigEndian, ref)
	_ = binary.Write(&p, binary.BigEndian, ntpTime(rx.Add(b.offset-10*time.Second)))
	if b.badOrig {
		p.Write([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	} else {
		p.Write(req[40:48])
	}
	_ = binary.Write(&p, binary.BigEndian, ntpTime(rx.Add(b.offset)))
	_ = binary.Write(&p, binary.BigEndian, ntpTime(time.Now().Add(b.offset)))
	return p.Bytes()
}

// good is a valid stratum-2 server at real time.
func good() behaviour { return behaviour{stratum: 2, refID: 0xC0000201, rootDisp: time.Millisecond} }

// logBuf collects log lines for assertions and echoes them to the test.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	w  io.Writer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	return l.w.Write(p)
}

func (l *logBuf) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

// testConfig polls fast with short timeouts; the servers are given.
func testConfig(servers ...string) Config {
	c := DefaultConfig()
	c.Servers = servers
	c.PollInterval = 150 * time.Millisecond
	c.Timeout = 200 * time.Millisecond
	return c
}

// noDNS makes look-ups of names outside /etc/hosts fail at once,
// without a packet leaving the machine.
func noDNS() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS server in tests")
	}}
}

// run starts an instance and stops it when the test ends.
func run(t *testing.T, cfg Config, clk clock.Clock) (*Instance, *logBuf) {
	t.Helper()
	lb := &logBuf{w: t.Output()}
	n, err := New(cfg, clk, slog.New(slog.NewTextHandler(lb, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	n.resolver = noDNS()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return n, lb
}

// waitFor polls the status until cond holds, failing after limit.
func waitFor(t *testing.T, n *Instance, limit time.Duration, what string, cond func(instance.Status) bool) instance.Status {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := n.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: want %s; status %+v", limit, what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// plainClock hides a virtual clock's realtime mapping, so the instance
// must correct by sampling the clock against the system time.
type plainClock struct{ clock.Clock }

func virtual(t *testing.T, off time.Duration, ppm float64) *clock.Virtual {
	t.Helper()
	vc, err := clock.NewVirtual(off, ppm)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}
