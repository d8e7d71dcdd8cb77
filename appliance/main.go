// Command appliance is tickbox's netlink hotplug agent. It watches the
// kernel's network links and tells the PTP daemons about interfaces that
// appear and disappear, with the sfptpd control datagrams
// "interfaceinsert=IF" and "interfaceremove=IF". It runs on the image as
// a gokrazy service and works the same on any Linux host.
//
// Its own state is reachable over a Kea control channel: interfaces-get,
// events-get, status-get, config-get and the other common commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/appliance/hotplug"
	"github.com/tickbox-fw/tickbox/internal/cliflag"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// Defaults of the flags.
const (
	defaultSfptpdSocket = "/run/sfptpd/control-v1.sock"
	defaultKea          = "/run/appliance/control.sock"
)

// maxCoalesce bounds -coalesce: a longer window only delays every daemon.
const maxCoalesce = 10 * time.Second

// config is the parsed command line, as config-get reports it.
type config struct {
	SfptpdSocket string   `json:"sfptpd-socket"`
	Targets      []string `json:"target"`
	Ignore       []string `json:"ignore"`
	Coalesce     string   `json:"coalesce"`
	Kea          string   `json:"kea"`
	Verbose      bool     `json:"verbose"`

	coalesce time.Duration
	patterns hotplug.Patterns
	// all is every target, sfptpd's first, without duplicates.
	all []string
}

// usageError is a command-line mistake: exit status 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("appliance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: appliance [flags]

Watches network links over netlink and sends "interfaceinsert=IF" for each
new interface and "interfaceremove=IF" for each removed one to sfptpd-style
control datagram sockets. Existing interfaces are sent as inserts at start.
Bursts of link messages are coalesced; an interface that comes and goes
within one window is logged, not sent. An unreachable target is logged once
and retried with backoff; its datagrams wait in order in a bounded queue.

Flags:
`)
		fs.PrintDefaults()
	}
	c := &config{}
	targets, ignore := cliflag.NewList(), cliflag.NewList()
	fs.StringVar(&c.SfptpdSocket, "sfptpd-socket", defaultSfptpdSocket, "ptpd's sfptpd control `socket` (empty disables)")
	fs.Var(targets, "target", "another sfptpd-style datagram `socket` sent the same datagrams (repeatable)")
	fs.Var(ignore, "ignore", "ignore interfaces matching this path.Match `glob`, e.g. 'veth*' (repeatable; lo is always ignored)")
	fs.DurationVar(&c.coalesce, "coalesce", hotplug.DefaultCoalesce, "coalescing window for bursts of link messages")
	fs.StringVar(&c.Kea, "kea", defaultKea, "Kea JSON control `socket` for interfaces-get, events-get, status-get (empty disables)")
	fs.BoolVar(&c.Verbose, "v", false, "debug logging (every datagram sent, every retry)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if c.coalesce <= 0 || c.coalesce > maxCoalesce {
		return nil, usageError{fmt.Errorf("-coalesce %v: want more than 0 and at most %v", c.coalesce, maxCoalesce)}
	}
	c.Coalesce = c.coalesce.String()
	p, err := hotplug.ParsePatterns(ignore.Values)
	if err != nil {
		return nil, usageError{err}
	}
	c.patterns = p
	c.Ignore = p.List()
	c.Targets = append([]string{}, targets.Values...)
	seen := map[string]bool{}
	for _, t := range append([]string{c.SfptpdSocket}, targets.Values...) {
		if t == "" || seen[t] {
			continue
		}
		// sun_path holds 107 bytes and a NUL; a longer path can never be
		// reached, so it is a mistake, not a target to retry.
		if len(t) > 107 {
			return nil, usageError{fmt.Errorf("target socket path too long (%d bytes, at most 107): %s", len(t), t)}
		}
		seen[t] = true
		c.all = append(c.all, t)
	}
	return c, nil
}

// run is the program: it returns the exit status. It stops on a
// cancelled ctx (SIGINT, SIGTERM) or a shutdown command, with status 0.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "appliance: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	agent := hotplug.New(hotplug.Options{
		Targets:  cfg.all,
		Ignore:   cfg.patterns,
		Coalesce: cfg.coalesce,
		Logger:   log,
	})
	d := ctl.NewRegistry(ctl.Options{
		Name:   "appliance",
		Logger: log,
		Config: func() any { return cfg },
		Status: agent.Status,
	})
	d.MustRegister(agent.Commands()...)
	srv := ctl.NewServer(d)
	if cfg.Kea != "" {
		if _, err := kea.Serve(srv, ctl.SocketSpec{Addr: cfg.Kea}, kea.Options{}); err != nil {
			log.Error("cannot serve the control channel", "err", err)
			return 1
		}
	}

	actx, stop := context.WithCancel(ctx)
	agentDone := make(chan struct{})
	go func() { agent.Run(actx); close(agentDone) }()
	err = srv.Run(ctx)
	stop()
	<-agentDone
	if err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
