package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// descs are the metric families the collector sends.
type descs struct {
	up, uptime, info, scrapeDuration *prometheus.Desc

	requests, connections, accepted *prometheus.Desc

	ptpOffset, ptpFreq, ptpDelay, ptpState, ptpSelected, ptpOutliers *prometheus.Desc

	mctpPackets, mctpMessages, mctpForwarded, mctpDrops, mctpSendWaits *prometheus.Desc
	mctpReassembly, mctpTags, mctpBinding, mctpForwardedPair           *prometheus.Desc
	demuxMessages, demuxDrops, demuxRegistrations, demuxOverflows      *prometheus.Desc
	demuxClients                                                       *prometheus.Desc

	linkUp, linkSpeed, linkChanges, linkEvents *prometheus.Desc
}

func newDescs() *descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tickbox_"+name, help, labels, nil)
	}
	return &descs{
		up:             d("service_up", "Whether the service answered status-get in this scrape (1) or not (0).", "service"),
		uptime:         d("service_uptime_seconds", "Seconds since the service started (re-executions in place keep counting).", "service"),
		info:           d("service_info", "The service's version, as version-get reports it; always 1.", "service", "version"),
		scrapeDuration: d("scrape_duration_seconds", "How long the hub took to ask every service for this scrape."),

		requests:    d("ctl_requests_total", "Control-plane requests by front end and result code name.", "service", "front", "result"),
		connections: d("ctl_connections", "Connections being served, by front end.", "service", "front"),
		accepted:    d("ctl_connections_accepted_total", "Connections accepted since the service started, by front end.", "service", "front"),

		ptpOffset:   d("ptpd_offset_seconds", "Offset from the sync instance's master, in seconds.", "service", "sync_instance"),
		ptpFreq:     d("ptpd_frequency_adjustment_ppb", "Frequency adjustment the sync instance's servo applies, in parts per billion.", "service", "sync_instance"),
		ptpDelay:    d("ptpd_path_delay_seconds", "Mean path delay to the sync instance's master, in seconds.", "service", "sync_instance"),
		ptpState:    d("ptpd_instance_state", "The sync instance's state: 1 for the state it is in (one series per instance).", "service", "sync_instance", "state"),
		ptpSelected: d("ptpd_instance_selected", "Whether the sync instance is the selected one (1) or not (0).", "service", "sync_instance"),
		ptpOutliers: d("ptpd_outlier_discards_total", "Offsets the sync instance's outlier filter discarded (sfptpd's adaptive-outlier-filter-discards).", "service", "sync_instance"),

		mctpPackets:        d("mctp_packets_total", "MCTP packets received (in) and sent (out) on every binding; forwarded packets count as received.", "service", "direction"),
		mctpMessages:       d("mctp_messages_total", "Reassembled MCTP messages received (in) and messages sent (out).", "service", "direction"),
		mctpForwarded:      d("mctp_packets_forwarded_total", "Packets forwarded between bindings.", "service"),
		mctpForwardedPair:  d("mctp_binding_forwarded_packets_total", "Packets forwarded from one binding to another.", "service", "in", "out"),
		mctpDrops:          d("mctp_drops_total", "MCTP packets and messages the router dropped, by reason.", "service", "reason"),
		mctpSendWaits:      d("mctp_send_waits_total", "Local clients' messages that waited for a busy binding.", "service"),
		mctpReassembly:     d("mctp_reassembly_pending", "Partial messages being reassembled.", "service"),
		mctpTags:           d("mctp_tags_outstanding", "Tags allocated to tagged clients' requests and not yet answered, expired or released.", "service"),
		mctpBinding:        d("mctp_binding_events_total", "A binding's own counters, by binding and counter name.", "service", "binding", "counter"),
		demuxMessages:      d("mctp_demux_messages_total", "Demux messages from clients to the router (in) and copies written to clients (out).", "service", "demux", "direction"),
		demuxDrops:         d("mctp_demux_drops_total", "Demux messages dropped, by reason.", "service", "demux", "reason"),
		demuxRegistrations: d("mctp_demux_registrations_total", "Demux clients that registered a message type.", "service", "demux"),
		demuxOverflows:     d("mctp_demux_overflows_total", "Demux clients disconnected because their queue overflowed.", "service", "demux"),
		demuxClients:       d("mctp_demux_clients", "Demux clients connected, by registered message type.", "service", "demux", "type"),

		linkUp:      d("mdio_link_up", "Whether the port's link is up (1) or down (0), as the link watcher last saw it.", "service", "port"),
		linkSpeed:   d("mdio_link_speed_bytes_per_second", "The port's resolved link speed in bytes per second (0 while down).", "service", "port"),
		linkChanges: d("mdio_link_changes_total", "Link events the watcher reported for the port.", "service", "port"),
		linkEvents:  d("mdio_link_events_total", "Link events of every port since the daemon started.", "service"),
	}
}

