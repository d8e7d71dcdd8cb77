package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	tbtest "github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// fakeSource answers from fixed replies, as the hub would.
type fakeSource struct {
	states  []hub.ServiceState
	replies map[string]string // service → raw reply
	errs    map[string]error
	delay   time.Duration // before each answer, bounded by ctx

	mu    sync.Mutex
	calls []string
}

func (f *fakeSource) Services() []string {
	var out []string
	for _, s := range f.states {
		out = append(out, s.Service)
	}
	return out
}

func (f *fakeSource) wait(ctx context.Context) error {
	if f.delay == 0 {
		return nil
	}
	select {
	case <-time.After(f.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeSource) Command(ctx context.Context, service, command string, _ map[string]any) (hub.Reply, error) {
	f.mu.Lock()
	f.calls = append(f.calls, service+" "+command)
	f.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return hub.Reply{}, err
	}
	if err := f.errs[service]; err != nil {
		return hub.Reply{}, err
	}
	raw, ok := f.replies[service]
	if !ok {
		return hub.Reply{Result: 2, Text: "'" + command + "' command not supported."}, nil
	}
	var r hub.Reply
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return hub.Reply{}, err
	}
	return r, nil
}

func (f *fakeSource) ServicesGet(ctx context.Context) []hub.ServiceState {
	if err := f.wait(ctx); err != nil {
		out := make([]hub.ServiceState, len(f.states))
		for i, s := range f.states {
			out[i] = hub.ServiceState{Service: s.Service, Error: err.Error()}
		}
		return out
	}
	return f.states
}

// status decodes a status-get argument map as the hub does.
func status(t *testing.T, raw string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	ptpdReply = `{"result":0,"arguments":{"instances":[
		{"name":"ptp1","module":"ptp","state":"slave","selected":true,"offset-ns":-1500,"freq-adj-ppb":12.5,"path-delay-ns":250000,"master":"gm","alarms":[],"adaptive-outlier-filter-discards":3},
		{"name":"free","module":"freerun","state":"freerun","selected":false,"offset-ns":0,"freq-adj-ppb":0,"path-delay-ns":0,"master":"","alarms":[]}]}}`
	mctpdReply = `{"result":0,"arguments":{"mctp":{"packets-in":10,"send-waits":1,"packets-out":7,"messages-in":4,"messages-out":3,
		"drops":{"sequence":2,"short":1},"reassembly-pending":1,"tags-outstanding":0,
		"bindings":{"i2c0":{"rx_packets":10,"tx_packets":7}},"packets-forwarded":0,"forwarded":[]},
		"demux":{"registrations":2,"in":3,"out":4,"delivered":4,"drop-short":0,"drop-too-big":0,"drop-route":1,"drop-no-client":5,"drop-overflow":0,"overflows":0,"clients":{"1":2}}}}`
	mdiodReply = `{"result":0,"arguments":{"events":3,"ports":[
		{"port":"A","phy":1,"link":true,"speed":1000,"duplex":"full","changes":3},
		{"port":"B","phy":2,"link":false,"speed":0,"duplex":"","changes":0}]}}`
)

