package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// mctpWait bounds each wait of checkMctp: a registration to show, a
// message to cross the emulated UART, a control reply to come back.
const mctpWait = 60 * time.Second

// mctpType is the message type checkMctp exchanges (vendor defined, PCI):
// nothing else on either side registers for it.
const mctpType = 0x7e

// mctpStats is the part of mctpd's stats-get reply checkMctp reads.
type mctpStats struct {
	MCTP struct {
		PacketsIn   uint64                       `json:"packets-in"`
		PacketsOut  uint64                       `json:"packets-out"`
		MessagesIn  uint64                       `json:"messages-in"`
		MessagesOut uint64                       `json:"messages-out"`
		Drops       map[string]uint64            `json:"drops"`
		Bindings    map[string]map[string]uint64 `json:"bindings"`
	} `json:"mctp"`
	Demux struct {
		// Clients by message type; JSON keys are the type in decimal.
		Clients map[string]int `json:"clients"`
	} `json:"demux"`
}

func parseMctpStats(out []byte) (mctpStats, error) {
	var reply struct {
		Result    *int
		Arguments mctpStats
	}
	if err := json.Unmarshal(out, &reply); err != nil {
		return mctpStats{}, fmt.Errorf("stats-get: %w: %s", err, out)
	}
	if reply.Result == nil || *reply.Result != 0 {
		return mctpStats{}, fmt.Errorf("stats-get failed: %s", out)
	}
	return reply.Arguments, nil
}

// vmMctpStats asks the image's mctpd over its Kea channel, through ssh.
func vmMctpStats(ctx context.Context, v *vm) (mctpStats, error) {
	out, err := v.ssh(ctx, "/user/ctl", "kea", "/run/mctpd/control.sock", "stats-get")
	if err != nil {
		return mctpStats{}, fmt.Errorf("ctl kea stats-get: %w: %s", err, out)
	}
	return parseMctpStats([]byte(out))
}

// hostMctpd is mctpd on the host, attached to the VM's mctpd line (ttyS1,
// arm64: hvc0) through socat.
type hostMctpd struct {
	bin   string // directory holding the mctpd and mctp programs
	demux string // its demux name
	kea   string // its Kea socket
}

func (h *hostMctpd) stats(ctx context.Context) (mctpStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := kea.Call(ctx, h.kea, []byte(`{"command":"stats-get"}`))
	if err != nil {
		return mctpStats{}, err
	}
	return parseMctpStats(out)
}

// mctp runs the host's mctp client against the host mctpd's demux.
func (h *hostMctpd) mctp(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(h.bin, "mctp"), append([]string{"-demux", h.demux}, args...)...).CombinedOutput()
	return string(out), err
}

// background is a command running while the test does something else.
type background struct {
	out  *testutil.LockedBuffer
	done chan error
}

func startBackground(t *testing.T, cmd *exec.Cmd) *background {
	t.Helper()
	b := &background{out: &testutil.LockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	go func() { b.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-b.done
	})
	return b
}

// logOnFailure prints what b wrote when the test has failed.
func logOnFailure(t *testing.T, what string, b *background) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", what, b.out.String())
		}
	})
}

// wait waits for the command to end and returns its output.
func (b *background) wait(d time.Duration) (string, error) {
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup
		return b.out.String(), err
	case <-time.After(d):
		return b.out.String(), fmt.Errorf("still running after %v", d)
	}
}

// exited reports the command's end without waiting for it.
func (b *background) exited() error {
	select {
	case err := <-b.done:
		b.done <- err
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("%w: %s", err, b.out.String())
	default:
		return nil
	}
}

// waitWhile polls cond like waitFor for at most mctpWait, but gives up at
// once when b ends: a program that failed will not come back.
func waitWhile(ctx context.Context, what string, every time.Duration, b *background, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, mctpWait)
	defer cancel()
	var gone error
	err := waitFor(ctx, what, every, func() error {
		if gone = b.exited(); gone != nil {
			return nil
		}
		return cond(ctx)
	})
	if gone != nil {
		return fmt.Errorf("%s: the program ended: %w", what, gone)
	}
	return err
}

