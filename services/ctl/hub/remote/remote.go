package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/internal/ctxtime"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// DefaultPoll is how often log and events ask the daemons for more.
const DefaultPoll = 250 * time.Millisecond

// Options configures the commands.
type Options struct {
	// Poll is the period of log's and events' polling; 0 means
	// DefaultPoll.
	Poll time.Duration
	// Logger receives the commands' own messages; nil discards.
	Logger *slog.Logger
}

// Remote makes the hub's commands for the daemons it fronts.
type Remote struct {
	h    *hub.Hub
	opts Options

	mu      sync.Mutex
	schemas map[string]*schema // by service; absent: fetch on next use
}

// schema is one daemon's commands as proxies (ctl.NewCommandFromSchema
// without a handler: the service command runs them).
type schema struct {
	cmds   []*ctl.Command
	byName map[string]*ctl.Command // names and aliases
}

// New returns the commands' maker for h.
func New(h *hub.Hub, opts Options) *Remote {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Remote{h: h, opts: opts, schemas: map[string]*schema{}}
}

// Commands returns one command per configured service, log and events,
// for the hub's registry.
func (r *Remote) Commands() []*ctl.Command {
	var cs []*ctl.Command
	for _, svc := range r.h.Services() {
		cs = append(cs, r.serviceCommand(svc))
	}
	return append(cs, r.logCommand(), r.eventsCommand())
}

func (r *Remote) serviceCommand(svc string) *ctl.Command {
	return &ctl.Command{
		Name:    svc,
		Syntax:  "CMD [ARGS...]",
		Comment: "run a command of " + svc + " (? " + svc + " lists them)",
		Usage: "Runs CMD on " + svc + " through the hub, over its Kea control socket.\n" +
			"The words bind to CMD's parameters with " + svc + "'s own schema\n" +
			"(commands-get), as on " + svc + "'s console. Streaming commands cannot\n" +
			"run this way; log " + svc + " follows its log.",
		AnyArgs: true,
		Help: func(ctx context.Context, words []string) ([]*ctl.Command, error) {
			if len(words) == 0 {
				s, err := r.schema(ctx, svc, false)
				if err != nil {
					return nil, err
				}
				return s.cmds, nil
			}
			c, err := r.lookup(ctx, svc, words[0])
			if err != nil {
				return nil, err
			}
			return []*ctl.Command{c}, nil
		},
		Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
			return r.run(ctx, svc, call.Args.Input())
		},
	}
}

// errUnknown is a command the daemon does not have.
type errUnknown struct{ svc, name string }

func (e *errUnknown) Error() string {
	return e.svc + ": " + ctl.UnsupportedResult(e.name).Text
}

// run binds in's words after the first (the command's name) with the
// daemon's schema, exactly as the daemon's console does, and runs the
// command there. A daemon that says it does not know the command may
// have restarted with other commands: its schema is fetched again and
// the command tried once more (it did not run).
func (r *Remote) run(ctx context.Context, svc string, in ctl.Input) ctl.Result {
	if len(in.Positional) == 0 {
		return ctl.Fail("%s: no command given; ? %s lists them", svc, svc)
	}
	name := in.Positional[0]
	in.Positional = in.Positional[1:]
	for attempt := 0; ; attempt++ {
		c, err := r.lookup(ctx, svc, name)
		var unk *errUnknown
		if errors.As(err, &unk) {
			return ctl.Result{Code: ctl.Unsupported, Text: err.Error()}
		}
		if err != nil {
			return ctl.Fail("%v", err)
		}
		args, err := c.Bind(in)
		if err != nil {
			return ctl.Result{Code: ctl.Error, Text: err.Error()}
		}
		named := args.Named()
		if len(named) == 0 {
			named = nil
		}
		rep, err := r.h.Command(ctx, svc, c.Name, named)
		if err != nil {
			r.forget(svc)
			return ctl.Fail("%v", reachErr(svc, err))
		}
		if attempt == 0 && rep.Result == int(ctl.Unsupported) && rep.Text == ctl.UnsupportedResult(c.Name).Text {
			r.opts.Logger.Info("daemon does not know a command its schema listed; fetching the schema again", "service", svc, "command", c.Name)
			r.forget(svc)
			continue
		}
		return result(rep)
	}
}

