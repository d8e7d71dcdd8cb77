// Command ptpd is tickbox's PTP daemon with sfptpd's control surface:
// an sfptpd configuration file, sync instances selected by sfptpd's
// rules, sfptpd's stats logs and state files, the sfptpd datagram
// control socket (sfptpdctl) and signals, plus a Kea JSON channel.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
)

// DefaultKeaPath is the Kea control channel's default socket.
const DefaultKeaPath = "/run/ptpd/control.sock"

func main() { cli.Main("ptpd", run) }

type options struct {
	config        string
	kea           string
	virtual       string
	logging       *cli.Logging
	statsInterval time.Duration
	testConfig    bool
	version       bool
	iface         string
	domain        int
}

// parseFlags takes ptpd's own flags and sfptpd's command line options
// that make sense on this box, each under both of sfptpd's spellings
// (-t and --test-config). sfptpd's --daemon, --no-daemon and --console
// are accepted and change nothing: ptpd never forks (its supervisor
// runs it in the foreground) and logs where message_log says.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ptpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"f", "config-file"} {
		fs.StringVar(&o.config, n, "/etc/sfptpd.conf", "sfptpd-syntax configuration `FILE`")
	}
	for _, n := range []string{"t", "test-config"} {
		fs.BoolVar(&o.testConfig, n, false, "check the configuration, print the keywords ptpd ignores, and exit (0: it would run)")
	}
	for _, n := range []string{"i", "interface"} {
		fs.StringVar(&o.iface, n, "", "default `INTERFACE` for the sync modules' sections (the file overrides it)")
	}
	for _, n := range []string{"D", "ptp-domain"} {
		fs.IntVar(&o.domain, n, -1, "default PTP `DOMAIN` (the file overrides it)")
	}
	o.logging = cli.LogFlags(fs, "v", "verbose")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	var ignored bool
	for _, n := range []string{"daemon", "no-daemon", "console"} {
		fs.BoolVar(&ignored, n, false, "accepted for sfptpd's command lines; no effect")
	}
	fs.StringVar(&o.kea, "kea", DefaultKeaPath, "Kea JSON control socket `PATH` (empty disables)")
	fs.StringVar(&o.virtual, "virtual-clock", "", "run on a virtual clock `OFFSET,PPM` (e.g. 500us,30) instead of the system clock")
	fs.DurationVar(&o.statsInterval, "stats-interval", engine.DefaultStatsInterval, "stats, selection and state file period")
	if err := cli.ParseFlags(fs, args, 0); err != nil {
		return o, err
	}
	if o.statsInterval < time.Millisecond || o.statsInterval > time.Hour {
		return o, cli.Usage("-stats-interval %v: want 1ms to 1h", o.statsInterval)
	}
	if o.domain > 255 || o.domain < -1 {
		return o, cli.Usage("-D %d: want a PTP domain 0..255", o.domain)
	}
	return o, nil
}

// run is ptpd until exit, SIGINT or SIGTERM (which end ctx), after which
// it returns nil. Its errors give internal/cli's statuses: 1 when
// start-up fails (a configuration error prints FILE:LINE: ...), 2 for
// bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.version {
		fmt.Fprintln(stdout, "ptpd", ctl.BuildVersion())
		return nil
	}
	clk, err := openClock(o.virtual)
	if err != nil {
		return cli.Usage("%w", err)
	}
	copts := config.DefaultOptions()
	copts.DefaultInterface, copts.DefaultDomain = o.iface, o.domain
	cfg, err := config.LoadOptions(o.config, copts)
	if err != nil {
		return cli.Plain(cli.ExitFailure, err)
	}
	if o.testConfig {
		return testConfig(cfg, stdout)
	}
	if err := startable(cfg); err != nil {
		return cli.Plain(cli.ExitFailure, err)
	}
	logs, err := engine.OpenLogs(cfg.General, stdout, stderr)
	if err != nil {
		return err
	}
	defer logs.Close()
	// sfptpd's message_log decides where messages go, hence its own
	// handler; the level is the command line's, as in every daemon, and
	// the recent lines are kept for log-get as in every daemon (in
	// slog's text form).
	log := o.logging.Wrap(logs.Handler(o.logging.Level()))
	if logs.Fallback != "" {
		log.Warn(logs.Fallback)
	}

	// Each keyword ptpd accepts but does not act on is said once, where
	// the user reads the daemon's messages.
	for _, ig := range cfg.Ignored {
		log.Info(ig.String())
	}
	for _, w := range cfg.Warnings {
		log.Warn(w.String())
	}
	eng, err := engine.New(engine.Options{
		Config: cfg, Modules: modules(cfg.File, o.virtual != "", log), Clock: clk, Logger: log, Logs: logs, StatsInterval: o.statsInterval,
		PersistentCorrection: cfg.General.PersistentClockCorrection,
	})
	if err != nil {
		return cli.Plain(cli.ExitFailure, err)
	}
	d := ctl.NewRegistry(ctl.Options{
		Name:    "ptpd",
		Logger:  log,
		LogRing: o.logging.Ring(),
		Config:  func() any { return cfg },
		Status: func() map[string]any {
			return map[string]any{"selected-instance": eng.Selected(), "clock": clk.Name()}
		},
	})
	if err := eng.RegisterWith(d, engine.CommandOptions{TestMode: cfg.General.TestMode}); err != nil {
		log.Error("register commands", "err", err)
		return cli.Exit(cli.ExitFailure, nil)
	}
	// SIGHUP and SIGUSR1 are caught from here on and handled once the
	// engine runs, so one sent as soon as the socket exists is not
	// fatal (SIGINT and SIGTERM are held by ctx from the start).
	caught := cli.Catch(syscall.SIGHUP, syscall.SIGUSR1)
	defer caught.Stop()
	srv := ctl.NewServer(d)
	// Datagrams that arrive before the engine runs (the hotplug agent
	// re-sends the interfaces as soon as the socket is re-created) wait
	// for it: refused, they would be lost.
	engineUp := make(chan struct{})
	if _, err := dgram.Serve(srv, ctl.SocketSpec{Addr: cfg.General.ControlPath, Mode: cfg.General.ControlMode}, dgram.Options{Ready: engineUp}); err != nil {
		log.Error("control socket", "err", err)
		return fmt.Errorf("control socket: %w", err)
	}
	if o.kea != "" {
		if _, err := kea.Serve(srv, ctl.SocketSpec{Addr: o.kea}, kea.Options{}); err != nil {
			srv.Close(context.Background())
			return fmt.Errorf("kea socket: %w", err)
		}
	}
	// The engine and the server run until the exit command: a signal
	// stops them through that command, as in sfptpd, not by ending
	// their context.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if err := eng.Start(runCtx); err != nil {
		srv.Close(context.Background())
		return err
	}
	close(engineUp)
	log.Info("ptpd started", "config", o.config, "control", cfg.General.ControlPath, "kea", o.kea, "clock", clk.Name(), "instances", len(cfg.Instances))

	go handleSignals(ctx, runCtx, d, caught)

	err = srv.Run(runCtx)
	eng.Stop()
	if err != nil {
		log.Error("ptpd stopped with an error", "err", err)
		return cli.Exit(cli.ExitFailure, nil)
	}
	log.Info("ptpd exiting")
	return nil
}

