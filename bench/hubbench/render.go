package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testdaemon"
)

// renderRow is one endpoint's timing over HTTP.
type renderRow struct {
	Name   string  `json:"name"`
	Bytes  int     `json:"bytes"`
	N      int     `json:"n"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// renderBench starts the real daemons (ptpd on a virtual clock with a
// freerun instance, mctpd on a null binding, mdiod on simulated PHYs),
// a hub fronting them with its HTTP listener, lets the status page's
// poller fill its history, and then times the page, its JSON snapshot
// and /metrics (a full scrape of every daemon) against the hub's own
// echo over the same HTTP listener, the baseline, n times each,
// interleaved.
func renderBench(dir, ctlBin string, n int, fill time.Duration) ([]renderRow, error) {
	bins, err := testdaemon.BuildInto(dir, "ptpd", "mctpd", "mdiod")
	if err != nil {
		return nil, err
	}
	ptpdCfg := filepath.Join(dir, "ptpd.cfg")
	cfg := strings.ReplaceAll("[general]\nsync_module freerun fr1\nselection_policy manual fr1\n"+
		"control_path DIR/ptpd-control.sock\nstate_path DIR/ptpd-state\nstats_log DIR/ptpd-stats.log\n"+
		"json_stats DIR/ptpd-stats.json\nhotplug_detection_mode manual\n", "DIR", dir)
	if err := os.WriteFile(ptpdCfg, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	daemons := []struct {
		name string
		args []string
	}{
		{"ptpd", []string{"-f", ptpdCfg, "-virtual-clock", "500us,30"}},
		{"mctpd", []string{"-e", "8", "-demux", fmt.Sprintf("@hubbench-%d", os.Getpid()), "-tagged-demux", "", "-state", filepath.Join(dir, "mctpd-state"), "null"}},
		{"mdiod", []string{"-ipc-server", "", "-console", "", "-hotplug", "", "-port", "A=sim:88e1512,link=up", "-port", "B=sim:generic100"}},
	}
	var sockets []string
	for _, d := range daemons {
		sock := filepath.Join(dir, d.name+".sock")
		p := exec.Command(bins[d.name], append([]string{"-kea", sock}, d.args...)...)
		if err := p.Start(); err != nil {
			return nil, err
		}
		defer func() { p.Process.Kill(); p.Wait() }()
		if err := waitUp(sock); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		sockets = append(sockets, fmt.Sprintf("%q: {\"socket-type\": \"unix\", \"socket-name\": %q}", d.name, sock))
	}
	conf := filepath.Join(dir, "render-hub.json")
	if err := os.WriteFile(conf, []byte(`{"control-sockets": {`+strings.Join(sockets, ", ")+`}}`), 0o644); err != nil {
		return nil, err
	}
	hub := exec.Command(ctlBin, "serve", "-config", conf, "-kea", filepath.Join(dir, "render-hub.sock"),
		"-dgram", "", "-ipc", "", "-console", "", "-http", "127.0.0.1:0", "-password-file", "", "-log-level", "info")
	stderr, err := hub.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := hub.Start(); err != nil {
		return nil, err
	}
	defer func() { hub.Process.Kill(); hub.Wait() }()
	addr, err := listeningAddr(stderr)
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	// The page's history fills at one point a second.
	time.Sleep(fill)

	client := &http.Client{Timeout: 10 * time.Second}
	type endpoint struct {
		name, method, path, body string
		check                    string // the body must contain it
	}
	eps := []endpoint{
		{"POST / echo (baseline)", "POST", "/", `{"command":"echo","arguments":{"k":"v"}}`, `"result": 0`},
		{"GET / (status page)", "GET", "/", "", "uPlot"},
		{"GET /api/snapshot", "GET", "/api/snapshot", "", `"services"`},
		{"GET /metrics", "GET", "/metrics", "", `tickbox_service_up{service="mdiod"} 1`},
	}
	lat := make([][]time.Duration, len(eps))
	size := make([]int, len(eps))
	for i := 0; i < n; i++ {
		for j, ep := range eps {
			req, err := http.NewRequestWithContext(context.Background(), ep.method, base+ep.path, strings.NewReader(ep.body))
			if err != nil {
				return nil, err
			}
			if ep.method == "POST" {
				req.Header.Set("Content-Type", "application/json")
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ep.name, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			el := time.Since(t0)
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(ep.check)) {
				return nil, fmt.Errorf("%s: %d, %v, %.300s", ep.name, resp.StatusCode, err, b)
			}
			lat[j] = append(lat[j], el)
			size[j] = len(b)
		}
	}
	rows := make([]renderRow, len(eps))
	for j, ep := range eps {
		l := lat[j]
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		var sum time.Duration
		for _, d := range l {
			sum += d
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
		rows[j] = renderRow{Name: ep.name, Bytes: size[j], N: len(l),
			P50ms: ms(l[len(l)/2]), P99ms: ms(l[int(0.99*float64(len(l)-1))]), MeanMs: ms(sum / time.Duration(len(l)))}
	}
	return rows, nil
}

var httpListening = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// listeningAddr reads the hub's log until it says where HTTP listens,
// then keeps draining the log so that the hub never blocks on it.
func listeningAddr(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	found := make(chan string, 1)
	go func() {
		sent := false
		for sc.Scan() {
			if m := httpListening.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case a, ok := <-found:
		if !ok {
			return "", fmt.Errorf("the hub exited before listening on HTTP")
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", fmt.Errorf("the hub's HTTP address %q: %w", a, err)
		}
		return a, nil
	case <-time.After(20 * time.Second):
		return "", fmt.Errorf("the hub did not say where it listens on HTTP")
	}
}