func (d *descs) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		d.up, d.uptime, d.info, d.scrapeDuration,
		d.requests, d.connections, d.accepted,
		d.ptpOffset, d.ptpFreq, d.ptpDelay, d.ptpState, d.ptpSelected, d.ptpOutliers,
		d.mctpPackets, d.mctpMessages, d.mctpForwarded, d.mctpForwardedPair, d.mctpDrops, d.mctpSendWaits,
		d.mctpReassembly, d.mctpTags, d.mctpBinding,
		d.demuxMessages, d.demuxDrops, d.demuxRegistrations, d.demuxOverflows, d.demuxClients,
		d.linkUp, d.linkSpeed, d.linkChanges, d.linkEvents,
	}
}

// emitter sends metrics for one scrape: it drops a series already sent
// (a reply naming an instance twice would otherwise fail the whole
// gather), caps the series per family and reply, and logs what it
// drops.
type emitter struct {
	ch      chan<- prometheus.Metric
	log     *slog.Logger
	d       *descs
	service string
	seen    map[seriesKey]struct{}
	perDesc map[*prometheus.Desc]int
	sent    int
}

type seriesKey struct {
	d      *prometheus.Desc
	labels string
}

func newEmitter(ch chan<- prometheus.Metric, log *slog.Logger, d *descs) *emitter {
	return &emitter{ch: ch, log: log, d: d, seen: map[seriesKey]struct{}{}}
}

// reset starts the per-reply cap for the next reply, of service.
func (e *emitter) reset(service string) {
	e.service = service
	e.perDesc = map[*prometheus.Desc]int{}
}

func (e *emitter) emit(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		e.log.Warn("metrics: value is not finite; series skipped", "service", e.service, "metric", d.String())
		return
	}
	k := seriesKey{d, strings.Join(labels, "\xff")}
	if _, dup := e.seen[k]; dup {
		e.log.Warn("metrics: duplicate series skipped", "service", e.service, "labels", labels)
		return
	}
	if e.perDesc[d] >= maxPerFamily {
		if e.perDesc[d] == maxPerFamily {
			e.log.Warn("metrics: too many series in one reply; rest skipped", "service", e.service, "limit", maxPerFamily, "metric", d.String())
			e.perDesc[d]++
		}
		return
	}
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		e.log.Warn("metrics: series skipped", "service", e.service, "err", err)
		return
	}
	e.seen[k] = struct{}{}
	e.perDesc[d]++
	e.sent++
	e.ch <- m
}

// counter sends a counter from a JSON number that must be a
// non-negative count.
func (e *emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	if v < 0 {
		e.log.Warn("metrics: negative counter skipped", "service", e.service, "labels", labels, "value", v)
		return
	}
	e.emit(d, prometheus.CounterValue, v, labels...)
}

func (e *emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.emit(d, prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sortedKeys returns m's keys in order, so that a capped family keeps
// the same series from one scrape to the next.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// number reads a JSON number decoded into an any.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// convertStatus sends the series of status-get's arguments (decoded
// with numbers as float64): uptime, and the requests and connections
// per front end that the ctl core reports for every daemon.
func convertStatus(e *emitter, service string, st map[string]any) error {
	var errs []error
	if v, ok := st["uptime"]; ok {
		if f, ok := number(v); ok && f >= 0 {
			e.gauge(e.d.uptime, f, service)
		} else {
			errs = append(errs, fmt.Errorf("uptime: %v is not a number of seconds", v))
		}
	}
	if v, ok := st["requests"]; ok {
		fronts, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("requests: not a map"))
		}
		for _, front := range sortedKeys(fronts) {
			codes, ok := fronts[front].(map[string]any)
			if !ok {
				errs = append(errs, fmt.Errorf("requests %q: not a map", front))
				continue
			}
			for _, code := range sortedKeys(codes) {
				n, ok := number(codes[code])
				if !ok {
					errs = append(errs, fmt.Errorf("requests %q %q: not a number", front, code))
					continue
				}
				e.counter(e.d.requests, n, service, front, code)
			}
		}
	}
	for _, c := range []struct {
		key     string
		d       *prometheus.Desc
		counter bool
	}{{"connections", e.d.connections, false}, {"connections-accepted", e.d.accepted, true}} {
		v, ok := st[c.key]
		if !ok {
			continue
		}
		fronts, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not a map", c.key))
			continue
		}
		for _, front := range sortedKeys(fronts) {
			n, ok := number(fronts[front])
			if !ok || n < 0 {
				errs = append(errs, fmt.Errorf("%s %q: not a count", c.key, front))
				continue
			}
			if c.counter {
				e.counter(c.d, n, service, front)
			} else {
				e.gauge(c.d, n, service, front)
			}
		}
	}
	return errors.Join(errs...)
}