// handleSignals maps sfptpd's signals onto the same registry commands
// the control socket runs: SIGHUP logrotate, SIGUSR1 stepclocks, and
// SIGINT/SIGTERM, which end ctx, exit. It returns when runCtx ends.
func handleSignals(ctx, runCtx context.Context, d *ctl.Registry, caught *cli.Caught) {
	go caught.Handle(runCtx, func(s os.Signal) { signalCommand(runCtx, d, s) })
	select {
	case <-ctx.Done():
		if s := cli.Signal(ctx); s != nil {
			signalCommand(runCtx, d, s)
			return
		}
		d.Logger().Info("stop requested", "command", "exit")
		d.Invoke(runCtx, "exit", ctl.Input{}, nil)
	case <-runCtx.Done():
	}
}

// signalCommand runs the command signal s stands for.
func signalCommand(ctx context.Context, d *ctl.Registry, s os.Signal) {
	cmd, name := "exit", "SIGTERM"
	switch s {
	case syscall.SIGHUP:
		cmd, name = "logrotate", "SIGHUP"
	case syscall.SIGUSR1:
		cmd, name = "stepclocks", "SIGUSR1"
	case syscall.SIGINT:
		name = "SIGINT"
	}
	d.Logger().Info("signal received", "signal", name, "command", cmd)
	r := d.Invoke(ctx, cmd, ctl.Input{}, nil)
	if r.Code != ctl.Success {
		d.Logger().Warn("signal: command failed", "signal", name, "command", cmd, "text", r.Text)
	}
}

// startable returns the first reason the configuration cannot start
// here, as FILE:LINE: text: a ptp instance with no interface, or an
// instance whose hardware the box lacks.
func startable(cfg *config.Config) error {
	if err := cfg.StartError(); err != nil {
		return err
	}
	for _, in := range cfg.Instances {
		if err := checkInstance(cfg.File, in); err != nil {
			return err
		}
	}
	return nil
}

// testConfig is -t (--test-config), as sfptpd has it: it checks that the
// configuration would run, printing each keyword ptpd accepts but
// ignores and each warning, and returns nil when it would, a status 1
// error (FILE:LINE: text, printed as it is) when not.
func testConfig(cfg *config.Config, stdout io.Writer) error {
	for _, ig := range cfg.Ignored {
		fmt.Fprintln(stdout, ig.String())
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, w.String())
	}
	err := startable(cfg)
	if err == nil {
		// Module availability is the engine's check, made with the
		// same factories a start would use.
		_, err = engine.New(engine.Options{Config: cfg, Modules: modules(cfg.File, true, slog.New(slog.DiscardHandler))})
	}
	if err != nil {
		return cli.Plain(cli.ExitFailure, err)
	}
	names := make([]string, len(cfg.Instances))
	for i, in := range cfg.Instances {
		names[i] = in.Name + " (" + in.Module + ")"
	}
	fmt.Fprintf(stdout, "%s: configuration OK: sync instances %s\n", cfg.File, strings.Join(names, ", "))
	return nil
}