// result is a daemon's reply as a local result, its arguments decoded
// to plain values so that every front end renders them as its own.
func result(rep hub.Reply) ctl.Result {
	res := ctl.Result{Code: ctl.Code(rep.Result), Text: rep.Text}
	if len(rep.Arguments) > 0 {
		dec := json.NewDecoder(bytes.NewReader(rep.Arguments))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil {
			res.Args = v
		} else {
			res.Args = rep.Arguments
		}
	}
	return res
}

// reachErr is a failed forward in one line naming the service: the
// socket's error without hub.Command's "SERVICE COMMAND:" prefix.
func reachErr(svc string, err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		err = inner
	}
	return fmt.Errorf("%s: %w", svc, err)
}

func (r *Remote) forget(svc string) {
	r.mu.Lock()
	delete(r.schemas, svc)
	r.mu.Unlock()
}

// lookup returns the proxy of a daemon's command, fetching the schema
// again once if the cached one lacks it.
func (r *Remote) lookup(ctx context.Context, svc, name string) (*ctl.Command, error) {
	for refresh := false; ; refresh = true {
		s, err := r.schema(ctx, svc, refresh)
		if err != nil {
			return nil, err
		}
		if c, ok := s.byName[name]; ok {
			return c, nil
		}
		if refresh {
			return nil, &errUnknown{svc, name}
		}
	}
}

// schema returns a daemon's commands, from the cache unless refresh.
func (r *Remote) schema(ctx context.Context, svc string, refresh bool) (*schema, error) {
	r.mu.Lock()
	s := r.schemas[svc]
	r.mu.Unlock()
	if s != nil && !refresh {
		return s, nil
	}
	rep, err := r.h.Command(ctx, svc, "commands-get", nil)
	if err != nil {
		r.forget(svc)
		return nil, reachErr(svc, err)
	}
	if rep.Result != int(ctl.Success) {
		return nil, fmt.Errorf("%s: commands-get: %s", svc, rep.Text)
	}
	list, err := ctl.DecodeCommandSchemas(rep.Arguments)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", svc, err)
	}
	s = &schema{byName: map[string]*ctl.Command{}}
	for _, cs := range list {
		c, err := ctl.NewCommandFromSchema(cs, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: commands-get: %w", svc, err)
		}
		s.cmds = append(s.cmds, c)
		for _, n := range append([]string{c.Name}, c.Aliases...) {
			s.byName[n] = c
		}
	}
	r.mu.Lock()
	r.schemas[svc] = s
	r.mu.Unlock()
	r.opts.Logger.Debug("fetched command schema", "service", svc, "commands", len(s.cmds))
	return s, nil
}

// writeLine sends one line of a streaming command's output.
func writeLine(call *ctl.Call, format string, a ...any) error {
	_, err := fmt.Fprintf(call.Out, format+"\n", a...)
	return err
}

// wait sleeps one poll period; false when ctx ended.
func (r *Remote) wait(ctx context.Context) bool { return ctxtime.Sleep(ctx, r.opts.Poll) }

func (r *Remote) logCommand() *ctl.Command {
	return &ctl.Command{
		Name:    "log",
		Comment: "follow a daemon's log until cancelled",
		Usage: "Shows the last lines of SERVICE's log, then each new one as it is\n" +
			"logged (log-get, polled with a cursor), until the next command line.\n" +
			"Says when the daemon goes down, comes back or restarts, and how many\n" +
			"lines were missed when it logged faster than they were read.",
		Params: []ctl.Param{
			{Name: "service", Type: ctl.String, Required: true, Choices: r.h.Services(), Help: "the daemon"},
			{Name: "lines", Type: ctl.Int, Default: int64(10), Ranged: true, Min: 1, Max: ctl.MaxLogLimit, Help: "recent lines to show first"},
		},
		Stream: true,
		Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
			return r.followLog(ctx, call, call.Args.String("service"), call.Args.Int("lines"))
		},
	}
}

