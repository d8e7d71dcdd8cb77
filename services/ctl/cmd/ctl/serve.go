package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/httpauth"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/console"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	ctlhub "github.com/tickbox-fw/tickbox/services/ctl/hub"
	"github.com/tickbox-fw/tickbox/services/ctl/hub/remote"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/ctl/metrics"
	"github.com/tickbox-fw/tickbox/services/ctl/web"
)

type serveConfig struct {
	Kea         string   `json:"kea"`
	HTTP        string   `json:"http"`
	Hub         string   `json:"config,omitempty"`
	Services    []string `json:"services,omitempty"`
	Timeout     string   `json:"forward-timeout,omitempty"`
	Auth        bool     `json:"http-auth"`
	MetricsAuth bool     `json:"metrics-auth"`
	Dgram       string   `json:"dgram"`
	IPC         string   `json:"ipc"`
	Console     string   `json:"console"`
	IPCDial     string   `json:"ipc-connect,omitempty"`
	MaxConns    int      `json:"max-conns"`
	Mode        string   `json:"socket-mode"`
	AllowGID    int      `json:"allow-gid"`
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serveConfig
	fs.StringVar(&cfg.Kea, "kea", "/run/ctl/control.sock", "Kea JSON channel socket path (empty disables)")
	fs.StringVar(&cfg.Hub, "config", "", "hub configuration (Control Agent shape: control-sockets) naming the daemons to forward to; none: no forwarding")
	fs.StringVar(&cfg.HTTP, "http", ":8080", "address of the HTTP listener: the Kea channel as POST / (empty disables)")
	pwFile := fs.String("password-file", "/etc/gokr-pw.txt", "basic auth password for user gokrazy on -http (gokrazy's own file); empty turns auth off")
	fs.BoolVar(&cfg.MetricsAuth, "metrics-auth", false, "require the password on /metrics too")
	fwdTimeout := fs.Duration("forward-timeout", 0, "bound on one forward; 0 takes the config's forward-timeout (default 10s), a value here overrides it")
	fs.StringVar(&cfg.Dgram, "dgram", "/run/ctl/dgram.sock", "sfptpd-style datagram socket path (empty disables)")
	fs.StringVar(&cfg.IPC, "ipc", "/run/ctl/ipc.socket", "nose IPC socket: NAME (/tmp/NAME.socket) or PATH (empty disables)")
	fs.StringVar(&cfg.Console, "console", "/run/ctl/console.sock", "console socket path (empty disables)")
	ipcConnect := fs.String("ipc-connect", "", "also dial out to this nose IPC socket and serve that connection")
	fs.IntVar(&cfg.MaxConns, "max-conns", ctl.DefaultMaxConns, "concurrent connections per front end")
	fs.StringVar(&cfg.Mode, "socket-mode", "0660", "mode of socket files (octal)")
	fs.IntVar(&cfg.AllowGID, "allow-gid", -1, "group allowed on abstract sockets besides root and the daemon's user")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to `FILE` until it stops (for go tool pprof)")
	logging := cli.LogFlags(fs, "v")
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("serve: unexpected argument %q", fs.Arg(0))
	}
	cfg.IPCDial = *ipcConnect
	if *fwdTimeout < 0 {
		return cli.Usage("serve: -forward-timeout %v: want a positive duration, or 0 for the config's", *fwdTimeout)
	}
	mode, err := strconv.ParseUint(cfg.Mode, 8, 32)
	if err != nil || mode > 0o777 {
		return cli.Usage("serve: -socket-mode %q: want an octal mode such as 0660", cfg.Mode)
	}
	log := logging.Logger(stderr)
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return &cli.ExitError{Code: 1, Err: err}
		}
		defer stop()
	}

	// The hub: the daemons this process forwards to, and the password
	// of the HTTP listener. Both are read before anything listens, so
	// that a bad file is a startup error.
	var h *ctlhub.Hub
	if cfg.Hub != "" {
		hc, err := ctlhub.LoadConfig(cfg.Hub)
		if err != nil {
			return &cli.ExitError{Code: 1, Err: err}
		}
		if *fwdTimeout > 0 {
			hc.Timeout = *fwdTimeout
		}
		h = ctlhub.New(hc, log.With("component", "hub"))
		defer h.Close()
		cfg.Services = h.Services()
		cfg.Timeout = h.Timeout().String()
	}
	var auth *httpauth.Basic
	if cfg.HTTP != "" && *pwFile != "" {
		a, err := httpauth.Load(authRealm, authUser, *pwFile)
		if err != nil {
			return &cli.ExitError{Code: 1, Err: fmt.Errorf("%w (the HTTP listener %s needs it; -password-file FILE names another, -http \"\" turns the listener off)", err, cfg.HTTP)}
		}
		auth = a
		cfg.Auth = true
	}

	// The front ends, once started; status-get reports their counters.
	// A front end may answer status-get before the next one is started,
	// hence the lock.
	var fe struct {
		sync.Mutex
		dgram *dgram.Server
		ipc   *ipc.Server
	}
	d := ctl.NewRegistry(ctl.Options{
		Name:    "ctl",
		Logger:  log,
		LogRing: logging.Ring(),
		Config:  func() any { return cfg },
		Status: func() map[string]any {
			fe.Lock()
			defer fe.Unlock()
			// The registry itself reports the requests and connections
			// per front end; these are the front ends' own counters.
			st := map[string]any{}
			if fe.ipc != nil {
				st["ipc-events-dropped"] = fe.ipc.Dropped()
			}
			if fe.dgram != nil {
				st["dgram"] = fe.dgram.Stats()
			}
			return st
		},
	})
	srv := ctl.NewServer(d)
	d.MustRegister(echoCommand(), streamCommand(), srv.ReexecCommand())
	keaOpts := kea.Options{StreamOptions: ctl.StreamOptions{MaxConns: cfg.MaxConns}}
	if h != nil {
		// services-get, then one command per fronted daemon, log and
		// events; a service named like one of ctl's commands is refused.
		cmds := append(h.Commands(), remote.New(h, remote.Options{Logger: log.With("component", "hub")}).Commands()...)
		for _, c := range cmds {
			if err := d.Register(c); err != nil {
				return &cli.ExitError{Code: 1, Err: fmt.Errorf("hub: %w", err)}
			}
		}
		keaOpts.Forward = h.Forward
	}

	streamOpts := ctl.StreamOptions{MaxConns: cfg.MaxConns}
	if cfg.AllowGID >= 0 {
		streamOpts.Peers.GIDs = []uint32{uint32(cfg.AllowGID)}
	}
	keaOpts.StreamOptions = streamOpts
	spec := func(addr string) ctl.SocketSpec {
		return ctl.SocketSpec{Addr: addr, Mode: os.FileMode(mode)}
	}
	fail := func(err error) error {
		srv.Close(context.Background())
		return &cli.ExitError{Code: 1, Err: err}
	}
	if cfg.Kea != "" {
		if _, err := kea.Serve(srv, spec(cfg.Kea), keaOpts); err != nil {
			return fail(err)
		}
	}
	if cfg.Dgram != "" {
		if err := keep(&fe.Mutex, &fe.dgram)(dgram.Serve(srv, spec(cfg.Dgram), dgram.Options{})); err != nil {
			return fail(err)
		}
	}
	if cfg.IPC != "" {
		if err := keep(&fe.Mutex, &fe.ipc)(ipc.Serve(srv, spec(ipc.Addr(cfg.IPC)), ipc.Options{StreamOptions: streamOpts})); err != nil {
			return fail(err)
		}
	}
	if cfg.Console != "" {
		if _, err := console.Serve(srv, spec(cfg.Console), console.Options{StreamOptions: streamOpts}); err != nil {
			return fail(err)
		}
	}
	if cfg.HTTP != "" {
		// The status page and /metrics show the fronted daemons (and
		// /metrics this process too); without -config, no daemon.
		src := h
		if src == nil {
			src = ctlhub.New(&ctlhub.Config{}, log)
		}
		page := web.New(src, web.Options{Logger: log.With("component", "status-page")})
		go page.Run(ctx)
		pageHandler := page.Handler()
		mux := httpMux(kea.HTTPHandler(srv, keaOpts), auth, cfg.MetricsAuth,
			route{pattern: "GET /{$}", handler: pageHandler},
			route{pattern: "GET /api/", handler: pageHandler},
			route{pattern: "GET /metrics", handler: metrics.Handler(metrics.Options{Source: src, Self: d, Logger: log.With("component", "metrics")}), metrics: true})
		hf, err := serveHTTP(cfg.HTTP, mux, log)
		if err != nil {
			return fail(err)
		}
		if err := srv.Add(hf); err != nil {
			hf.Stop(context.Background(), false)
			return fail(err)
		}
	}

	usr2 := cli.Catch(syscall.SIGUSR2)
	defer usr2.Stop()
	go usr2.Handle(ctx, func(os.Signal) {
		log.Info("SIGUSR2: re-executing in place")
		if err := srv.Reexec(); err != nil {
			log.Error("re-exec failed; exiting for the supervisor to restart", "err", err)
			os.Exit(1)
		}
	})
	if cfg.IPCDial != "" {
		go func() {
			err := ipc.Connect(ctx, srv, cfg.IPCDial, ipc.Options{})
			if err != nil && ctx.Err() == nil {
				log.Error("ipc-connect ended", "path", cfg.IPCDial, "err", err)
			} else {
				log.Info("ipc-connect connection closed", "path", cfg.IPCDial)
			}
		}()
	}
	log.Info("ctl serving", "version", d.Version(), "pid", os.Getpid(), "resumed", srv.Resumed())
	if err := srv.Run(ctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	log.Info("ctl stopped")
	return nil
}

