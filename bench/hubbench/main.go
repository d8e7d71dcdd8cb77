// Command hubbench measures what forwarding through the ctl hub costs:
// a small command (echo) sent to a daemon's Kea socket directly and
// through the hub's Kea socket (the hub forwards it to the same daemon),
// sequentially and with several clients, in the same run.
//
//	go run ./bench/hubbench [-d 2s] [-clients 8] [-render 200] [-fill 15s] [-json]
//
// Then it times the hub's HTTP endpoints with the real daemons behind
// it: the status page, its JSON snapshot and /metrics (which asks every
// daemon at each scrape), against the hub's own echo over the same
// listener.
//
// The daemon and the hub are ctl serve processes built for the run;
// clients are kea.Call, one connection per request as the Kea channel
// has it. The figures are measured, not checked: read the ratio of
// forwarded to direct throughput, since shared machines are noisy.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

type result struct {
	Path    string  `json:"path"`
	Clients int     `json:"clients"`
	Ops     int     `json:"ops"`
	OpsPerS float64 `json:"ops_per_s"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
}

func main() {
	dur := flag.Duration("d", 2*time.Second, "duration of each measurement")
	clients := flag.Int("clients", 8, "concurrent clients of the parallel measurement")
	asJSON := flag.Bool("json", false, "print results as JSON lines as well")
	renders := flag.Int("render", 200, "times each HTTP endpoint is fetched in the render measurement (0 skips it)")
	fill := flag.Duration("fill", 15*time.Second, "how long the status page's poller runs before the render measurement")
	flag.Parse()
	if err := run(*dur, *clients, *asJSON, *renders, *fill); err != nil {
		fmt.Fprintf(os.Stderr, "hubbench: %v\n", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, clients int, asJSON bool, renders int, fill time.Duration) error {
	dir, err := os.MkdirTemp("", "hubbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctlBin := filepath.Join(dir, "ctl")
	build := exec.Command("go", "build", "-o", ctlBin, "github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build ctl: %w", err)
	}
	daemonSock := filepath.Join(dir, "daemon.sock")
	hubSock := filepath.Join(dir, "hub.sock")
	conf := filepath.Join(dir, "hub.json")
	cfg := fmt.Sprintf(`{"control-sockets": {"d": {"socket-type": "unix", "socket-name": %q}}}`, daemonSock)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return err
	}
	quiet := []string{"-dgram", "", "-ipc", "", "-console", "", "-http", "", "-log-level", "warn", "-max-conns", "4096"}
	for _, args := range [][]string{
		append([]string{"serve", "-kea", daemonSock}, quiet...),
		append([]string{"serve", "-kea", hubSock, "-config", conf}, quiet...),
	} {
		p := exec.Command(ctlBin, args...)
		p.Stderr = os.Stderr
		if err := p.Start(); err != nil {
			return err
		}
		defer func() { p.Process.Kill(); p.Wait() }()
	}
	direct := []byte(`{"command":"echo","arguments":{"k":"v"}}`)
	forwarded := []byte(`{"command":"echo","service":["d"],"arguments":{"k":"v"}}`)
	for _, s := range []string{daemonSock, hubSock} {
		if err := waitUp(s); err != nil {
			return err
		}
	}
	var results []result
	for _, n := range []int{1, clients} {
		for _, tc := range []struct {
			name, sock string
			req        []byte
		}{{"direct", daemonSock, direct}, {"hub", hubSock, forwarded}} {
			r, err := measure(tc.sock, tc.req, n, dur)
			if err != nil {
				return fmt.Errorf("%s with %d clients: %w", tc.name, n, err)
			}
			r.Path = tc.name
			results = append(results, r)
		}
	}
	fmt.Printf("%-8s %7s %9s %10s %9s %9s\n", "path", "clients", "ops", "ops/s", "p50 µs", "p99 µs")
	for _, r := range results {
		fmt.Printf("%-8s %7d %9d %10.0f %9.1f %9.1f\n", r.Path, r.Clients, r.Ops, r.OpsPerS, r.P50us, r.P99us)
	}
	for i := 0; i+1 < len(results); i += 2 {
		fmt.Printf("hub/direct throughput with %d client(s): %.0f%%\n", results[i].Clients, 100*results[i+1].OpsPerS/results[i].OpsPerS)
	}
	if asJSON {
		for _, r := range results {
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
		}
	}
	if renders <= 0 {
		return nil
	}
	rows, err := renderBench(dir, ctlBin, renders, fill)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	fmt.Printf("\nover the hub's HTTP listener, with ptpd, mctpd and mdiod up, %d fetches each, interleaved:\n", renders)
	fmt.Printf("%-26s %9s %9s %9s %9s %9s\n", "endpoint", "bytes", "p50 ms", "p99 ms", "mean ms", "p50/base")
	for _, r := range rows {
		fmt.Printf("%-26s %9d %9.2f %9.2f %9.2f %9.1f\n", r.Name, r.Bytes, r.P50ms, r.P99ms, r.MeanMs, r.P50ms/rows[0].P50ms)
	}
	m := rows[len(rows)-1]
	verdict := "met"
	if m.P50ms > 5 {
		verdict = "not met"
	}
	fmt.Printf("/metrics p50 %.2f ms (target <= 5 ms with all daemons up): %s\n", m.P50ms, verdict)
	if asJSON {
		for _, r := range rows {
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
		}
	}
	return nil
}

func waitUp(sock string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := kea.Call(ctx, sock, []byte(`{"command":"list-commands"}`))
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering: %w", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// measure runs n clients sending req for d and returns throughput and
// latency percentiles. Every reply is checked for result 0.
func measure(sock string, req []byte, n int, d time.Duration) (result, error) {
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
		wg    sync.WaitGroup
	)
	stop := time.Now().Add(d)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				b, err := kea.Call(ctx, sock, req)
				cancel()
				if err == nil && !ok(b) {
					err = fmt.Errorf("reply %s", b)
				}
				if err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return result{}, first
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	return result{Clients: n, Ops: len(lat), OpsPerS: float64(len(lat)) / elapsed.Seconds(), P50us: pct(0.50), P99us: pct(0.99)}, nil
}

// ok reports whether a reply, a map or a hub's list, has result 0
// throughout.
func ok(b []byte) bool {
	type answer struct{ Result *int }
	var list []answer
	if json.Unmarshal(b, &list) != nil {
		var one answer
		if json.Unmarshal(b, &one) != nil {
			return false
		}
		list = []answer{one}
	}
	for _, a := range list {
		if a.Result == nil || *a.Result != 0 {
			return false
		}
	}
	return len(list) > 0
}
