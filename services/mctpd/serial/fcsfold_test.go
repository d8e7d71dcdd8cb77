package serial

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// TestFCSFoldedMatchesTable checks the path fcsUpdate takes on this CPU
// (folded where it can) and the folding routine itself against the
// table, at every length up to 300 bytes, on several random buffers per
// length, from unaligned starts and from several running values.
func TestFCSFoldedMatchesTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 300+16)
	for _, tc := range []struct {
		name string
		f    func(uint16, []byte) uint16
		min  int
	}{
		{"fcsUpdate (" + FCSPath() + ")", func(fcs uint16, p []byte) uint16 { return fcsUpdate(fcs, p...) }, 0},
		{"folded", fcsFolded, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "folded" && !canFold {
				t.Skipf("no carry-less multiplication on this %s CPU: the table is the only path", runtime.GOARCH)
			}
			for n := tc.min; n <= 300; n++ {
				for round := range 4 {
					for i := range buf {
						buf[i] = byte(rng.Uint32())
					}
					off := rng.IntN(16)
					p := buf[off : off+n]
					start := []uint16{fcsInit, 0, uint16(rng.Uint32()), 0x8408}[round]
					want := fcsTable(start, p)
					if got := tc.f(start, p); got != want {
						t.Fatalf("%d bytes at offset %d from %#04x: %#04x, table %#04x", n, off, start, got, want)
					}
				}
			}
		})
	}
}

// FuzzFCS checks the FCS as fcsUpdate computes it on this CPU (folded
// where it can), and the folding routine on its own, against the table,
// whole and split at a point the fuzzer picks.
func FuzzFCS(f *testing.F) {
	f.Add(uint16(fcsInit), uint16(0), []byte("123456789"))
	f.Add(uint16(0), uint16(40), make([]byte, 255))
	f.Fuzz(func(t *testing.T, start, cut uint16, p []byte) {
		want := fcsTable(start, p)
		if got := fcsUpdate(start, p...); got != want {
			t.Fatalf("fcsUpdate(%#04x, %d bytes) = %#04x, table %#04x", start, len(p), got, want)
		}
		c := int(cut) % (len(p) + 1)
		if got := fcsUpdate(fcsUpdate(start, p[:c]...), p[c:]...); got != want {
			t.Fatalf("split at %d of %d: %#04x, table %#04x", c, len(p), got, want)
		}
		if canFold && len(p) >= 16 {
			if got := fcsFolded(start, p); got != want {
				t.Fatalf("fcsFolded(%#04x, %d bytes) = %#04x, table %#04x", start, len(p), got, want)
			}
		}
	})
}

// foldWantEnv, when set, names the folding instruction the FCS must be
// using: TestFCSOnArm64 sets it for the arm64 run under qemu-aarch64, so
// that a build or CPU check that falls back to the table fails instead
// of passing on the table alone.
const foldWantEnv = "TICKBOX_SERIAL_FCS_WANT"

func TestFCSPathInUse(t *testing.T) {
	t.Logf("FCS on %s: %s", runtime.GOARCH, FCSPath())
	want := os.Getenv(foldWantEnv)
	if want == "" {
		return
	}
	if got := FCSPath(); got != want {
		t.Fatalf("FCS path %q, want %q (canFold %v)", got, want, canFold)
	}
}

// TestFCSOnArm64 builds this package's tests for arm64 and runs the FCS
// ones under qemu-aarch64 (user mode, -cpu max, which has PMULL), so
// that the PMULL folding is checked against the table on every run of
// the tests on an amd64 machine, not only on arm64 hardware.
func TestFCSOnArm64(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("on %s the FCS tests run natively; this cross run is for amd64 hosts", runtime.GOARCH)
	}
	qemu := testutil.NeedTool(t, "qemu-aarch64", "qemu-user")
	goBin, err := exec.LookPath("go")
	if err != nil {
		testutil.Require(t, fmt.Sprintf("no go on PATH to build the arm64 tests: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "serial.arm64")
	build := exec.CommandContext(ctx, goBin, "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c for arm64: %v\n%s", err, out)
	}
	run := exec.CommandContext(ctx, qemu, "-cpu", "max", bin,
		"-test.run", "^(TestFCS|FuzzFCS|FuzzDeframer|TestEncodeMatchesBytewise)", "-test.v", "-test.count=1")
	run.Env = append(os.Environ(), foldWantEnv+"=PMULL")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("arm64 FCS tests under qemu-aarch64: %v\n%s", err, out)
	}
	// Each must have run and passed: the folded subtests would be
	// skipped, and TestFCSPathInUse would fail, on the table alone.
	for _, name := range []string{
		"TestFCSPathInUse", "TestFCSPaths/folded", "TestFCSFoldedMatchesTable/folded",
		"TestFCSMatchesBitwise", "FuzzFCS", "FuzzDeframer", "TestEncodeMatchesBytewise",
	} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("no PASS line for %s in the arm64 run:\n%s", name, out)
		}
	}
	if !strings.Contains(string(out), "FCS on arm64: PMULL") {
		t.Errorf("the arm64 run does not report the PMULL path:\n%s", out)
	}
}