func TestCollect(t *testing.T) {
	upState := func(t *testing.T, svc string) hub.ServiceState {
		return hub.ServiceState{Service: svc, Up: true, Version: "v1.2.3", Uptime: 42,
			Status: status(t, `{"pid":7,"uptime":42,"reload":42,"reloads":0,
				"requests":{"kea":{"success":12,"error":1}},"connections":{"kea":1},"connections-accepted":{"kea":13}}`)}
	}
	tests := []struct {
		name    string
		states  func(t *testing.T) []hub.ServiceState
		replies map[string]string
		errs    map[string]error
		metrics []string
		want    string
		logs    []string // messages that must be logged
	}{
		{
			name: "every daemon up",
			states: func(t *testing.T) []hub.ServiceState {
				return []hub.ServiceState{upState(t, "ptpd"), upState(t, "mctpd"), upState(t, "mdiod")}
			},
			replies: map[string]string{"ptpd": ptpdReply, "mctpd": mctpdReply, "mdiod": mdiodReply},
			metrics: []string{"tickbox_service_up", "tickbox_service_uptime_seconds", "tickbox_service_info",
				"tickbox_ctl_requests_total", "tickbox_ctl_connections", "tickbox_ctl_connections_accepted_total",
				"tickbox_ptpd_offset_seconds", "tickbox_ptpd_frequency_adjustment_ppb", "tickbox_ptpd_path_delay_seconds",
				"tickbox_ptpd_instance_state", "tickbox_ptpd_instance_selected", "tickbox_ptpd_outlier_discards_total",
				"tickbox_mctp_packets_total", "tickbox_mctp_messages_total", "tickbox_mctp_drops_total", "tickbox_mctp_binding_events_total",
				"tickbox_mctp_reassembly_pending", "tickbox_mctp_demux_drops_total", "tickbox_mctp_demux_clients",
				"tickbox_mdio_link_up", "tickbox_mdio_link_speed_bytes_per_second", "tickbox_mdio_link_changes_total", "tickbox_mdio_link_events_total"},
			want: `
# HELP tickbox_service_up Whether the service answered status-get in this scrape (1) or not (0).
# TYPE tickbox_service_up gauge
tickbox_service_up{service="mctpd"} 1
tickbox_service_up{service="mdiod"} 1
tickbox_service_up{service="ptpd"} 1
# HELP tickbox_service_uptime_seconds Seconds since the service started (re-executions in place keep counting).
# TYPE tickbox_service_uptime_seconds gauge
tickbox_service_uptime_seconds{service="mctpd"} 42
tickbox_service_uptime_seconds{service="mdiod"} 42
tickbox_service_uptime_seconds{service="ptpd"} 42
# HELP tickbox_service_info The service's version, as version-get reports it; always 1.
# TYPE tickbox_service_info gauge
tickbox_service_info{service="mctpd",version="v1.2.3"} 1
tickbox_service_info{service="mdiod",version="v1.2.3"} 1
tickbox_service_info{service="ptpd",version="v1.2.3"} 1
# HELP tickbox_ctl_requests_total Control-plane requests by front end and result code name.
# TYPE tickbox_ctl_requests_total counter
tickbox_ctl_requests_total{front="kea",result="error",service="mctpd"} 1
tickbox_ctl_requests_total{front="kea",result="success",service="mctpd"} 12
tickbox_ctl_requests_total{front="kea",result="error",service="mdiod"} 1
tickbox_ctl_requests_total{front="kea",result="success",service="mdiod"} 12
tickbox_ctl_requests_total{front="kea",result="error",service="ptpd"} 1
tickbox_ctl_requests_total{front="kea",result="success",service="ptpd"} 12
# HELP tickbox_ctl_connections Connections being served, by front end.
# TYPE tickbox_ctl_connections gauge
tickbox_ctl_connections{front="kea",service="mctpd"} 1
tickbox_ctl_connections{front="kea",service="mdiod"} 1
tickbox_ctl_connections{front="kea",service="ptpd"} 1
# HELP tickbox_ctl_connections_accepted_total Connections accepted since the service started, by front end.
# TYPE tickbox_ctl_connections_accepted_total counter
tickbox_ctl_connections_accepted_total{front="kea",service="mctpd"} 13
tickbox_ctl_connections_accepted_total{front="kea",service="mdiod"} 13
tickbox_ctl_connections_accepted_total{front="kea",service="ptpd"} 13
# HELP tickbox_ptpd_offset_seconds Offset from the sync instance's master, in seconds.
# TYPE tickbox_ptpd_offset_seconds gauge
tickbox_ptpd_offset_seconds{service="ptpd",sync_instance="free"} 0
tickbox_ptpd_offset_seconds{service="ptpd",sync_instance="ptp1"} -1.5e-06
# HELP tickbox_ptpd_frequency_adjustment_ppb Frequency adjustment the sync instance's servo applies, in parts per billion.
# TYPE tickbox_ptpd_frequency_adjustment_ppb gauge
tickbox_ptpd_frequency_adjustment_ppb{service="ptpd",sync_instance="free"} 0
tickbox_ptpd_frequency_adjustment_ppb{service="ptpd",sync_instance="ptp1"} 12.5
# HELP tickbox_ptpd_path_delay_seconds Mean path delay to the sync instance's master, in seconds.
# TYPE tickbox_ptpd_path_delay_seconds gauge
tickbox_ptpd_path_delay_seconds{service="ptpd",sync_instance="free"} 0
tickbox_ptpd_path_delay_seconds{service="ptpd",sync_instance="ptp1"} 0.00025
# HELP tickbox_ptpd_instance_state The sync instance's state: 1 for the state it is in (one series per instance).
# TYPE tickbox_ptpd_instance_state gauge
tickbox_ptpd_instance_state{service="ptpd",state="freerun",sync_instance="free"} 1
tickbox_ptpd_instance_state{service="ptpd",state="slave",sync_instance="ptp1"} 1
# HELP tickbox_ptpd_instance_selected Whether the sync instance is the selected one (1) or not (0).
# TYPE tickbox_ptpd_instance_selected gauge
tickbox_ptpd_instance_selected{service="ptpd",sync_instance="free"} 0
tickbox_ptpd_instance_selected{service="ptpd",sync_instance="ptp1"} 1
# HELP tickbox_ptpd_outlier_discards_total Offsets the sync instance's outlier filter discarded (sfptpd's adaptive-outlier-filter-discards).
# TYPE tickbox_ptpd_outlier_discards_total counter
tickbox_ptpd_outlier_discards_total{service="ptpd",sync_instance="ptp1"} 3
# HELP tickbox_mctp_packets_total MCTP packets received (in) and sent (out) on every binding; forwarded packets count as received.
# TYPE tickbox_mctp_packets_total counter
tickbox_mctp_packets_total{direction="in",service="mctpd"} 10
tickbox_mctp_packets_total{direction="out",service="mctpd"} 7
# HELP tickbox_mctp_messages_total Reassembled MCTP messages received (in) and messages sent (out).
# TYPE tickbox_mctp_messages_total counter
tickbox_mctp_messages_total{direction="in",service="mctpd"} 4
tickbox_mctp_messages_total{direction="out",service="mctpd"} 3
# HELP tickbox_mctp_drops_total MCTP packets and messages the router dropped, by reason.
# TYPE tickbox_mctp_drops_total counter
tickbox_mctp_drops_total{reason="sequence",service="mctpd"} 2
tickbox_mctp_drops_total{reason="short",service="mctpd"} 1
# HELP tickbox_mctp_binding_events_total A binding's own counters, by binding and counter name.
# TYPE tickbox_mctp_binding_events_total counter
tickbox_mctp_binding_events_total{binding="i2c0",counter="rx_packets",service="mctpd"} 10
tickbox_mctp_binding_events_total{binding="i2c0",counter="tx_packets",service="mctpd"} 7
# HELP tickbox_mctp_reassembly_pending Partial messages being reassembled.
# TYPE tickbox_mctp_reassembly_pending gauge
tickbox_mctp_reassembly_pending{service="mctpd"} 1
# HELP tickbox_mctp_demux_drops_total Demux messages dropped, by reason.
# TYPE tickbox_mctp_demux_drops_total counter
tickbox_mctp_demux_drops_total{demux="demux",reason="no-client",service="mctpd"} 5
tickbox_mctp_demux_drops_total{demux="demux",reason="overflow",service="mctpd"} 0
tickbox_mctp_demux_drops_total{demux="demux",reason="route",service="mctpd"} 1
tickbox_mctp_demux_drops_total{demux="demux",reason="short",service="mctpd"} 0
tickbox_mctp_demux_drops_total{demux="demux",reason="too-big",service="mctpd"} 0
# HELP tickbox_mctp_demux_clients Demux clients connected, by registered message type.
# TYPE tickbox_mctp_demux_clients gauge
tickbox_mctp_demux_clients{demux="demux",service="mctpd",type="1"} 2
# HELP tickbox_mdio_link_up Whether the port's link is up (1) or down (0), as the link watcher last saw it.
# TYPE tickbox_mdio_link_up gauge
tickbox_mdio_link_up{port="A",service="mdiod"} 1
tickbox_mdio_link_up{port="B",service="mdiod"} 0
# HELP tickbox_mdio_link_speed_bytes_per_second The port's resolved link speed in bytes per second (0 while down).
# TYPE tickbox_mdio_link_speed_bytes_per_second gauge
tickbox_mdio_link_speed_bytes_per_second{port="A",service="mdiod"} 1.25e+08
tickbox_mdio_link_speed_bytes_per_second{port="B",service="mdiod"} 0
# HELP tickbox_mdio_link_changes_total Link events the watcher reported for the port.
# TYPE tickbox_mdio_link_changes_total counter
tickbox_mdio_link_changes_total{port="A",service="mdiod"} 3
tickbox_mdio_link_changes_total{port="B",service="mdiod"} 0
# HELP tickbox_mdio_link_events_total Link events of every port since the daemon started.
# TYPE tickbox_mdio_link_events_total counter
tickbox_mdio_link_events_total{service="mdiod"} 3
`,
		},
		{
			name: "a daemon down gives up 0 and nothing else",
			states: func(t *testing.T) []hub.ServiceState {
				return []hub.ServiceState{{Service: "ptpd", Error: "dial unix /run/ptpd/control.sock: connect: connection refused"}, upState(t, "mdiod")}
			},
			// Even if the command answered (it was asked in parallel),
			// a service status-get calls down has no other series.
			replies: map[string]string{"ptpd": ptpdReply, "mdiod": mdiodReply},
			metrics: []string{"tickbox_service_up", "tickbox_service_info", "tickbox_ptpd_offset_seconds", "tickbox_ptpd_instance_selected", "tickbox_mdio_link_up"},
			want: `
# HELP tickbox_service_up Whether the service answered status-get in this scrape (1) or not (0).
# TYPE tickbox_service_up gauge
tickbox_service_up{service="mdiod"} 1
tickbox_service_up{service="ptpd"} 0
# HELP tickbox_service_info The service's version, as version-get reports it; always 1.
# TYPE tickbox_service_info gauge
tickbox_service_info{service="mdiod",version="v1.2.3"} 1
# HELP tickbox_mdio_link_up Whether the port's link is up (1) or down (0), as the link watcher last saw it.
# TYPE tickbox_mdio_link_up gauge
tickbox_mdio_link_up{port="A",service="mdiod"} 1
tickbox_mdio_link_up{port="B",service="mdiod"} 0
`,
		},
		{
			name: "malformed replies are skipped, the rest is served",
			states: func(t *testing.T) []hub.ServiceState {
				return []hub.ServiceState{upState(t, "ptpd"), upState(t, "mdiod"), upState(t, "mctpd")}
			},
			replies: map[string]string{"ptpd": `{"result":0,"arguments":{"instances":{"ptp1":1}}}`, "mdiod": `{"result":0,"arguments":{"ports":[{"port":"A","link":true,"speed":100,"changes":-1}]}}`, "mctpd": `{"result":0,"arguments":[1,2]}`},
			metrics: []string{"tickbox_service_up", "tickbox_ptpd_offset_seconds", "tickbox_mdio_link_up", "tickbox_mctp_packets_total"},
			want: `
# HELP tickbox_service_up Whether the service answered status-get in this scrape (1) or not (0).
# TYPE tickbox_service_up gauge
tickbox_service_up{service="mctpd"} 1
tickbox_service_up{service="mdiod"} 1
tickbox_service_up{service="ptpd"} 1
`,
			logs: []string{"malformed reply skipped"},
		},
		{
			name: "a refused or failed command is logged",
			states: func(t *testing.T) []hub.ServiceState {
				return []hub.ServiceState{upState(t, "ptpd"), upState(t, "mdiod")}
			},
			replies: map[string]string{"ptpd": `{"result":1,"text":"engine not running"}`},
			errs:    map[string]error{"mdiod": errors.New("forward: connection reset by peer")},
			metrics: []string{"tickbox_service_up", "tickbox_ptpd_offset_seconds", "tickbox_mdio_link_up"},
			want: `
# HELP tickbox_service_up Whether the service answered status-get in this scrape (1) or not (0).
# TYPE tickbox_service_up gauge
tickbox_service_up{service="mdiod"} 1
tickbox_service_up{service="ptpd"} 1
`,
			logs: []string{"metrics command refused", "metrics command failed"},
		},
		{
			name: "duplicate and nameless instances, bad status fields",
			states: func(t *testing.T) []hub.ServiceState {
				return []hub.ServiceState{{Service: "ptpd", Up: true, Version: "v1",
					Status: status(t, `{"uptime":"soon","requests":{"kea":{"success":3,"error":"x"},"ipc":7},"connections":{"kea":-1,"console":2}}`)}}
			},
			replies: map[string]string{"ptpd": `{"result":0,"arguments":{"instances":[
				{"name":"a","state":"slave","selected":true,"offset-ns":1000},
				{"name":"a","state":"master","selected":false,"offset-ns":2000},
				{"state":"listening","offset-ns":3}]}}`},
			metrics: []string{"tickbox_service_uptime_seconds", "tickbox_ctl_requests_total", "tickbox_ctl_connections", "tickbox_ptpd_offset_seconds", "tickbox_ptpd_instance_state"},
			want: `
# HELP tickbox_ctl_requests_total Control-plane requests by front end and result code name.
# TYPE tickbox_ctl_requests_total counter
tickbox_ctl_requests_total{front="kea",result="success",service="ptpd"} 3
# HELP tickbox_ctl_connections Connections being served, by front end.
# TYPE tickbox_ctl_connections gauge
tickbox_ctl_connections{front="console",service="ptpd"} 2
# HELP tickbox_ptpd_offset_seconds Offset from the sync instance's master, in seconds.
# TYPE tickbox_ptpd_offset_seconds gauge
tickbox_ptpd_offset_seconds{service="ptpd",sync_instance="a"} 1e-06
# HELP tickbox_ptpd_instance_state The sync instance's state: 1 for the state it is in (one series per instance).
# TYPE tickbox_ptpd_instance_state gauge
tickbox_ptpd_instance_state{service="ptpd",state="master",sync_instance="a"} 1
tickbox_ptpd_instance_state{service="ptpd",state="slave",sync_instance="a"} 1
`,
			logs: []string{"malformed reply skipped", "metrics: duplicate series skipped"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := tbtest.NewLogs()
			src := &fakeSource{states: tc.states(t), replies: tc.replies, errs: tc.errs}
			c := New(Options{Source: src, Logger: slog.New(logs)})
			if err := testutil.CollectAndCompare(c, strings.NewReader(tc.want), tc.metrics...); err != nil {
				t.Error(err)
			}
			for _, msg := range tc.logs {
				if len(logs.Find(msg)) == 0 {
					t.Errorf("no log %q; logs:\n%s", msg, logs.Dump())
				}
			}
			if len(tc.logs) == 0 && len(logs.Records()) > 0 {
				t.Errorf("unexpected logs:\n%s", logs.Dump())
			}
		})
	}
}