// logPage is log-get's reply.
type logPage struct {
	Lines []struct {
		Seq  uint64 `json:"seq"`
		Line string `json:"line"`
	} `json:"lines"`
	Next   uint64 `json:"next"`
	Missed uint64 `json:"missed"`
	Epoch  int64  `json:"epoch"`
}

func (r *Remote) followLog(ctx context.Context, call *ctl.Call, svc string, lines int64) ctl.Result {
	var (
		cursor uint64
		epoch  int64
		first  = true
		down   bool
	)
	for {
		args := map[string]any{"since": cursor, "limit": ctl.MaxLogLimit}
		if first {
			args = map[string]any{"limit": lines}
		}
		rep, err := r.h.Command(ctx, svc, "log-get", args)
		if ctx.Err() != nil {
			return ctl.OK("", nil)
		}
		var werr error
		switch {
		case err != nil:
			if !down {
				down = true
				werr = writeLine(call, "--- %v (waiting for it)", reachErr(svc, err))
			}
		case rep.Result != int(ctl.Success):
			return ctl.Fail("%s: log-get: %s", svc, rep.Text)
		default:
			var pg logPage
			if err := rep.Decode(&pg); err != nil {
				return ctl.Fail("%s: log-get: %v", svc, err)
			}
			if down {
				down = false
				werr = writeLine(call, "--- %s is back", svc)
			}
			if !first && pg.Epoch != epoch {
				// A new process: its ring numbers from 1 again. Read
				// it from the start at once.
				epoch, cursor = pg.Epoch, 0
				if err := writeLine(call, "--- %s restarted", svc); err != nil {
					return ctl.Fail("log: %v", err)
				}
				continue
			}
			epoch = pg.Epoch
			if pg.Missed > 0 && !first {
				werr = writeLine(call, "--- %d lines missed", pg.Missed)
			}
			for _, l := range pg.Lines {
				if werr == nil {
					werr = writeLine(call, "%s", l.Line)
				}
			}
			cursor, first = pg.Next, false
		}
		if werr != nil {
			return ctl.Fail("log: %v", werr)
		}
		if !r.wait(ctx) {
			return ctl.OK("", nil)
		}
	}
}

// Event sources, by service name.
const (
	sourceAppliance = "appliance"
	sourceMDIOD     = "mdiod"
)

func (r *Remote) eventsCommand() *ctl.Command {
	return &ctl.Command{
		Name:    "events",
		Comment: "follow the link events of appliance and mdiod until cancelled",
		Usage: "Shows the recent link events of the appliance agent and of mdiod, then\n" +
			"each new one (their events-get, polled with a cursor), merged in time\n" +
			"order, each line naming its source, until the next command line. Says\n" +
			"when a source goes down, comes back or restarts.",
		Params: []ctl.Param{
			{Name: "lines", Type: ctl.Int, Default: int64(10), Ranged: true, Min: 1, Max: 1000, Help: "recent events of each source to show first"},
		},
		Stream: true,
		Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
			return r.followEvents(ctx, call, call.Args.Int("lines"))
		},
	}
}

// event is one line of the merged stream.
type event struct {
	time   time.Time
	source string
	text   string
}

// source is one followed service.
type source struct {
	svc    string
	cursor uint64
	pid    int64 // of the process the cursor belongs to; 0: unknown
	down   bool
	first  bool
}

func (r *Remote) followEvents(ctx context.Context, call *ctl.Call, lines int64) ctl.Result {
	var srcs []*source
	for _, svc := range []string{sourceAppliance, sourceMDIOD} {
		if _, ok := r.h.Socket(svc); ok {
			srcs = append(srcs, &source{svc: svc, first: true})
		}
	}
	if len(srcs) == 0 {
		return ctl.Fail("events: the hub fronts neither %s nor %s", sourceAppliance, sourceMDIOD)
	}
	for {
		var evs []event
		var notes []string
		for _, s := range srcs {
			got, note, err := r.pollEvents(ctx, s, lines)
			if ctx.Err() != nil {
				return ctl.OK("", nil)
			}
			if err != nil {
				return ctl.Fail("%v", err)
			}
			evs = append(evs, got...)
			notes = append(notes, note...)
		}
		for _, n := range notes {
			if err := writeLine(call, "--- %s", n); err != nil {
				return ctl.Fail("events: %v", err)
			}
		}
		// Each source's events are in order already; a stable sort by
		// time merges them.
		sortEvents(evs)
		for _, e := range evs {
			if err := writeLine(call, "%s %s %s", e.time.Format("2006-01-02T15:04:05.000Z07:00"), e.source, e.text); err != nil {
				return ctl.Fail("events: %v", err)
			}
		}
		if !r.wait(ctx) {
			return ctl.OK("", nil)
		}
	}
}

