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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tickbox-fw/tickbox/appliance/hotplug"
	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/cliflag"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

func main() { cli.Main("appliance", run) }

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
	all     []string
	logging *cli.Logging
}

// parseFlags parses the command line; its errors are usage errors (exit
// status 2), or flag.ErrHelp after -h.
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
	// Debug logging shows every datagram sent and every retry.
	c.logging = cli.LogFlags(fs, "v")
	if err := cli.ParseFlags(fs, args, 0); err != nil {
		return nil, err
	}
	c.Verbose = c.logging.Level() <= slog.LevelDebug
	if c.coalesce <= 0 || c.coalesce > maxCoalesce {
		return nil, cli.Usage("-coalesce %v: want more than 0 and at most %v", c.coalesce, maxCoalesce)
	}
	c.Coalesce = c.coalesce.String()
	p, err := hotplug.ParsePatterns(ignore.Values)
	if err != nil {
		return nil, cli.Usage("%w", err)
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
			return nil, cli.Usage("target socket path too long (%d bytes, at most 107): %s", len(t), t)
		}
		seen[t] = true
		c.all = append(c.all, t)
	}
	return c, nil
}

// run is the agent: it stops on a cancelled ctx (SIGINT, SIGTERM) or a
// shutdown command, returning nil. It logs to stderr.
func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := cfg.logging.Logger(stderr)

	agent := hotplug.New(hotplug.Options{
		Targets:  cfg.all,
		Ignore:   cfg.patterns,
		Coalesce: cfg.coalesce,
		Logger:   log,
	})
	d := ctl.NewRegistry(ctl.Options{
		Name:    "appliance",
		Logger:  log,
		LogRing: cfg.logging.Ring(),
		Config:  func() any { return cfg },
		Status:  agent.Status,
	})
	d.MustRegister(agent.Commands()...)
	srv := ctl.NewServer(d)
	if cfg.Kea != "" {
		if _, err := kea.Serve(srv, ctl.SocketSpec{Addr: cfg.Kea}, kea.Options{}); err != nil {
			return fmt.Errorf("control channel: %w", err)
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
		return cli.Exit(cli.ExitFailure, nil)
	}
	log.Info("stopped")
	return nil
}
