package ptp

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// TestPtpd2PortID: a port identity as sfptpd's display code prints it,
// the host name looked up in an ethers file by the MAC inside the
// EUI-64 clock identity (bytes 0-2 and 5-7).
func TestPtpd2PortID(t *testing.T) {
	ethers := filepath.Join(t.TempDir(), "ethers")
	if err := os.WriteFile(ethers, []byte("# comment\n00:11:22:33:44:55  gm-a\nAA:00:00:00:00:01 grand,master # with a comma\nbad line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id     protocol.PortIdentity
		ethers string
		want   string
	}{
		{protocol.PortIdentity{ClockIdentity: 0x001122fffe334455, PortNumber: 1}, ethers, "0011:22ff:fe33:4455(gm-a)/1"},
		{protocol.PortIdentity{ClockIdentity: 0xaa00000000000001, PortNumber: 0x1a}, ethers, "aa00:0000:0000:0001(grand_master)/1a"},
		{protocol.PortIdentity{ClockIdentity: 0x0200000000000009, PortNumber: 2}, ethers, "0200:0000:0000:0009(unknown)/2"},
		{protocol.PortIdentity{ClockIdentity: 0x001122fffe334455, PortNumber: 1}, filepath.Join(t.TempDir(), "none"), "0011:22ff:fe33:4455(unknown)/1"},
	} {
		if got := ptpd2PortID(tc.id, tc.ethers); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.id, got, tc.want)
		}
	}
}

// TestStateChangeLines: the port's state changes and missing-message
// warnings are sfptpd's lines (its displayStatus and doTimerTick
// texts), state changes at notice level.
func TestStateChangeLines(t *testing.T) {
	p, _, _ := testPort(t, ModeSlave)
	var buf testutil.LockedBuffer
	p.log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p.cfg.EthersFile = filepath.Join(t.TempDir(), "none")
	qualify(t, p, t0, masterA, 128)
	if p.state != instance.Uncalibrated {
		t.Fatalf("state %v", p.state)
	}
	// Nothing more from the master: its Announces time out.
	p.tick(t0.Add(10 * time.Second))
	for _, want := range []string{
		`level=INFO+2 msg="ptp ptp1: now in state: PTP_UNCALIBRATED, best master: aa00:0000:0000:0001(unknown)/1"`,
		`level=WARN msg="ptp ptp1: failed to receive Announce within 3.000 seconds"`,
		`level=INFO+2 msg="ptp ptp1: now in state: PTP_LISTENING"`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, buf.String())
		}
	}
	for _, tc := range []struct {
		s    instance.State
		want string
	}{
		{instance.Master, "ptp ptp1: now in state: PTP_MASTER (self)"},
		{instance.Faulty, "ptp ptp1: now in state: PTP_FAULTY"},
		{instance.Passive, "ptp ptp1: now in state: PTP_PASSIVE"}, // no parent: no best master
	} {
		p.parent = nil
		p.state = tc.s
		if got := p.stateLine(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.s, got, tc.want)
		}
	}
}
