package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// TestMain lets the test binary serve as the floor, as the benchmark's
// own binary does.
func TestMain(m *testing.M) {
	if path := os.Getenv(floorEnv); path != "" {
		os.Exit(floorMain(path, os.Getenv(floorReplyEnv)))
	}
	os.Exit(m.Run())
}

// TestQuick runs the whole benchmark with very short measurements, so
// that it keeps working: every row must be measured (operations done,
// latencies and server CPU time taken) and every ratio printed, with a
// verdict on each target. The figures themselves are not judged: the
// machine running the test may be loaded.
func TestQuick(t *testing.T) {
	keaBin := testutil.NeedTool(t, "kea-dhcp4", "kea-dhcp4-server")
	if _, err := exec.LookPath("go"); err != nil {
		testutil.Require(t, fmt.Sprintf("no go on PATH to build ctl: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, err := parseFlags([]string{"-d", "100ms", "-kea-bin", keaBin, "-json"})
	if err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	rep, err := run(ctx, cfg, &out, &progress)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if rep.keaVersion == "" {
		t.Fatalf("Kea at %s was not measured", keaBin)
	}

	servers := []string{serverKea, serverFloor, rep.keaServer()}
	for _, s := range servers {
		for _, n := range []int{1, 8, 64} {
			r, ok := rep.kea[keaKey{s, n}]
			if !ok || r.Ops <= 0 || r.OpsPerS <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.CPUus <= 0 {
				t.Errorf("%s %s: not measured: %+v", s, modeName(n), r)
			}
		}
	}
	rows := map[string]result{}
	for _, r := range rep.results {
		rows[r.Frontend+"/"+r.Mode] = r
	}
	for _, name := range []string{"ipc/request/reply echo", "ipc/request/reply echo, 8 conns", "ipc/pipelined echo",
		"console/line/reply echo", "dgram/blocking sends, 1 client"} {
		if r, ok := rows[name]; !ok || r.Ops <= 0 || r.OpsPerS <= 0 {
			t.Errorf("%s: not measured: %+v", name, r)
		}
	}
	if r := rows["dgram/blocking sends, 1 client"]; r.Lost != 0 {
		t.Errorf("datagrams lost: %s", r.Note)
	}

	// Every ratio line, in the report and in what was printed; the
	// targets with their verdict.
	num := `[0-9]+\.[0-9]{2}x`
	kea := regexp.QuoteMeta(rep.keaServer())
	want := []string{
		`^kea channel sequential / floor: ` + num + ` \(target >= 0\.90x\) (PASS|FAIL)$`,
		`^kea channel p99 / floor p99: ` + num + ` \(target <= 1\.20x\) (PASS|FAIL)$`,
		`^kea channel sequential server CPU / floor's: ` + num + `$`,
		`^kea channel pipelined\(64\) / floor: ` + num + `$`,
		`^kea channel pipelined\(64\) p99 / floor p99: ` + num + `$`,
		`^kea channel pipelined\(8\) / floor: ` + num + `$`,
		`^kea channel sequential / ` + kea + `: ` + num + `$`,
		`^kea channel pipelined\(8\) / ` + kea + `: ` + num + `$`,
		`^kea channel pipelined\(64\) / ` + kea + `: ` + num + `$`,
		`^floor sequential / ` + kea + `: ` + num + `$`,
		`^floor pipelined\(64\) / ` + kea + `: ` + num + `$`,
		`^IPC pipelined echo: [0-9]+/s \(target >= 200000/s\) (PASS|FAIL)$`,
		`^datagram \(sent [0-9]+, ran [0-9]+, lost 0\): [0-9]+/s \(target >= 100000/s, none lost\) (PASS|FAIL)$`,
	}
	lines := strings.Split(out.String(), "\n")
	for _, w := range want {
		re := regexp.MustCompile(w)
		if !slices.ContainsFunc(lines, re.MatchString) {
			t.Errorf("no line matching %s in the output:\n%s", w, out.String())
		}
	}
	targets := 0
	for _, v := range rep.ratios {
		if v.Pass != nil {
			targets++
		}
		if !(v.Value > 0) {
			t.Errorf("ratio %s: %v", v.Name, v.Value)
		}
	}
	if targets != 4 {
		t.Errorf("%d targets judged, want 4 (two of the Kea channel, IPC, datagram)", targets)
	}
	// Table rows, one per result, and a JSON line for each result and
	// ratio.
	for _, r := range rep.results {
		if !strings.Contains(out.String(), fmt.Sprintf("| %s | %s | ", r.Frontend, r.Mode)) {
			t.Errorf("no table row for %s %s", r.Frontend, r.Mode)
		}
	}
	nJSON := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "{") {
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Errorf("JSON line %s: %v", l, err)
			}
			nJSON++
		}
	}
	if want := len(rep.results) + len(rep.ratios); nJSON != want {
		t.Errorf("%d JSON lines, want %d", nJSON, want)
	}
}

// TestFlags checks the command line: defaults, and the refusals.
func TestFlags(t *testing.T) {
	tests := []struct {
		args    []string
		clients []int
		onlyKea bool
		err     string
	}{
		{args: nil, clients: []int{1, 8, 64}},
		{args: []string{"-clients", "1, 64,64", "-only", "kea"}, clients: []int{1, 64}, onlyKea: true},
		{args: []string{"-clients", "0"}, err: "want positive counts"},
		{args: []string{"-clients", "1,x"}, err: "want positive counts"},
		{args: []string{"-only", "ipc"}, err: "the only choice is kea"},
		{args: []string{"-d", "0s"}, err: "want a positive duration"},
		{args: []string{"extra"}, err: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, err := parseFlags(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.clients, tc.clients) || cfg.onlyKea != tc.onlyKea {
				t.Errorf("clients %v only kea %v, want %v %v", cfg.clients, cfg.onlyKea, tc.clients, tc.onlyKea)
			}
		})
	}
}
