package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// retryDelay is the pause before the one retry of a forward whose
// daemon was not there: long enough for a daemon that is re-executing
// or being restarted by its supervisor to listen again.
const retryDelay = 250 * time.Millisecond

// maxIdle bounds the kept-open connections a hub holds to one daemon
// between forwards; more concurrent forwards dial more, and those are
// closed after use.
const maxIdle = 8

// recheckKeepOpen is how long a daemon that refused to keep a
// connection open (a Kea daemon) gets a connection per request before
// the hub asks again: it may have been replaced by one that keeps them.
const recheckKeepOpen = time.Minute

// Hub forwards Kea control-channel requests to the daemons it fronts.
//
// To a tickbox daemon it keeps a few connections open between forwards
// (kea.DialKeepOpen), which saves a connect and an accept per request;
// to a daemon that answers one request per connection, such as Kea's,
// it opens one per request as the Control Agent does. Either way a
// daemon that restarts breaks no client of the hub: a forward that
// finds a kept connection dead, or the daemon away, reconnects and is
// tried once more.
type Hub struct {
	cfg     Config
	sockets map[string]Socket
	pools   map[string]*pool
	log     *slog.Logger
	// dial and call are kea.DialKeepOpen and kea.Call; tests replace
	// them to count attempts.
	dial func(ctx context.Context, path string) (*kea.Conn, error)
	call func(ctx context.Context, path string, req []byte) ([]byte, error)
}

// pool is one daemon's idle kept-open connections.
type pool struct {
	mu   sync.Mutex
	idle []*kea.Conn
	// oneShotUntil is set when the daemon refused to keep a connection
	// open: until then, a connection per request.
	oneShotUntil time.Time
	closed       bool
}

func (p *pool) get() *kea.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return c
	}
	return nil
}

func (p *pool) put(c *kea.Conn) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// flush closes every idle connection: one was found dead, so the
// daemon has restarted and the others are dead too.
func (p *pool) flush() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

func (p *pool) oneShot(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now.Before(p.oneShotUntil)
}

func (p *pool) setOneShot(until time.Time) {
	p.mu.Lock()
	p.oneShotUntil = until
	p.mu.Unlock()
}

// New returns a hub for cfg. A nil logger discards.
func New(cfg *Config, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{cfg: *cfg, sockets: map[string]Socket{}, pools: map[string]*pool{}, log: log,
		dial: kea.DialKeepOpen, call: kea.Call}
	if h.cfg.Timeout <= 0 {
		h.cfg.Timeout = DefaultTimeout
	}
	for _, s := range cfg.Sockets {
		h.sockets[s.Service] = s
		h.pools[s.Service] = &pool{}
	}
	return h
}

// Close closes the connections the hub keeps open; forwards still
// running finish on theirs.
func (h *Hub) Close() {
	for _, p := range h.pools {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.flush()
	}
}

// Services returns the configured service names in file order.
func (h *Hub) Services() []string {
	names := make([]string, len(h.cfg.Sockets))
	for i, s := range h.cfg.Sockets {
		names[i] = s.Service
	}
	return names
}

// Socket returns a service's socket and whether it is configured.
func (h *Hub) Socket(service string) (Socket, bool) {
	s, ok := h.sockets[service]
	return s, ok
}

// Timeout is the bound on one forward.
func (h *Hub) Timeout() time.Duration { return h.cfg.Timeout }

