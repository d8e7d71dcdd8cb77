package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
	"github.com/tickbox-fw/tickbox/services/ctl/metrics"
)

// prometheusServer is a Prometheus the test started on loopback.
type prometheusServer struct {
	url string
	out *testutil.LockedBuffer
}

// startPrometheus runs Debian's prometheus with a configuration in a
// directory of the test's that scrapes target every second. Its port is
// picked from a listener on port 0, closed for Prometheus to bind;
// should another program take it in between, Prometheus exits and is
// started again on a new port.
func startPrometheus(t *testing.T, exe, target string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	// The job relabels the target's address to an instance name, as
	// the fleet configuration in services/ctl/README.md does.
	yml := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tickbox
    static_configs:
      - targets: ["%s"]
        labels:
          box: test-box
    relabel_configs:
      - source_labels: [box]
        target_label: instance
`, target)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		p := &prometheusServer{url: "http://" + addr, out: &testutil.LockedBuffer{}}
		cmd := exec.Command(exe, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = p.out, p.out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start prometheus: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("prometheus output:\n%s", p.out)
			}
		})
		exited := false
		testutil.WaitFor(t, "prometheus ready", 60*time.Second, func() bool {
			select {
			case <-done:
				exited = true
				return true
			default:
			}
			resp, err := http.Get(p.url + "/-/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if !exited {
			return p
		}
		if attempt == 4 || !strings.Contains(p.out.String(), "address already in use") {
			t.Fatalf("prometheus exited:\n%s", p.out)
		}
	}
}

// sample is one series of an instant query's result.
type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant query through Prometheus's HTTP API.
func (p *prometheusServer) query(t *testing.T, q string) []sample {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: %v %s", q, err, body)
	}
	var out []sample
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, s.Value, err)
		}
		out = append(out, sample{s.Metric, v})
	}
	return out
}

// one runs a query that must give exactly one series and returns its
// value.
func (p *prometheusServer) one(t *testing.T, q string) float64 {
	t.Helper()
	s := p.query(t, q)
	if len(s) != 1 {
		t.Fatalf("query %s: %d series, want 1: %v", q, len(s), s)
	}
	return s[0].value
}

// TestPrometheus has a real Prometheus scrape the handler in front of a
// real hub and real daemons, and checks what it stored against what the
// daemons report.
func TestPrometheus(t *testing.T) {
	exe := testutil.NeedTool(t, "prometheus", "prometheus")
	h := startDaemons(t)
	self := ctl.NewRegistry(ctl.Options{Name: "ctl", Version: "hub-test", Logger: slog.New(slog.DiscardHandler)})
	logs := testutil.NewLogs()
	srv := httptest.NewServer(metrics.Handler(metrics.Options{Source: h, Self: self, Logger: slog.New(logs)}))
	defer srv.Close()
	p := startPrometheus(t, exe, strings.TrimPrefix(srv.URL, "http://"))

	// Wide margin: the first scrape comes within a scrape interval of
	// start, but a loaded machine may take much longer.
	testutil.WaitFor(t, "every service scraped as up", 90*time.Second, func() bool {
		up := 0
		for _, s := range p.query(t, `tickbox_service_up == 1`) {
			if s.labels["instance"] == "test-box" && s.labels["job"] == "tickbox" {
				up++
			}
		}
		return up == 4
	})
	if v := p.one(t, `up{job="tickbox"}`); v != 1 {
		t.Errorf("prometheus's own up for the hub: %v", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	states := h.ServicesGet(ctx)
	for _, st := range states {
		if !st.Up {
			t.Fatalf("%s down: %s", st.Service, st.Error)
		}
		if v := p.one(t, fmt.Sprintf(`tickbox_service_info{service=%q,version=%q}`, st.Service, st.Version)); v != 1 {
			t.Errorf("%s info: %v", st.Service, v)
		}
		// Uptime grows between the scrape and now: at most by the age
		// of the sample, a few scrape intervals.
		up := p.one(t, fmt.Sprintf(`tickbox_service_uptime_seconds{service=%q}`, st.Service))
		if up > float64(st.Uptime) || float64(st.Uptime)-up > 60 {
			t.Errorf("%s uptime %v stored, %d reported now", st.Service, up, st.Uptime)
		}
		// Each scrape asked status-get over the Kea channel: the count
		// grows, so what was stored is at most what is reported now.
		n := p.one(t, fmt.Sprintf(`tickbox_ctl_requests_total{service=%q,front="kea",result="success"}`, st.Service))
		now := reqCount(t, st.Status, "kea", "success")
		if n < 1 || n > now {
			t.Errorf("%s kea successes: %v stored, %v reported now", st.Service, n, now)
		}
	}

	// ptpd: its one freerun instance, selected.
	var inst struct {
		Instances []struct {
			Name, State string
			Selected    bool
			FreqAdjPPB  float64 `json:"freq-adj-ppb"`
		}
	}
	command(t, h, "ptpd", "instances-get", &inst)
	if len(inst.Instances) != 1 {
		t.Fatalf("ptpd instances %+v", inst)
	}
	fr := inst.Instances[0]
	if v := p.one(t, fmt.Sprintf(`tickbox_ptpd_instance_state{sync_instance=%q,state=%q}`, fr.Name, fr.State)); v != 1 {
		t.Errorf("ptpd state %s: %v", fr.State, v)
	}
	if v := p.one(t, fmt.Sprintf(`tickbox_ptpd_instance_selected{sync_instance=%q}`, fr.Name)); v != 1 || !fr.Selected {
		t.Errorf("ptpd selected: %v stored, %v reported", v, fr.Selected)
	}
	if v := p.one(t, fmt.Sprintf(`tickbox_ptpd_frequency_adjustment_ppb{sync_instance=%q}`, fr.Name)); math.Abs(v-fr.FreqAdjPPB) > 1e-6 {
		t.Errorf("ptpd freq adj: %v stored, %v reported", v, fr.FreqAdjPPB)
	}
	p.one(t, fmt.Sprintf(`tickbox_ptpd_offset_seconds{sync_instance=%q}`, fr.Name))
	p.one(t, fmt.Sprintf(`tickbox_ptpd_path_delay_seconds{sync_instance=%q}`, fr.Name))

	// mctpd: a null binding carries nothing, so the counters stay as
	// reported.
	var stats struct {
		MCTP struct {
			PacketsIn  float64 `json:"packets-in"`
			PacketsOut float64 `json:"packets-out"`
		} `json:"mctp"`
	}
	command(t, h, "mctpd", "stats-get", &stats)
	if v := p.one(t, `tickbox_mctp_packets_total{direction="in"}`); v != stats.MCTP.PacketsIn {
		t.Errorf("mctp packets in: %v stored, %v reported", v, stats.MCTP.PacketsIn)
	}
	if v := p.one(t, `tickbox_mctp_packets_total{direction="out"}`); v != stats.MCTP.PacketsOut {
		t.Errorf("mctp packets out: %v stored, %v reported", v, stats.MCTP.PacketsOut)
	}

	// mdiod: both simulated ports, link state and speed as links-get
	// reports them once the watcher has polled: A comes up at its first
	// poll, which a scrape may have preceded.
	testutil.WaitFor(t, "port A's link stored as up", 60*time.Second, func() bool {
		s := p.query(t, `tickbox_mdio_link_up{port="A"} == 1`)
		return len(s) == 1
	})
	var links struct {
		Ports []struct {
			Port    string
			Link    bool
			Speed   float64
			Changes float64
		}
	}
	command(t, h, "mdiod", "links-get", &links)
	if len(links.Ports) != 2 || !links.Ports[0].Link || links.Ports[0].Speed != 1000 || links.Ports[0].Changes != 1 || links.Ports[1].Link {
		t.Fatalf("mdiod links %+v", links)
	}
	for _, l := range links.Ports {
		want := 0.0
		if l.Link {
			want = 1
		}
		if v := p.one(t, fmt.Sprintf(`tickbox_mdio_link_up{port=%q}`, l.Port)); v != want {
			t.Errorf("port %s link: %v stored, %v reported", l.Port, v, l.Link)
		}
		if v := p.one(t, fmt.Sprintf(`tickbox_mdio_link_speed_bytes_per_second{port=%q}`, l.Port)); v != l.Speed*1e6/8 {
			t.Errorf("port %s speed: %v stored, %v Mbit/s reported", l.Port, v, l.Speed)
		}
		if v := p.one(t, fmt.Sprintf(`tickbox_mdio_link_changes_total{port=%q}`, l.Port)); v != l.Changes {
			t.Errorf("port %s changes: %v stored, %v reported", l.Port, v, l.Changes)
		}
	}

	// The hub's own control plane is there too.
	if v := p.one(t, `tickbox_service_up{service="ctl"}`); v != 1 {
		t.Errorf("hub up: %v", v)
	}
	if len(logs.Records()) > 0 {
		t.Errorf("the collector logged:\n%s", logs.Dump())
	}
}

// reqCount reads status-get's requests[front][result].
func reqCount(t *testing.T, st map[string]any, front, result string) float64 {
	t.Helper()
	fronts, _ := st["requests"].(map[string]any)
	codes, _ := fronts[front].(map[string]any)
	n, ok := codes[result].(float64)
	if !ok {
		t.Fatalf("status-get requests %v: no %s %s", st["requests"], front, result)
	}
	return n
}

// command runs a command through the hub and decodes its arguments.
func command(t *testing.T, h *hub.Hub, service, cmd string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.Command(ctx, service, cmd, nil)
	if err != nil || r.Result != 0 {
		t.Fatalf("%s %s: %v %+v", service, cmd, err, r)
	}
	if err := r.Decode(v); err != nil {
		t.Fatalf("%s %s: %v", service, cmd, err)
	}
}
