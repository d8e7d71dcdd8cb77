package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/internal/logring"
)

// Code is a command's result code. The values are those of the JSON
// control channel's convention, which every front end reports in its
// own way.
type Code int

// Result codes.
const (
	Success     Code = 0
	Error       Code = 1
	Unsupported Code = 2
	Empty       Code = 3
	Conflict    Code = 4
)

// Result is what a command returns: a code, a human-readable text and
// optional arguments (any JSON-encodable value; a front end may flatten
// a map[string]any into its reply).
type Result struct {
	Code Code
	Text string
	Args any
}

// OK is a convenience for a successful result.
func OK(text string, args any) Result { return Result{Code: Success, Text: text, Args: args} }

// Fail is a convenience for an error result.
func Fail(format string, a ...any) Result {
	return Result{Code: Error, Text: fmt.Sprintf(format, a...)}
}

// Call is one invocation of a command, handed to its handler.
type Call struct {
	Command *Command
	Args    Args
	// Out receives a streaming command's output, one line per Write.
	// For non-streaming commands it still collects text output, which
	// front ends with a text reply show to the caller.
	Out io.Writer
}

// Handler runs a command. A streaming command's handler writes to
// call.Out until ctx is cancelled, then returns.
type Handler func(ctx context.Context, call *Call) Result

// Command is one registered command.
type Command struct {
	Name string
	// Syntax is the short usage's parameter part ("phy address [page]").
	// Empty means it is derived from Params.
	Syntax string
	// Comment is the short usage's one-line description.
	Comment string
	// Usage is the long, multi-line usage text.
	Usage string
	// Params is the parameter schema. Positional framings bind arguments
	// in this order.
	Params []Param
	// AnyArgs accepts arbitrary arguments without validation (for
	// commands such as "echo" that treat them as data).
	AnyArgs bool
	// IgnoreExtraArgs drops arguments the command does not take (named
	// ones not in Params, positional ones past them, and on a JSON
	// channel an "arguments" value that is not a map) instead of
	// refusing them. The common commands (list-commands, version-get,
	// status-get, config-get, build-report) behave so in the daemons
	// whose commands they copy, whose handlers never look at what they
	// do not use, and the tools written for those send such requests.
	// Parameters the command does take are still checked.
	IgnoreExtraArgs bool
	// Stream marks a command that writes output until cancelled.
	Stream bool
	// Persistent commands are replayed on their console connection after
	// a reload or re-exec.
	Persistent bool
	// Aliases are further names for the same command, such as the
	// hyphenated spelling of an sfptpd command ("instance-select" for
	// "selectinstance"). They share everything, parameters included.
	Aliases []string
	Handler Handler
	// Help, when set, gives the commands this one fronts (the hub's
	// command per daemon fronts that daemon's), for a usage request with
	// the command's name: no words asks for all of them, one word names
	// one (an error if there is none by that name). The console answers
	// "? NAME" with their table and "? NAME CMD" with CMD's usage.
	Help func(ctx context.Context, words []string) ([]*Command, error)

	builtin bool
}

// ShortUsage returns "name syntax - comment", as gone's console lists it.
func (c *Command) ShortUsage() string {
	s := c.Name
	if syn := c.Synopsis(); syn != "" {
		s += " " + syn
	}
	if c.Comment != "" {
		s += " - " + c.Comment
	}
	return s
}

// Synopsis returns the parameter part of the short usage: Syntax, or one
// derived from Params ("phy address [page]").
func (c *Command) Synopsis() string {
	if c.Syntax != "" || c.AnyArgs {
		return c.Syntax
	}
	parts := make([]string, 0, len(c.Params))
	for _, p := range c.Params {
		n := p.Name
		if p.Rest {
			n += "..."
		}
		if !p.Required {
			n = "[" + n + "]"
		}
		parts = append(parts, n)
	}
	return strings.Join(parts, " ")
}