func sortEvents(evs []event) {
	// Insertion sort: a poll brings a handful.
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && evs[j].time.Before(evs[j-1].time); j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
}

// pollEvents asks one source for its events after the cursor. notes
// are the source's state changes (down, back, restarted); err is a
// reply that will not get better by asking again.
func (r *Remote) pollEvents(ctx context.Context, s *source, lines int64) (evs []event, notes []string, err error) {
	if s.first || s.down {
		// Which process is this? A new one numbers its events from 1,
		// so the cursor starts again.
		st, err := r.h.Command(ctx, s.svc, "status-get", nil)
		if err != nil {
			if !s.down {
				s.down = true
				notes = append(notes, fmt.Sprintf("%v (waiting for it)", reachErr(s.svc, err)))
			}
			return nil, notes, nil
		}
		var status struct {
			PID int64 `json:"pid"`
		}
		st.Decode(&status)
		if s.down {
			s.down = false
			notes = append(notes, s.svc+" is back")
			if s.pid != 0 && status.PID != s.pid {
				notes = append(notes, s.svc+" restarted")
				s.cursor = 0
			}
		}
		s.pid = status.PID
	}
	args := map[string]any{"since": s.cursor}
	if s.first {
		args = map[string]any{"limit": lines}
	}
	rep, cerr := r.h.Command(ctx, s.svc, "events-get", args)
	if cerr != nil {
		s.down = true
		return nil, append(notes, fmt.Sprintf("%v (waiting for it)", reachErr(s.svc, cerr))), nil
	}
	if rep.Result != int(ctl.Success) {
		return nil, notes, fmt.Errorf("%s: events-get: %s", s.svc, rep.Text)
	}
	s.first = false
	switch s.svc {
	case sourceMDIOD:
		var page struct {
			Events []struct {
				Seq  uint64    `json:"seq"`
				Time time.Time `json:"time"`
				Msg  string    `json:"msg"`
			} `json:"events"`
			LastSeq uint64 `json:"last-seq"`
		}
		if err := rep.Decode(&page); err != nil {
			return nil, notes, fmt.Errorf("%s: events-get: %w", s.svc, err)
		}
		if page.LastSeq < s.cursor {
			// Restarted between two polls: read it from the start next.
			s.cursor = 0
			return nil, append(notes, s.svc+" restarted"), nil
		}
		for _, e := range page.Events {
			evs = append(evs, event{e.Time, s.svc, e.Msg})
			s.cursor = e.Seq
		}
		s.cursor = max(s.cursor, page.LastSeq)
	default:
		var page struct {
			Events []struct {
				ID        uint64    `json:"id"`
				Time      time.Time `json:"time"`
				Kind      string    `json:"kind"`
				Interface string    `json:"interface"`
				Index     int       `json:"index"`
				MAC       string    `json:"mac"`
				State     string    `json:"state"`
			} `json:"events"`
		}
		if err := rep.Decode(&page); err != nil {
			return nil, notes, fmt.Errorf("%s: events-get: %w", s.svc, err)
		}
		for _, e := range page.Events {
			text := []string{e.Kind, e.Interface, fmt.Sprintf("index %d", e.Index)}
			if e.MAC != "" {
				text = append(text, e.MAC)
			}
			if e.State != "" {
				text = append(text, e.State)
			}
			evs = append(evs, event{e.Time, s.svc, strings.Join(text, " ")})
			s.cursor = e.ID
		}
	}
	return evs, notes, nil
}