// registered waits until stats report a client of mctpType.
func registered(ctx context.Context, what string, client *background, stats func(context.Context) (mctpStats, error)) error {
	return waitWhile(ctx, what, 200*time.Millisecond, client, func(ctx context.Context) error {
		st, err := stats(ctx)
		if err != nil {
			return err
		}
		if st.Demux.Clients[fmt.Sprint(mctpType)] == 0 {
			return fmt.Errorf("no client of type %#x yet (clients %v)", mctpType, st.Demux.Clients)
		}
		return nil
	})
}

// testBody is n random bytes that start with the two bytes DSP0253
// escapes, so that escaping crosses the line too.
func testBody(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0], b[1] = 0x7e, 0x7d
	return b
}

// checkMctp attaches a host mctpd (EID 9) to the VM's mctpd line (amd64:
// the second serial port ttyS1; arm64: the virtio console port hvc0),
// where the image's mctpd runs as EID 8, the way the README tells a user
// to: socat turns flash.sh's unix socket into a pty for the host mctpd.
// Then Get EID crosses the line, a 200-byte message (four packets) goes
// each way byte-exact, and the VM's mctpd counts the traffic.
func checkMctp(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	began := time.Now()
	// The image's console is ttyS0 (arm64: ttyAMA0) alone: nothing but
	// mctpd uses its line.
	if out, err := v.ssh(ctx, "cat", "/sys/class/tty/console/active"); err != nil || strings.Contains(out, v.mctpTTY) {
		t.Fatalf("console devices: %q (%v); %s must be left to mctpd", out, err, v.mctpTTY)
	}

	dir := testutil.ShortDir(t)
	build := exec.CommandContext(ctx, "go", "build", "-o", dir, "./services/mctpd/cmd/mctpd", "./services/mctpd/cmd/mctp")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mctpd and mctp for the host: %v\n%s", err, out)
	}
	tty := filepath.Join(dir, "tty")
	sock := filepath.Join(v.buildDir, "mctp-serial.sock")
	socat := startBackground(t, exec.Command("socat", "pty,raw,echo=0,link="+tty, "unix-connect:"+sock))
	logOnFailure(t, "socat output", socat)
	err := waitWhile(ctx, "socat's pty", 50*time.Millisecond, socat, func(context.Context) error {
		_, err := os.Stat(tty)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &hostMctpd{bin: dir, demux: "tb-e2e-mctp-" + rand.Text()[:10], kea: filepath.Join(dir, "kea.sock")}
	mctpd := startBackground(t, exec.Command(filepath.Join(dir, "mctpd"), "-e", "9", "-demux", h.demux,
		"-kea", h.kea, "-state", filepath.Join(dir, "state"), "serial", tty))
	logOnFailure(t, "host mctpd stderr", mctpd)
	err = waitWhile(ctx, "host mctpd's Kea channel", 50*time.Millisecond, mctpd, func(ctx context.Context) error {
		_, err := h.stats(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	before, err := vmMctpStats(ctx, v)
	if err != nil {
		t.Fatal(err)
	}

	// (a) Get EID: the request and the reply cross the emulated UART.
	start := time.Now()
	err = waitWhile(ctx, "get-eid from EID 8", time.Second, mctpd, func(ctx context.Context) error {
		out, err := h.mctp(ctx, "ctrl", "get-eid", "-eid", "8", "-timeout", "3s")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if !strings.HasPrefix(out, "eid 8 ") {
			return fmt.Errorf("get-eid: %q, want eid 8", out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mctp: get-eid over the VM's %s answered after %.1f s", v.mctpTTY, time.Since(start).Seconds())

	// (b) host to VM: /user/mctp recv in the VM, mctp send on the host.
	body := testBody(t, 200)
	vmRecv := startBackground(t, v.sshCommand(ctx, "/user/mctp", "recv", "-type", fmt.Sprint(mctpType), "-n", "1",
		"-timeout", mctpWait.String()))
	if err := registered(ctx, "the VM's mctp recv registered", vmRecv, func(ctx context.Context) (mctpStats, error) {
		return vmMctpStats(ctx, v)
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := h.mctp(ctx, "send", "-eid", "8", "-type", fmt.Sprint(mctpType), hex.EncodeToString(body)); err != nil {
		t.Fatalf("host mctp send: %v\n%s", err, out)
	}
	out, err := vmRecv.wait(mctpWait)
	if want := fmt.Sprintf("9 %d %x\n", mctpType, body); err != nil || out != want {
		t.Fatalf("VM mctp recv: %v\ngot  %q\nwant %q", err, out, want)
	}

	// (c) VM to host: mctp recv on the host, /user/mctp send in the VM.
	body = testBody(t, 200)
	hostRecv := startBackground(t, exec.Command(filepath.Join(dir, "mctp"), "-demux", h.demux, "recv",
		"-type", fmt.Sprint(mctpType), "-n", "1", "-timeout", mctpWait.String()))
	if err := registered(ctx, "the host's mctp recv registered", hostRecv, h.stats); err != nil {
		t.Fatal(err)
	}
	if out, err := v.ssh(ctx, "/user/mctp", "send", "-eid", "9", "-type", fmt.Sprint(mctpType), hex.EncodeToString(body)); err != nil {
		t.Fatalf("VM mctp send: %v\n%s", err, out)
	}
	out, err = hostRecv.wait(mctpWait)
	if want := fmt.Sprintf("8 %d %x\n", mctpType, body); err != nil || out != want {
		t.Fatalf("host mctp recv: %v\ngot  %q\nwant %q", err, out, want)
	}

	// (d) The VM's mctpd counted it all: at least the Get EID request and
	// the message in, the reply and the message out, each message as
	// four packets (201 bytes with the type byte, 64 per packet); and its
	// deframer saw no damaged frame.
	after, err := vmMctpStats(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	delta := func(a, b uint64) uint64 { return a - b }
	got := map[string]uint64{
		"messages-in":  delta(after.MCTP.MessagesIn, before.MCTP.MessagesIn),
		"messages-out": delta(after.MCTP.MessagesOut, before.MCTP.MessagesOut),
		"packets-in":   delta(after.MCTP.PacketsIn, before.MCTP.PacketsIn),
		"packets-out":  delta(after.MCTP.PacketsOut, before.MCTP.PacketsOut),
	}
	for k, least := range map[string]uint64{"messages-in": 2, "messages-out": 2, "packets-in": 5, "packets-out": 5} {
		if got[k] < least {
			t.Errorf("VM mctpd %s grew by %d, want at least %d (before %+v, after %+v)", k, got[k], least, before.MCTP, after.MCTP)
		}
	}
	ser, ok := after.MCTP.Bindings["serial:/dev/"+v.mctpTTY]
	if !ok {
		t.Fatalf("VM mctpd has no serial:/dev/%s binding: %v", v.mctpTTY, after.MCTP.Bindings)
	}
	for _, k := range []string{"rx_bad_fcs", "rx_bad_escape", "rx_bad_length", "rx_overrun", "open_errors"} {
		if ser[k] != 0 {
			t.Errorf("VM mctpd serial binding %s = %d, want 0: %v", k, ser[k], ser)
		}
	}
	var js bytes.Buffer
	json.NewEncoder(&js).Encode(after.MCTP)
	t.Logf("mctp: 200-byte messages crossed both ways; the MCTP checks took %.1f s; VM mctpd: %s",
		time.Since(began).Seconds(), strings.TrimSpace(js.String()))
}
