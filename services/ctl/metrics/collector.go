package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// Source is what the collector needs of the hub: the configured
// services, one command on one of them, and every service's status-get
// and version-get at once. *hub.Hub implements it.
type Source interface {
	Services() []string
	Command(ctx context.Context, service, command string, args map[string]any) (hub.Reply, error)
	ServicesGet(ctx context.Context) []hub.ServiceState
}

var _ Source = (*hub.Hub)(nil)

// DefaultTimeout bounds a scrape when Options.Timeout is 0: below
// Prometheus's default scrape timeout (10 s), so that a hung daemon
// costs its own series, not the whole scrape.
const DefaultTimeout = 3 * time.Second

// maxPerFamily bounds the series one reply gives per metric family, so
// that a reply with a huge map cannot blow up the scrape's memory.
const maxPerFamily = 512

// Options configures a Collector.
type Options struct {
	// Source is the hub the daemons are asked through.
	Source Source
	// Self, when set, is the registry of the process that serves the
	// metrics (ctl serve's own control plane). It is reported as a
	// service of its own name, always up.
	Self *ctl.Registry
	// Timeout bounds one scrape; a daemon that has not answered by then
	// counts as down. 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives the malformed replies and failed commands; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Collector is a prometheus.Collector that asks the daemons at scrape
// time.
type Collector struct {
	opts Options
	log  *slog.Logger
	d    *descs
}

// New returns a collector over opts.Source.
func New(opts Options) *Collector {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Collector{opts: opts, log: opts.Logger.With("component", "metrics"), d: newDescs()}
}

// Handler serves a Collector over opts in Prometheus's exposition
// formats, from a registry of its own. A family that fails to gather is
// left out and logged; the rest is served.
func Handler(opts Options) http.Handler {
	c := New(opts)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{c.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// errorLog adapts the logger to promhttp's.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) { l.log.Error("serving metrics", "err", fmt.Sprint(v...)) }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.d.all() {
		ch <- d
	}
}

// command is the daemon command whose reply makes a service's own
// series, by service name, and its conversion.
type command struct {
	name    string
	args    map[string]any
	convert func(e *emitter, service string, args json.RawMessage) error
}

func commandFor(service string) (command, bool) {
	switch service {
	case "ptpd":
		return command{name: "instances-get", convert: convertPTPD}, true
	case "mctpd":
		return command{name: "stats-get", convert: convertMCTPD}, true
	case "mdiod":
		return command{name: "links-get", convert: convertMDIOD}, true
	}
	return command{}, false
}

// Collect implements prometheus.Collector: it asks every service at
// once, waits for all of them or the scrape deadline, and sends the
// series.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	src := c.opts.Source

	type answer struct {
		cmd   command
		reply hub.Reply
		err   error
	}
	answers := map[string]*answer{}
	var wg sync.WaitGroup
	for _, s := range src.Services() {
		cmd, ok := commandFor(s)
		if !ok {
			continue
		}
		a := &answer{cmd: cmd}
		answers[s] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.reply, a.err = src.Command(ctx, s, cmd.name, cmd.args)
		}()
	}
	states := src.ServicesGet(ctx)
	wg.Wait()

	e := newEmitter(ch, c.log, c.d)
	if c.opts.Self != nil {
		c.collectSelf(e)
	}
	for _, st := range states {
		e.reset(st.Service)
		c.collectState(e, st)
		if !st.Up {
			continue
		}
		a, ok := answers[st.Service]
		if !ok {
			continue
		}
		e.reset(st.Service)
		switch {
		case a.err != nil:
			c.log.Warn("metrics command failed", "service", st.Service, "command", a.cmd.name, "err", a.err)
		case a.reply.Result != 0:
			c.log.Warn("metrics command refused", "service", st.Service, "command", a.cmd.name, "result", a.reply.Result, "text", a.reply.Text)
		default:
			if err := a.cmd.convert(e, st.Service, a.reply.Arguments); err != nil {
				c.log.Warn("malformed reply skipped", "service", st.Service, "command", a.cmd.name, "err", err)
			}
		}
	}
	e.reset("")
	e.emit(c.d.scrapeDuration, prometheus.GaugeValue, time.Since(start).Seconds())
}

// collectState sends a service's up, uptime, info and control-plane
// series from services-get's view of it.
func (c *Collector) collectState(e *emitter, st hub.ServiceState) {
	if !st.Up {
		e.emit(c.d.up, prometheus.GaugeValue, 0, st.Service)
		return
	}
	e.emit(c.d.up, prometheus.GaugeValue, 1, st.Service)
	if st.Version != "" {
		e.emit(c.d.info, prometheus.GaugeValue, 1, st.Service, st.Version)
	}
	if st.Status == nil {
		c.log.Warn("malformed reply skipped", "service", st.Service, "command", "status-get", "err", st.Error)
		return
	}
	if err := convertStatus(e, st.Service, st.Status); err != nil {
		c.log.Warn("malformed reply skipped", "service", st.Service, "command", "status-get", "err", err)
	}
}

// collectSelf sends the serving process's own series.
func (c *Collector) collectSelf(e *emitter) {
	r := c.opts.Self
	e.reset(r.Name())
	// The status holds typed maps; a JSON round trip gives them the
	// shape a daemon's reply has, so one conversion serves both.
	raw, err := json.Marshal(r.Status())
	var st map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	e.emit(c.d.up, prometheus.GaugeValue, 1, r.Name())
	e.emit(c.d.info, prometheus.GaugeValue, 1, r.Name(), r.Version())
	if err == nil {
		err = convertStatus(e, r.Name(), st)
	}
	if err != nil {
		c.log.Warn("own status skipped", "err", err)
	}
}