// TestCollectLint runs Prometheus's own naming and help checks on a
// full scrape.
func TestCollectLint(t *testing.T) {
	src := &fakeSource{
		states: []hub.ServiceState{
			{Service: "ptpd", Up: true, Version: "v1", Status: status(t, `{"uptime":1,"requests":{"kea":{"success":1,"error":0}},"connections":{"kea":0},"connections-accepted":{"kea":1}}`)},
			{Service: "mctpd", Up: true, Version: "v1", Status: status(t, `{"uptime":1}`)},
			{Service: "mdiod", Up: true, Version: "v1", Status: status(t, `{"uptime":1}`)},
		},
		replies: map[string]string{"ptpd": ptpdReply, "mctpd": mctpdReply, "mdiod": mdiodReply},
	}
	c := New(Options{Source: src, Self: ctl.NewRegistry(ctl.Options{Name: "ctl", Version: "v9"})})
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(c); n < 40 {
		t.Errorf("%d series, want at least 40", n)
	}
}

// TestCollectSelf checks that the serving process reports its own
// control plane.
func TestCollectSelf(t *testing.T) {
	self := ctl.NewRegistry(ctl.Options{Name: "ctl", Version: "v9"})
	self.Invoke(context.Background(), "list-commands", ctl.Input{Front: ctl.FrontHTTP}, nil)
	self.Invoke(context.Background(), "nosuch", ctl.Input{Front: ctl.FrontHTTP}, nil)
	c := New(Options{Source: &fakeSource{}, Self: self})
	want := `
# HELP tickbox_ctl_requests_total Control-plane requests by front end and result code name.
# TYPE tickbox_ctl_requests_total counter
tickbox_ctl_requests_total{front="http",result="error",service="ctl"} 0
tickbox_ctl_requests_total{front="http",result="success",service="ctl"} 1
tickbox_ctl_requests_total{front="http",result="unsupported",service="ctl"} 1
# HELP tickbox_service_info The service's version, as version-get reports it; always 1.
# TYPE tickbox_service_info gauge
tickbox_service_info{service="ctl",version="v9"} 1
# HELP tickbox_service_up Whether the service answered status-get in this scrape (1) or not (0).
# TYPE tickbox_service_up gauge
tickbox_service_up{service="ctl"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "tickbox_ctl_requests_total", "tickbox_service_info", "tickbox_service_up"); err != nil {
		t.Error(err)
	}
}

// TestCollectDeadline checks that a scrape ends at its deadline with
// hung daemons counted as down.
func TestCollectDeadline(t *testing.T) {
	src := &fakeSource{
		states:  []hub.ServiceState{{Service: "ptpd", Up: true}},
		replies: map[string]string{"ptpd": ptpdReply},
		delay:   time.Hour,
	}
	c := New(Options{Source: src, Timeout: 100 * time.Millisecond, Logger: slog.New(tbtest.NewLogs())})
	start := time.Now()
	want := `
# HELP tickbox_service_up Whether the service answered status-get in this scrape (1) or not (0).
# TYPE tickbox_service_up gauge
tickbox_service_up{service="ptpd"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "tickbox_service_up", "tickbox_ptpd_offset_seconds"); err != nil {
		t.Error(err)
	}
	// Wide margin: a loaded machine may be slow to wake the scrape.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("scrape took %v with a 100ms deadline", d)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.calls) != 1 || src.calls[0] != "ptpd instances-get" {
		t.Errorf("commands asked: %q", src.calls)
	}
}
