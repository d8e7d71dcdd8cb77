package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// wantWire is a message's bytes on the wire worked out from DSP0253,
// independently of the encoder: per packet the flag, revision and byte
// count, the packet with each 7E or 7D doubled, the FCS and the closing
// flag.
func wantWire(msg []byte, mtu int) int64 {
	var n int64
	for _, p := range costPackets(msg, mtu) {
		n += int64(len(p) + bytes.Count(p, []byte{0x7e}) + bytes.Count(p, []byte{0x7d}) + 6)
	}
	return n
}

// TestQuickSerialCost runs -only serial in its short mode: the wire
// table through a real binding and pty, the CPU rows here and on arm64
// under qemu-aarch64 (with PMULL), and the wire target. No timing is
// judged, only that every figure was measured and is consistent.
func TestQuickSerialCost(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	testutil.NeedTool(t, "qemu-aarch64", "qemu-user")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := runSerialCost(ctx, quickConfig(false), &progress)
	if err != nil {
		t.Fatalf("runSerialCost: %v\nprogress:\n%s", err, progress.String())
	}
	c := rep.cost
	if got, want := len(c.wire), len(costMTUs)*len(sizes)*len(costPayloads); got != want {
		t.Fatalf("%d wire rows, want %d", got, want)
	}
	for _, w := range c.wire {
		msg := costMessage(w.size, w.payload)
		if want := wantWire(msg, w.mtu); w.wire != want {
			t.Errorf("%d B %s at MTU %d: %d bytes on the wire, DSP0253 says %d", w.size, w.payload, w.mtu, w.wire, want)
		}
		if w.payload == payloadWorst && w.perByte() <= 2 {
			t.Errorf("%d B worst case at MTU %d: %.3f wire bytes per byte, want over 2 (every byte escaped)", w.size, w.mtu, w.perByte())
		}
	}
	if c.arm64Missing != "" {
		t.Fatalf("arm64 not measured: %s", c.arm64Missing)
	}
	arches := map[string]cpuReport{}
	for _, r := range c.cpu {
		arches[r.Arch] = r
	}
	arm, ok := arches["arm64"]
	if !ok || !arm.UnderQemu || arm.FCSPath != "PMULL" {
		t.Fatalf("arm64 report %+v: want one from qemu with the PMULL path", arm)
	}
	for _, r := range c.cpu {
		// frame+deframe per MTU, the table per MTU, and the folded path
		// per MTU where there is one.
		want := 2 * len(costMTUs)
		if r.FCSPath != "table" {
			want += len(costMTUs)
		}
		if len(r.Rows) != want {
			t.Errorf("%s: %d CPU rows, want %d: %+v", r.Arch, len(r.Rows), want, r.Rows)
		}
		for _, row := range r.Rows {
			if row.Bytes <= 0 || row.CPUNs < 0 || len(row.Rounds) != 1 {
				t.Errorf("%s %s %s MTU %d: %+v", r.Arch, row.What, row.Path, row.MTU, row)
			}
		}
	}
	var out bytes.Buffer
	rep.print(&out)
	text := out.String()
	for _, want := range []string{"Serial wire overhead", "| 4 KiB | all 7E/7D | 251 | 17 |", "| 64 B | random | 128 | 1 | 74 |",
		"arm64 (qemu-user, relative only) | PMULL | 251 |", "FCS alone", "| arm64 (qemu-user, relative only) | 255 B |"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if got := len(regexp.MustCompile(`(?m)\| (PASS|FAIL) \|$`).FindAllString(text, -1)); got != 1 {
		t.Errorf("%d judged targets, want 1:\n%s", got, text)
	}
	if rep.missed() != 0 {
		t.Errorf("the wire target at MTU %d missed:\n%s", wireTargetMTU, text)
	}
}

// TestSerialCPU runs -only serial-cpu: this architecture's rows alone,
// no wire table and no target.
func TestSerialCPU(t *testing.T) {
	cfg := quickConfig(false)
	rep, err := runSerialCPU(context.Background(), cfg, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.cost.cpu) != 1 || len(rep.cost.wire) != 0 || len(rep.targetRows) != 0 {
		t.Fatalf("serial-cpu measured %+v", rep.cost)
	}
	var out bytes.Buffer
	rep.print(&out)
	if !strings.Contains(out.String(), "FCS alone") || strings.Contains(out.String(), "Serial wire overhead") {
		t.Errorf("serial-cpu report:\n%s", out.String())
	}
}

func TestSerialCPUMainSpec(t *testing.T) {
	for _, spec := range []string{"x", "0/1s", "3/", "3/-1s", "/1s"} {
		if got := serialCPUMain(spec); got != 2 {
			t.Errorf("serialCPUMain(%q) = %d, want 2", spec, got)
		}
	}
}
