// Command mdiod gives engineers and scripts live access to the board's
// Ethernet PHYs: Clause 22 and Clause 45 register reads and writes, with
// pages, decoded status and link events. It speaks the line-JSON IPC of
// the Intona Ethernet Debugger's host tool (nose), so the same scripts
// and socat one-liners work, and serves the same commands over a Kea
// control channel, a console and an sfptpd-style datagram socket (where
// the appliance agent reports interfaces that come and go).
//
//	mdiod [--ipc-server NAME|PATH] [--ipc-connect PATH] [-kea PATH] [-console PATH]
//	      [-hotplug PATH] [-poll D] [-v] [-log-level LEVEL] -port A=BACKEND [-port B=BACKEND]
//
// Backends: ioctl:IFACE[:PHYADDR], gpio:mdc=PIN,mdio=PIN[,addr=N],
// sim[:MODEL[,OPTIONS]].
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/cliflag"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/console"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mdiod/daemon"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/sim"
)

func main() { cli.Main("mdiod", hooks{}.run) }

// Defaults of the flags.
const (
	defaultIPC     = "mdiod"
	defaultKea     = "/run/mdiod/control.sock"
	defaultConsole = "/run/mdiod/console.sock"
	defaultHotplug = "/run/mdiod/hotplug.sock"
)

// config is the parsed command line, as config-get reports it.
type config struct {
	IPCServer  string   `json:"ipc-server"`
	IPCConnect string   `json:"ipc-connect,omitempty"`
	Kea        string   `json:"kea"`
	Console    string   `json:"console"`
	Hotplug    string   `json:"hotplug"`
	Poll       string   `json:"poll"`
	Ports      []string `json:"port"`
}

// running is what the daemon exposes to tests once it serves.
type running struct {
	mdio *daemon.MDIO
	srv  *ctl.Server
	ipc  *ipc.Server
}

// hooks let tests see the running daemon and wrap its backends.
type hooks struct {
	// ready is called once everything is listening.
	ready func(running)
	// wrap replaces port i's backend after it is opened.
	wrap func(i int, p mdio.PHY) mdio.PHY
	// reconnect overrides defaultReconnect.
	reconnect time.Duration
}

// defaultReconnect is how long --ipc-connect waits before dialling again.
const defaultReconnect = time.Second

const usageText = `usage: mdiod [flags] -port A=BACKEND [-port B=BACKEND]

Ports map nose's phy bitmask onto PHYs: A = 1, B = 2, both = 3.
Backends:
  ioctl:IFACE[:PHYADDR]              Linux MII ioctls on a network interface
  gpio:mdc=PIN,mdio=PIN[,addr=N]     bit-banged MDIO on two GPIO lines
  sim[:MODEL[,OPTIONS]]              simulated PHY; models: %s
        options: link=up|down speed=10|100|1000 role=master|slave an=DURATION
                 script=STATE@OFFSET;... (STATE down, an, up[/SPEED][/master|/slave])
                 cycle=DURATION (repeat the script)

Flags:
`

// openBackend opens a -port backend spec. It is the one place backends
// are wired in.
func openBackend(spec string, log *slog.Logger) (mdio.PHY, error) {
	kind, params, _ := strings.Cut(spec, ":")
	switch kind {
	case "sim":
		p, err := sim.Open(params)
		if err != nil {
			return nil, cli.Usage("%v", err)
		}
		return p, nil
	case "ioctl", "gpio":
		return openHardware(kind, params, log)
	}
	return nil, cli.Usage("unknown backend %q in %q (ioctl, gpio, sim)", kind, spec)
}

// parsePorts turns the -port values into the two port slots.
func parsePorts(vals []string) ([2]string, error) {
	var specs [2]string
	if len(vals) == 0 {
		return specs, cli.Usage("no -port given: want -port A=BACKEND (and optionally -port B=BACKEND)")
	}
	for _, v := range vals {
		name, spec, ok := strings.Cut(v, "=")
		i := -1
		switch strings.ToUpper(name) {
		case "A":
			i = 0
		case "B":
			i = 1
		}
		if !ok || i < 0 || spec == "" {
			return specs, cli.Usage("-port %q: want A=BACKEND or B=BACKEND", v)
		}
		if specs[i] != "" {
			return specs, cli.Usage("-port %s given twice", daemon.PortNames[i])
		}
		specs[i] = spec
	}
	return specs, nil
}

