// Command ptpd is tickbox's PTP daemon with sfptpd's control surface:
// an sfptpd configuration file, sync instances selected by sfptpd's
// rules, sfptpd's stats logs and state files, the sfptpd datagram
// control socket (sfptpdctl) and signals, plus a Kea JSON channel.
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

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
)

// DefaultKeaPath is the Kea control channel's default socket.
const DefaultKeaPath = "/run/ptpd/control.sock"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	config        string
	kea           string
	virtual       string
	verbose       bool
	statsInterval time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ptpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "f", "/etc/sfptpd.conf", "sfptpd-syntax configuration `FILE`")
	fs.StringVar(&o.kea, "kea", DefaultKeaPath, "Kea JSON control socket `PATH` (empty disables)")
	fs.StringVar(&o.virtual, "virtual-clock", "", "run on a virtual clock `OFFSET,PPM` (e.g. 500us,30) instead of the system clock")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	fs.DurationVar(&o.statsInterval, "stats-interval", engine.DefaultStatsInterval, "stats, selection and state file period")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.statsInterval < time.Millisecond || o.statsInterval > time.Hour {
		return o, fmt.Errorf("-stats-interval %v: want 1ms to 1h", o.statsInterval)
	}
	return o, nil
}

// run is main with its exit status: 0 after exit/SIGINT/SIGTERM, 1 when
// start-up fails (a configuration error prints FILE:LINE: ...), 2 for
// bad flags.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "ptpd:", err)
		return 2
	}
	clk, err := openClock(o.virtual)
	if err != nil {
		fmt.Fprintln(stderr, "ptpd:", err)
		return 2
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logs, err := engine.OpenLogs(cfg.General, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ptpd:", err)
		return 1
	}
	defer logs.Close()
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logs.Message, &slog.HandlerOptions{Level: level}))

	eng, err := engine.New(engine.Options{
		Config: cfg, Modules: modules(o.virtual != "", log), Clock: clk, Logger: log, Logs: logs, StatsInterval: o.statsInterval,
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	d := ctl.NewDaemon(ctl.DaemonOptions{
		Name:   "ptpd",
		Logger: log,
		Config: func() any { return cfg },
		Status: func() map[string]any {
			return map[string]any{"selected-instance": eng.Selected(), "clock": clk.Name()}
		},
	})
	if err := eng.Register(d); err != nil {
		log.Error("register commands", "err", err)
		return 1
	}
	// Signals are caught from here on and handled once the engine runs,
	// so one sent as soon as the socket exists is not fatal.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv := ctl.NewServer(d)
	if _, err := srv.ServeDgram(ctl.SocketSpec{Addr: cfg.General.ControlPath, Mode: cfg.General.ControlMode}, ctl.DgramOptions{}); err != nil {
		log.Error("control socket", "err", err)
		fmt.Fprintln(stderr, "ptpd: control socket:", err)
		return 1
	}
	if o.kea != "" {
		if _, err := srv.ServeKea(ctl.SocketSpec{Addr: o.kea}, ctl.KeaOptions{}); err != nil {
			srv.Close(context.Background())
			fmt.Fprintln(stderr, "ptpd: kea socket:", err)
			return 1
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := eng.Start(ctx); err != nil {
		srv.Close(context.Background())
		fmt.Fprintln(stderr, "ptpd:", err)
		return 1
	}
	log.Info("ptpd started", "config", o.config, "control", cfg.General.ControlPath, "kea", o.kea, "clock", clk.Name(), "instances", len(cfg.Instances))

	go handleSignals(ctx, d, sigs)

	err = srv.Run(ctx)
	eng.Stop()
	if err != nil {
		log.Error("ptpd stopped with an error", "err", err)
		return 1
	}
	log.Info("ptpd exiting")
	return 0
}

// handleSignals maps sfptpd's signals onto the same registry commands
// the control socket runs: SIGHUP logrotate, SIGUSR1 stepclocks,
// SIGINT/SIGTERM exit.
func handleSignals(ctx context.Context, d *ctl.Daemon, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
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
			r := d.Invoke(ctx, cmd, ctl.Input{}, nil, "signal")
			if r.Code != ctl.Success {
				d.Logger().Warn("signal: command failed", "signal", name, "command", cmd, "text", r.Text)
			}
		}
	}
}