// ptpInstance is one row of ptpd's instances-get.
type ptpInstance struct {
	Name        *string  `json:"name"`
	State       string   `json:"state"`
	Selected    bool     `json:"selected"`
	OffsetNS    *float64 `json:"offset-ns"`
	FreqAdjPPB  *float64 `json:"freq-adj-ppb"`
	PathDelayNS *float64 `json:"path-delay-ns"`
	// Outliers is only reported by instances with an outlier filter.
	Outliers *uint64 `json:"adaptive-outlier-filter-discards"`
}

// convertPTPD sends ptpd's per-instance series from instances-get.
func convertPTPD(e *emitter, service string, args json.RawMessage) error {
	var a struct {
		Instances *[]ptpInstance `json:"instances"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return fmt.Errorf("instances-get: %w", err)
	}
	if a.Instances == nil {
		return errors.New("instances-get: no instances list")
	}
	var errs []error
	for i, in := range *a.Instances {
		if in.Name == nil || *in.Name == "" {
			errs = append(errs, fmt.Errorf("instances-get: instance %d has no name", i))
			continue
		}
		name := *in.Name
		if in.OffsetNS != nil {
			e.gauge(e.d.ptpOffset, *in.OffsetNS/1e9, service, name)
		}
		if in.FreqAdjPPB != nil {
			e.gauge(e.d.ptpFreq, *in.FreqAdjPPB, service, name)
		}
		if in.PathDelayNS != nil {
			e.gauge(e.d.ptpDelay, *in.PathDelayNS/1e9, service, name)
		}
		if in.State != "" {
			e.gauge(e.d.ptpState, 1, service, name, in.State)
		}
		if in.Outliers != nil {
			e.counter(e.d.ptpOutliers, float64(*in.Outliers), service, name)
		}
		e.gauge(e.d.ptpSelected, boolValue(in.Selected), service, name)
	}
	return errors.Join(errs...)
}

// mctpStats is the router's part of mctpd's stats-get.
type mctpStats struct {
	PacketsIn        *uint64                      `json:"packets-in"`
	PacketsOut       *uint64                      `json:"packets-out"`
	MessagesIn       *uint64                      `json:"messages-in"`
	MessagesOut      *uint64                      `json:"messages-out"`
	SendWaits        *uint64                      `json:"send-waits"`
	PacketsForwarded *uint64                      `json:"packets-forwarded"`
	Drops            map[string]uint64            `json:"drops"`
	Reassembly       *int64                       `json:"reassembly-pending"`
	TagsOutstanding  *int64                       `json:"tags-outstanding"`
	Bindings         map[string]map[string]uint64 `json:"bindings"`
	Forwarded        []struct {
		In      string `json:"in"`
		Out     string `json:"out"`
		Packets uint64 `json:"packets"`
	} `json:"forwarded"`
}

// demuxStats is a demux's part of mctpd's stats-get.
type demuxStats struct {
	Registrations *uint64        `json:"registrations"`
	In            *uint64        `json:"in"`
	Out           *uint64        `json:"out"`
	Overflows     *uint64        `json:"overflows"`
	DropShort     *uint64        `json:"drop-short"`
	DropTooBig    *uint64        `json:"drop-too-big"`
	DropRoute     *uint64        `json:"drop-route"`
	DropNoClient  *uint64        `json:"drop-no-client"`
	DropOverflow  *uint64        `json:"drop-overflow"`
	Clients       map[string]int `json:"clients"`
}

// convertMCTPD sends mctpd's router and demux series from stats-get.
func convertMCTPD(e *emitter, service string, args json.RawMessage) error {
	var a struct {
		MCTP        *mctpStats  `json:"mctp"`
		Demux       *demuxStats `json:"demux"`
		DemuxTagged *demuxStats `json:"demux-tagged"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return fmt.Errorf("stats-get: %w", err)
	}
	if a.MCTP == nil {
		return errors.New("stats-get: no mctp counters")
	}
	m := a.MCTP
	opt := func(d *prometheus.Desc, p *uint64, labels ...string) {
		if p != nil {
			e.counter(d, float64(*p), labels...)
		}
	}
	opt(e.d.mctpPackets, m.PacketsIn, service, "in")
	opt(e.d.mctpPackets, m.PacketsOut, service, "out")
	opt(e.d.mctpMessages, m.MessagesIn, service, "in")
	opt(e.d.mctpMessages, m.MessagesOut, service, "out")
	opt(e.d.mctpSendWaits, m.SendWaits, service)
	opt(e.d.mctpForwarded, m.PacketsForwarded, service)
	for _, reason := range sortedKeys(m.Drops) {
		e.counter(e.d.mctpDrops, float64(m.Drops[reason]), service, reason)
	}
	if m.Reassembly != nil {
		e.gauge(e.d.mctpReassembly, float64(*m.Reassembly), service)
	}
	if m.TagsOutstanding != nil {
		e.gauge(e.d.mctpTags, float64(*m.TagsOutstanding), service)
	}
	for _, b := range sortedKeys(m.Bindings) {
		for _, c := range sortedKeys(m.Bindings[b]) {
			e.counter(e.d.mctpBinding, float64(m.Bindings[b][c]), service, b, c)
		}
	}
	for _, f := range m.Forwarded {
		e.counter(e.d.mctpForwardedPair, float64(f.Packets), service, f.In, f.Out)
	}
	for _, dm := range []struct {
		name string
		st   *demuxStats
	}{{"demux", a.Demux}, {"demux-tagged", a.DemuxTagged}} {
		s := dm.st
		if s == nil {
			continue
		}
		opt(e.d.demuxMessages, s.In, service, dm.name, "in")
		opt(e.d.demuxMessages, s.Out, service, dm.name, "out")
		opt(e.d.demuxRegistrations, s.Registrations, service, dm.name)
		opt(e.d.demuxOverflows, s.Overflows, service, dm.name)
		opt(e.d.demuxDrops, s.DropShort, service, dm.name, "short")
		opt(e.d.demuxDrops, s.DropTooBig, service, dm.name, "too-big")
		opt(e.d.demuxDrops, s.DropRoute, service, dm.name, "route")
		opt(e.d.demuxDrops, s.DropNoClient, service, dm.name, "no-client")
		opt(e.d.demuxDrops, s.DropOverflow, service, dm.name, "overflow")
		for _, t := range sortedKeys(s.Clients) {
			e.gauge(e.d.demuxClients, float64(s.Clients[t]), service, dm.name, t)
		}
	}
	return nil
}

// convertMDIOD sends mdiod's per-port link series from links-get.
func convertMDIOD(e *emitter, service string, args json.RawMessage) error {
	var a struct {
		Ports *[]struct {
			Port    string  `json:"port"`
			Link    bool    `json:"link"`
			Speed   float64 `json:"speed"`
			Changes uint64  `json:"changes"`
		} `json:"ports"`
		Events *uint64 `json:"events"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return fmt.Errorf("links-get: %w", err)
	}
	if a.Ports == nil {
		return errors.New("links-get: no ports list")
	}
	var errs []error
	for i, p := range *a.Ports {
		if p.Port == "" {
			errs = append(errs, fmt.Errorf("links-get: port %d has no name", i))
			continue
		}
		e.gauge(e.d.linkUp, boolValue(p.Link), service, p.Port)
		if p.Speed >= 0 {
			// Mbit/s to bytes per second.
			e.gauge(e.d.linkSpeed, p.Speed*1e6/8, service, p.Port)
		}
		e.counter(e.d.linkChanges, float64(p.Changes), service, p.Port)
	}
	if a.Events != nil {
		e.counter(e.d.linkEvents, float64(*a.Events), service)
	}
	return errors.Join(errs...)
}