// run parses args and serves until ctx ends (SIGINT, SIGTERM) or
// exit/shutdown is called. It logs to stderr.
func (h hooks) run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdiod", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.IPCServer, "ipc-server", defaultIPC, "nose IPC socket: NAME (/tmp/NAME.socket) or PATH (empty disables)")
	fs.StringVar(&cfg.IPCConnect, "ipc-connect", "", "dial out to this nose IPC socket and serve that connection (redialled when it ends)")
	fs.StringVar(&cfg.Kea, "kea", defaultKea, "Kea JSON control socket path (empty disables)")
	fs.StringVar(&cfg.Console, "console", defaultConsole, "console socket path (empty disables)")
	fs.StringVar(&cfg.Hotplug, "hotplug", defaultHotplug, "sfptpd-style datagram socket for interfaceinsert/interfaceremove (empty disables)")
	poll := fs.Duration("poll", daemon.DefaultPoll, "link poll interval (at least 10ms)")
	logging := cli.LogFlags(fs, "v")
	ports := cliflag.NewList()
	fs.Var(ports, "port", "`A=BACKEND` or B=BACKEND (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, usageText, strings.Join(sim.ModelNames(), ", "))
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args, 0); err != nil {
		return err
	}
	if *poll < daemon.MinPoll {
		return cli.Usage("-poll %v: at least %v", *poll, daemon.MinPoll)
	}
	cfg.Poll, cfg.Ports = poll.String(), ports.Values
	specs, err := parsePorts(ports.Values)
	if err != nil {
		return err
	}
	log := logging.Logger(stderr)

	var phys [2]mdio.PHY
	closeAll := func() {
		for _, p := range phys {
			if p != nil {
				p.Close()
			}
		}
	}
	for i, spec := range specs {
		if spec == "" {
			continue
		}
		p, err := openBackend(spec, log)
		if err != nil {
			closeAll()
			return fmt.Errorf("port %s: %w", daemon.PortNames[i], err)
		}
		if h.wrap != nil {
			p = h.wrap(i, p)
		}
		phys[i] = p
	}

	var rn running
	var fe struct {
		sync.Mutex
		ipc *ipc.Server
	}
	d := ctl.NewRegistry(ctl.Options{
		Name:    "mdiod",
		Logger:  log,
		LogRing: logging.Ring(),
		Config:  func() any { return cfg },
		Status: func() map[string]any {
			st := map[string]any{}
			fe.Lock()
			if fe.ipc != nil {
				st["ipc-clients"] = fe.ipc.Active()
				st["ipc-events-dropped"] = fe.ipc.Dropped()
			}
			fe.Unlock()
			return st
		},
	})
	srv := ctl.NewServer(d)
	m, err := daemon.New(phys, daemon.Options{
		Poll:    *poll,
		Notify:  srv.Publish,
		Exit:    d.RequestShutdown,
		Netlink: true,
		Version: d.Version(),
		Logger:  log,
	})
	if err != nil {
		closeAll()
		return cli.Usage("%v", err)
	}
	defer m.Close()
	rn.mdio, rn.srv = m, srv
	d.MustRegister(m.Commands(d)...)
	fail := func(err error) error {
		srv.Close(context.Background())
		return &cli.ExitError{Code: 1, Err: err}
	}
	if cfg.IPCServer != "" {
		i, err := ipc.Serve(srv, ctl.SocketSpec{Addr: ipc.Addr(cfg.IPCServer), Mode: 0o660}, ipc.Options{})
		if err != nil {
			return fail(err)
		}
		fe.Lock()
		fe.ipc = i
		fe.Unlock()
		rn.ipc = i
	}
	if cfg.Kea != "" {
		if _, err := kea.Serve(srv, ctl.SocketSpec{Addr: cfg.Kea, Mode: 0o660}, kea.Options{}); err != nil {
			return fail(err)
		}
	}
	if cfg.Console != "" {
		if _, err := console.Serve(srv, ctl.SocketSpec{Addr: cfg.Console, Mode: 0o660}, console.Options{}); err != nil {
			return fail(err)
		}
	}
	if cfg.Hotplug != "" {
		if _, err := dgram.Serve(srv, ctl.SocketSpec{Addr: cfg.Hotplug, Mode: 0o660}, dgram.Options{}); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.Run(ctx)
	}()
	if cfg.IPCConnect != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			delay := h.reconnect
			if delay <= 0 {
				delay = defaultReconnect
			}
			connectLoop(ctx, srv, cfg.IPCConnect, delay, log)
		}()
	}
	ipcAddr := "" // disabled
	if cfg.IPCServer != "" {
		ipcAddr = ipc.Addr(cfg.IPCServer)
	}
	log.Info("mdiod serving", "ports", strings.Join(cfg.Ports, " "), "ipc", ipcAddr, "kea", cfg.Kea)
	if h.ready != nil {
		h.ready(rn)
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	cancel()
	wg.Wait()
	log.Info("mdiod stopped")
	return nil
}

// connectLoop serves --ipc-connect: it dials, serves the connection until
// the peer closes it, and dials again after delay, so that a restarted
// peer is reached again.
func connectLoop(ctx context.Context, srv *ctl.Server, path string, delay time.Duration, log *slog.Logger) {
	var failing bool
	for {
		err := ipc.Connect(ctx, srv, path, ipc.Options{})
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			log.Warn("ipc connect failed; retrying", "addr", path, "err", err, "every", delay)
			failing = true
		case err == nil:
			log.Info("ipc connection closed by peer; redialling", "addr", path)
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}