// LongUsage returns the full usage: short usage, long text and the
// parameter table.
func (c *Command) LongUsage() string {
	var b strings.Builder
	b.WriteString("usage: " + c.Name)
	if syn := c.Synopsis(); syn != "" {
		b.WriteString(" " + syn)
	}
	b.WriteString("\n")
	if c.Comment != "" {
		b.WriteString("  " + c.Comment + "\n")
	}
	if c.Usage != "" {
		for _, l := range strings.Split(strings.TrimRight(c.Usage, "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	for _, p := range c.Params {
		fmt.Fprintf(&b, "  --%s=%s", p.Name, strings.ToUpper(p.Type.String()))
		var notes []string
		if p.Required {
			notes = append(notes, "required")
		} else if p.Default != nil {
			notes = append(notes, fmt.Sprintf("default %v", p.Default))
		}
		if p.Ranged {
			if p.Type == String {
				notes = append(notes, fmt.Sprintf("at most %d bytes", int(p.Max)))
			} else {
				notes = append(notes, "range "+p.rangeText())
			}
		}
		if len(p.Choices) > 0 {
			notes = append(notes, "one of "+strings.Join(p.Choices, "|"))
		}
		if p.Rest {
			notes = append(notes, "repeatable")
		}
		if p.Help != "" {
			fmt.Fprintf(&b, "  %s", p.Help)
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
		}
		b.WriteString("\n")
	}
	if c.Stream {
		b.WriteString("  Streams output until cancelled by the next command line.\n")
	}
	return b.String()
}

// Registry holds a daemon's commands and the process state the common
// commands report. It is safe for concurrent use.
//
// Every registry serves list-commands and the common commands
// version-get, status-get, build-report, config-get, commands-get,
// shutdown and, with a log ring, log-get; a daemon registers its own
// next to them.
type Registry struct {
	opts Options

	mu   sync.RWMutex
	cmds map[string]*Command
	// names caches the sorted names; nil after a change.
	names []string

	// smu guards the process state below.
	smu      sync.Mutex
	started  time.Time
	reloaded time.Time
	reloads  int

	// srv is the server running the registry's front ends, whose
	// connections status-get reports; set by NewServerFrom, under smu.
	srv *Server

	// reqs counts requests by front end and result.
	reqs counters

	shutdownOnce sync.Once
	shutdown     chan struct{}
}

// Options configures a registry's common commands.
type Options struct {
	// Name is the daemon's name ("ptpd", "ctl", ...).
	Name string
	// Version overrides the version taken from the build information.
	Version string
	// Config returns the running configuration for config-get. Nil gives
	// an empty map.
	Config func() any
	// Status adds daemon-specific keys to status-get.
	Status func() map[string]any
	// Logger is the daemon's logger; nil means slog.Default().
	Logger *slog.Logger
	// LogRing, when set, holds the daemon's recent log lines
	// (cli.Logging.Ring), and the registry serves log-get from it.
	LogRing *logring.Ring
}

// NewRegistry returns a registry holding list-commands and the common
// commands.
func NewRegistry(opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = BuildVersion()
	}
	now := time.Now()
	r := &Registry{
		opts:     opts,
		cmds:     make(map[string]*Command),
		started:  now,
		reloaded: now,
		shutdown: make(chan struct{}),
	}
	r.cmds["list-commands"] = &Command{
		Name:            "list-commands",
		Comment:         "list the supported commands",
		IgnoreExtraArgs: true,
		builtin:         true,
		Handler: func(context.Context, *Call) Result {
			names := r.Names()
			list := make([]any, len(names))
			for i, n := range names {
				list[i] = n
			}
			return Result{Code: Success, Args: list}
		},
	}
	r.registerCommon()
	return r
}

// Logger returns the registry's logger.
func (r *Registry) Logger() *slog.Logger { return r.opts.Logger }

// Errors returned by Register and Deregister.
var (
	ErrDuplicate = errors.New("command already registered")
	ErrBuiltin   = errors.New("built-in command cannot be deregistered")
	ErrNotFound  = errors.New("command not registered")
)

// Register adds c under its name and aliases. Names must be unique,
// non-empty and free of whitespace, '=' and ','; a nil handler is
// refused.
func (r *Registry) Register(c *Command) error {
	if c == nil || c.Name == "" {
		return errors.New("ctl: register: command has no name")
	}
	if err := c.check(); err != nil {
		return fmt.Errorf("ctl: register %w", err)
	}
	if c.Handler == nil {
		return fmt.Errorf("ctl: register %q: nil handler", c.Name)
	}
	names := append([]string{c.Name}, c.Aliases...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, n := range names {
		if _, ok := r.cmds[n]; ok || (i > 0 && slices.Contains(names[:i], n)) {
			return fmt.Errorf("ctl: register %q: %q: %w", c.Name, n, ErrDuplicate)
		}
	}
	for _, n := range names {
		r.cmds[n] = c
	}
	r.names = nil
	return nil
}

// check is what Register and NewCommandFromSchema require of a
// command's names and schema.
func (c *Command) check() error {
	if c.Name == "" {
		return errors.New("command has no name")
	}
	for _, n := range append([]string{c.Name}, c.Aliases...) {
		if n == "" || strings.ContainsAny(n, " \t\r\n=,#?!\"'\\") {
			return fmt.Errorf("%q: name %q is empty or contains a reserved character", c.Name, n)
		}
	}
	seen := map[string]bool{}
	for i, p := range c.Params {
		if p.Name == "" || seen[p.Name] {
			return fmt.Errorf("%q: parameter %d has an empty or duplicate name", c.Name, i)
		}
		seen[p.Name] = true
		if p.Rest && i != len(c.Params)-1 {
			return fmt.Errorf("%q: Rest parameter %q must be last", c.Name, p.Name)
		}
		if p.Default != nil {
			if _, err := p.Convert(p.Default); err != nil {
				return fmt.Errorf("%q: default of %q: %w", c.Name, p.Name, err)
			}
		}
	}
	return nil
}

// MustRegister is Register for commands defined at start-up, where an
// error is a programming mistake.
func (r *Registry) MustRegister(cs ...*Command) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Deregister removes a command, by its name or an alias, with all its
// names. Built-in commands stay.
func (r *Registry) Deregister(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cmds[name]
	if !ok {
		return fmt.Errorf("ctl: deregister %q: %w", name, ErrNotFound)
	}
	if c.builtin {
		return fmt.Errorf("ctl: deregister %q: %w", name, ErrBuiltin)
	}
	delete(r.cmds, c.Name)
	for _, a := range c.Aliases {
		delete(r.cmds, a)
	}
	r.names = nil
	return nil
}

// Lookup returns the named command.
func (r *Registry) Lookup(name string) (*Command, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.cmds[name]
	return c, ok
}

// Names returns the sorted command names. The slice is shared: callers
// must not modify it.
func (r *Registry) Names() []string {
	r.mu.RLock()
	names := r.names
	r.mu.RUnlock()
	if names != nil {
		return names
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil {
		r.names = make([]string, 0, len(r.cmds))
		for n := range r.cmds {
			r.names = append(r.names, n)
		}
		sort.Strings(r.names)
	}
	return r.names
}

// Commands returns the commands sorted by name, each once (aliases are
// not repeated).
func (r *Registry) Commands() []*Command {
	r.mu.RLock()
	cs := make([]*Command, 0, len(r.cmds))
	for n, c := range r.cmds {
		if n == c.Name {
			cs = append(cs, c)
		}
	}
	r.mu.RUnlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs
}

// UnsupportedResult is the reply to an unknown command, which every
// front end shares.
func UnsupportedResult(name string) Result {
	return Result{Code: Unsupported, Text: fmt.Sprintf("'%s' command not supported.", name)}
}

// Invoke validates in against the named command's schema and runs it.
// Unknown commands give UnsupportedResult; invalid parameters give
// result 1 with a text naming the parameter. out receives streamed or
// textual output and may be nil. Every request is counted under
// in.Front.
func (r *Registry) Invoke(ctx context.Context, name string, in Input, out io.Writer) Result {
	c, ok := r.Lookup(name)
	if !ok {
		r.reqs.add(in.Front, Unsupported)
		return UnsupportedResult(name)
	}
	return r.Run(ctx, c, in, out)
}

// Run is Invoke for an already looked-up command. It counts the
// request under in.Front and the result's code.
func (r *Registry) Run(ctx context.Context, c *Command, in Input, out io.Writer) Result {
	res := r.run(ctx, c, in, out)
	r.reqs.add(in.Front, res.Code)
	return res
}

func (r *Registry) run(ctx context.Context, c *Command, in Input, out io.Writer) Result {
	if c.IgnoreExtraArgs {
		in = c.dropExtraArgs(in)
	}
	args, err := c.Bind(in)
	if err != nil {
		return Result{Code: Error, Text: err.Error()}
	}
	if out == nil {
		out = io.Discard
	}
	call := &Call{Command: c, Args: args, Out: out}
	return c.Handler(ctx, call)
}

// dropExtraArgs returns in without the arguments c does not take: named
// ones not in its schema and positional ones past it. in is not
// modified; the raw text stays as received.
func (c *Command) dropExtraArgs(in Input) Input {
	if c.AnyArgs {
		return in
	}
	if n := len(c.Params); len(in.Positional) > n && (n == 0 || !c.Params[n-1].Rest) {
		in.Positional = in.Positional[:n:n]
	}
	extra := false
	for k := range in.Named {
		if c.Param(k) == nil {
			extra = true
			break
		}
	}
	if extra {
		kept := make(map[string]any, len(c.Params))
		for k, v := range in.Named {
			if c.Param(k) != nil {
				kept[k] = v
			}
		}
		in.Named = kept
	}
	return in
}