// Forward sends one raw Kea request to the service's socket and returns
// the raw reply. Its signature fits kea.Options.Forward.
//
// An unknown service is an error wrapping kea.ErrNoService. A kept-open
// connection that turns out dead (the daemon restarted since) is
// replaced by a new one at once. A daemon that is not there (the socket
// is missing or refuses: it is restarting) or that closes the
// connection without a reply is tried once more on a new connection
// after a short pause. The whole forward, retry included, is bounded by
// the configured timeout.
func (h *Hub) Forward(ctx context.Context, service string, req []byte) ([]byte, error) {
	s, ok := h.sockets[service]
	if !ok {
		return nil, fmt.Errorf("%q: %w", service, kea.ErrNoService)
	}
	p := h.pools[service]
	parent := ctx
	deadline := time.Now().Add(h.cfg.Timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// forwardErr names the timeout when it was the forward's end, and
	// not the caller's own cancellation.
	forwardErr := func(err error) error {
		if err == nil || parent.Err() != nil || time.Now().Before(deadline) {
			return err
		}
		return &TimeoutError{Timeout: h.cfg.Timeout, Err: err}
	}
	resp, reused, err := h.attempt(ctx, s, p, req, false)
	if err != nil && reused && retryable(err) && ctx.Err() == nil {
		// A kept connection to a daemon that has since restarted: the
		// daemon never had this request, so a new connection is this
		// forward's first attempt, not its retry.
		h.log.Debug("kept connection dead; reconnecting", "service", service, "socket", s.Name, "err", err)
		resp, _, err = h.attempt(ctx, s, p, req, true)
	}
	if err == nil || !retryable(err) || ctx.Err() != nil {
		return resp, forwardErr(err)
	}
	h.log.Debug("forward failed; retrying once on a new connection", "service", service, "socket", s.Name, "err", err)
	select {
	case <-ctx.Done():
		return nil, forwardErr(err)
	case <-time.After(retryDelay):
	}
	resp, _, err = h.attempt(ctx, s, p, req, true)
	return resp, forwardErr(err)
}

// attempt forwards req once: on an idle kept-open connection unless
// fresh, else on a new one, or on a one-shot connection to a daemon
// that keeps none open. reused says whether an idle connection was
// used.
func (h *Hub) attempt(ctx context.Context, s Socket, p *pool, req []byte, fresh bool) (resp []byte, reused bool, err error) {
	if p.oneShot(time.Now()) {
		resp, err = h.call(ctx, s.Name, req)
		return resp, false, err
	}
	var c *kea.Conn
	if !fresh {
		c = p.get()
	}
	reused = c != nil
	if c == nil {
		c, err = h.dial(ctx, s.Name)
		if errors.Is(err, kea.ErrNotKeptOpen) {
			h.log.Info("daemon answers one request per connection", "service", s.Service, "socket", s.Name)
			p.setOneShot(time.Now().Add(recheckKeepOpen))
			resp, err = h.call(ctx, s.Name, req)
			return resp, false, err
		}
		if err != nil {
			return nil, false, err
		}
	}
	resp, err = c.Call(ctx, req)
	if err != nil {
		c.Close()
		if reused && retryable(err) {
			p.flush()
		}
		return nil, reused, err
	}
	p.put(c)
	return resp, reused, nil
}

// TimeoutError is a forward that ran out of its configured time.
type TimeoutError struct {
	Timeout time.Duration
	Err     error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("no answer within the forwarding timeout of %v: %v", e.Timeout, e.Err)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// retryable reports whether a forward failed before the daemon could
// have acted on it: nobody listens, or the connection ended without a
// reply.
func retryable(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, kea.ErrNoReply)
}

// Reply is one daemon's answer.
type Reply struct {
	Result    int             `json:"result"`
	Text      string          `json:"text,omitempty"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// Decode unmarshals the reply's arguments into v.
func (r Reply) Decode(v any) error {
	if len(r.Arguments) == 0 {
		return errors.New("reply has no arguments")
	}
	if err := json.Unmarshal(r.Arguments, v); err != nil {
		return fmt.Errorf("reply arguments: %w", err)
	}
	return nil
}

// Command runs one command on a service and decodes its answer. An
// answer that is a list (as a Control Agent sends) gives its first
// element.
func (h *Hub) Command(ctx context.Context, service, command string, args map[string]any) (Reply, error) {
	req := map[string]any{"command": command}
	if args != nil {
		req["arguments"] = args
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s: encode arguments: %w", service, command, err)
	}
	resp, err := h.Forward(ctx, service, body)
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s: %w", service, command, err)
	}
	return decodeReply(resp)
}

// decodeReply reads a Kea answer: a map, or a list whose first element
// is one.
func decodeReply(resp []byte) (Reply, error) {
	var r Reply
	err := json.Unmarshal(resp, &r)
	if err != nil {
		var list []Reply
		if json.Unmarshal(resp, &list) != nil {
			return Reply{}, fmt.Errorf("invalid answer: %w", err)
		}
		if len(list) == 0 {
			return Reply{}, errors.New("invalid answer: empty list")
		}
		r = list[0]
	}
	return r, nil
}

// ServiceState is one service as services-get reports it.
type ServiceState struct {
	Service string `json:"service"`
	Socket  string `json:"socket"`
	Up      bool   `json:"up"`
	// Error says why the service is down, or is a failed reply's text.
	Error   string `json:"error,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Uptime  int64  `json:"uptime,omitempty"` // seconds
	Version string `json:"version,omitempty"`
	// Status is the whole of status-get's arguments.
	Status map[string]any `json:"status,omitempty"`
}

// ServicesGet asks every service for status-get and version-get, all
// in parallel, and returns their states in configuration order.
func (h *Hub) ServicesGet(ctx context.Context) []ServiceState {
	out := make([]ServiceState, len(h.cfg.Sockets))
	var wg sync.WaitGroup
	for i, s := range h.cfg.Sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = h.serviceState(ctx, s)
		}()
	}
	wg.Wait()
	return out
}

func (h *Hub) serviceState(ctx context.Context, s Socket) ServiceState {
	st := ServiceState{Service: s.Service, Socket: s.Name}
	var (
		status, version Reply
		serr, verr      error
		wg              sync.WaitGroup
	)
	wg.Add(2)
	go func() { defer wg.Done(); status, serr = h.Command(ctx, s.Service, "status-get", nil) }()
	go func() { defer wg.Done(); version, verr = h.Command(ctx, s.Service, "version-get", nil) }()
	wg.Wait()
	if serr != nil {
		st.Error = serr.Error()
		return st
	}
	st.Up = true
	if status.Result != 0 {
		st.Error = fmt.Sprintf("status-get: %s", status.Text)
	} else if err := status.Decode(&st.Status); err != nil {
		st.Error = fmt.Sprintf("status-get: %v", err)
	} else {
		st.PID = intOf(st.Status["pid"])
		st.Uptime = int64(intOf(st.Status["uptime"]))
	}
	if verr == nil && version.Result == 0 {
		st.Version = version.Text
	}
	return st
}

func intOf(v any) int {
	if f, ok := v.(float64); ok {
		return int(f)
	}
	return 0
}

// Commands returns the hub's own commands, for the registry of the
// process that runs the hub.
func (h *Hub) Commands() []*ctl.Command {
	return []*ctl.Command{{
		Name:    "services-get",
		Comment: "report each fronted daemon's reachability, pid, uptime and version",
		Usage: "Asks every service in the hub's configuration for status-get and\n" +
			"version-get, in parallel, and reports for each: service, socket, up,\n" +
			"pid, uptime (seconds), version, status (status-get's arguments) and,\n" +
			"when it is down or failed, error.",
		IgnoreExtraArgs: true,
		Handler: func(ctx context.Context, _ *ctl.Call) ctl.Result {
			states := h.ServicesGet(ctx)
			up := 0
			for _, s := range states {
				if s.Up {
					up++
				}
			}
			return ctl.OK(fmt.Sprintf("%d of %d services up", up, len(states)), map[string]any{"services": states})
		},
	}}
}