// startCPUProfile writes a CPU profile of the process to path until
// the returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// keep stores a started front end under mu, for status-get.
func keep[T any](mu *sync.Mutex, dst *T) func(T, error) error {
	return func(x T, err error) error {
		if err == nil {
			mu.Lock()
			*dst = x
			mu.Unlock()
		}
		return err
	}
}

// echoCommand returns its arguments: the diagnostic every front end is
// tested and benchmarked with.
func echoCommand() *ctl.Command {
	return &ctl.Command{
		Name:    "echo",
		Syntax:  "[ARGS...]",
		Comment: "return the arguments",
		Usage:   "Returns its arguments unchanged: named ones by name, positional ones as \"0\", \"1\", ...",
		AnyArgs: true,
		Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			args := c.Args.Any()
			var parts []string
			for i := 0; ; i++ {
				v, ok := args[strconv.Itoa(i)]
				if !ok {
					break
				}
				parts = append(parts, fmt.Sprint(v))
			}
			return ctl.OK(strings.Join(parts, " "), args)
		},
	}
}

// streamCommand emits one numbered line every interval until cancelled
// (or count lines, when count is set).
func streamCommand() *ctl.Command {
	return &ctl.Command{
		Name:    "stream",
		Comment: "emit a numbered line every INTERVAL ms until cancelled",
		Usage: "Writes \"N\" lines (1, 2, ...) with a timestamp every interval milliseconds.\n" +
			"With count > 0 it stops after count lines. It is persistent: a console\n" +
			"connection running it resumes it after a re-exec.",
		Params: []ctl.Param{
			{Name: "interval", Type: ctl.Int, Default: int64(1000), Ranged: true, Min: 1, Max: 3600000, Help: "milliseconds between lines"},
			{Name: "count", Type: ctl.Int, Default: int64(0), Ranged: true, Min: 0, Max: 1 << 31, Help: "lines to emit; 0 means until cancelled"},
		},
		Stream:     true,
		Persistent: true,
		Handler: func(ctx context.Context, c *ctl.Call) ctl.Result {
			tick := time.NewTicker(time.Duration(c.Args.Int("interval")) * time.Millisecond)
			defer tick.Stop()
			count := c.Args.Int("count")
			var n int64
			for count == 0 || n < count {
				select {
				case <-ctx.Done():
					return ctl.OK(fmt.Sprintf("stream cancelled after %d lines", n), map[string]any{"lines": n})
				case t := <-tick.C:
					n++
					if _, err := fmt.Fprintf(c.Out, "%d %s\n", n, t.UTC().Format(time.RFC3339Nano)); err != nil {
						return ctl.Fail("stream: %v", err)
					}
				}
			}
			return ctl.OK(fmt.Sprintf("stream done after %d lines", n), map[string]any{"lines": n})
		},
	}
}
