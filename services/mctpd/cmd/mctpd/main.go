// Command mctpd is tickbox's MCTP daemon: the MCTP core with its
// control responder and router, a libmctp-compatible demux for handler
// programs (PLDM, NVMe-MI tools) and a Kea control channel.
//
//	mctpd [-e EID] [-v] [-log-level LEVEL] [-demux NAME]… [-tagged-demux NAME] [-kea PATH] [-state DIR] [-route EID[-EID]=BINDING]… BINDING [PARAMS] [+ BINDING [PARAMS]]…
//
// Client messages to remote endpoints leave with TO=1 and tag 0, as
// libmctp's mctp-demux-daemon sends them, so existing clients produce
// identical wire bytes. Clients that want their own tags, as Linux
// AF_MCTP sockets have them, use the tagged demux instead (see
// mctp.Router and mctp.Tags). Several bindings, separated by a lone "+",
// make mctpd a bridge between them (see mctp.Router).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/cliflag"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
	"github.com/tickbox-fw/tickbox/services/mctpd/control"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/i2c"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
	"github.com/tickbox-fw/tickbox/services/mctpd/serial"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

func main() { cli.Main("mctpd", hooks{}.run) }

// hooks let tests see the running daemon.
type hooks struct {
	// ready is called once everything is listening.
	ready func(running)
}

type config struct {
	EID   int      `json:"eid"`
	Demux []string `json:"demux"`
	// TaggedDemux is the tag-aware demux's name; empty when disabled.
	TaggedDemux string   `json:"tagged-demux"`
	Kea         string   `json:"kea"`
	State       string   `json:"state"`
	Routes      []string `json:"routes"`
	// Bindings are the BINDING [PARAMS] groups of the command line.
	Bindings [][]string `json:"bindings"`
}

// running is what the daemon exposes to tests once it serves.
type running struct {
	router *mctp.Router
	demux  *demux.Server
	tagged *demux.Server
	kea    *kea.Server
}

// openBinding selects the binding named on the command line and parses
// its parameters. It is the one place new bindings are wired in.
func openBinding(name string, params []string, log *slog.Logger) (binding.Binding, error) {
	switch name {
	case "null":
		if len(params) > 0 {
			return nil, cli.Usage("binding null takes no parameters (got %q)", params)
		}
		return &mctp.Null{}, nil
	case "serial":
		fs := flag.NewFlagSet("serial", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		baud := fs.Int("baud", serial.DefaultBaud, "line rate")
		mtu := fs.Int("mtu", binding.BaselineMTU, "payload bytes per packet sent")
		if len(params) == 0 || strings.HasPrefix(params[0], "-") {
			return nil, cli.Usage("binding serial needs a DEVICE: serial DEVICE [-baud N] [-mtu N]")
		}
		if err := fs.Parse(params[1:]); err != nil || fs.NArg() > 0 || *baud <= 0 {
			return nil, cli.Usage("binding serial: want serial DEVICE [-baud N] [-mtu N] (got %q)", params)
		}
		b, err := serial.NewMTU(params[0], *baud, *mtu, log)
		if err != nil {
			return nil, cli.Usage("binding serial: -mtu %d: want %d (the baseline, the default) to %d; both ends of the line need the same -mtu", *mtu, binding.BaselineMTU, serial.MaxMTU)
		}
		return b, nil
	case "i2c":
		// i2c BUS ADDR [OWN]: ADDR is the peer's 7-bit address, OWN ours
		// (default 0x10), which DSP0237 puts in every block write.
		if len(params) < 2 || len(params) > 3 {
			return nil, cli.Usage("binding i2c: want i2c BUS ADDR [OWN] (got %q)", params)
		}
		peer, err := parseI2CAddr(params[1])
		if err != nil {
			return nil, cli.Usage("binding i2c: ADDR %q: %v", params[1], err)
		}
		own := uint16(0x10)
		if len(params) == 3 {
			if own, err = parseI2CAddr(params[2]); err != nil {
				return nil, cli.Usage("binding i2c: OWN %q: %v", params[2], err)
			}
		}
		if _, err := host.Init(); err != nil {
			return nil, fmt.Errorf("binding i2c: periph host: %w", err)
		}
		bus, err := i2creg.Open(params[0])
		if err != nil {
			return nil, fmt.Errorf("binding i2c: open bus %q: %w", params[0], err)
		}
		b, err := i2c.New(bus, own, peer, i2c.DefaultPoll, log)
		if err != nil {
			bus.Close()
			return nil, fmt.Errorf("binding i2c: %w", err)
		}
		return b, nil
	case "":
		return nil, cli.Usage("no binding given (null, serial DEVICE [-baud N] [-mtu N], i2c BUS ADDR [OWN])")
	default:
		return nil, cli.Usage("unknown binding %q (null, serial, i2c)", name)
	}
}

// splitBindings splits the arguments after the flags into BINDING
// [PARAMS] groups at each lone "+". No group may be empty: "a +", "+ a"
// and "a + + b" are refused rather than guessed at.
func splitBindings(args []string) ([][]string, error) {
	if len(args) == 0 {
		return [][]string{nil}, nil
	}
	var groups [][]string
	cur := []string{}
	for _, a := range args {
		if a != "+" {
			cur = append(cur, a)
			continue
		}
		if len(cur) == 0 {
			return nil, cli.Usage("empty binding before '+' (want BINDING [PARAMS] + BINDING [PARAMS])")
		}
		groups = append(groups, cur)
		cur = []string{}
	}
	if len(cur) == 0 {
		return nil, cli.Usage("empty binding after the last '+' (want BINDING [PARAMS] + BINDING [PARAMS])")
	}
	return append(groups, cur), nil
}

// parseI2CAddr parses a 7-bit I2C address, decimal or 0x hex.
func parseI2CAddr(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 0, 16)
	if err != nil || n < 0x08 || n > 0x77 {
		return 0, errors.New("want a 7-bit address 0x08..0x77")
	}
	return uint16(n), nil
}

// run parses args and serves until ctx ends (SIGINT, SIGTERM). It logs
// to stderr.
func (h hooks) run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("mctpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.IntVar(&cfg.EID, "e", 8, "local endpoint ID (8..254)")
	logging := cli.LogFlags(fs, "v")
	demuxNames := cliflag.NewList(demux.DefaultNames...)
	fs.Var(demuxNames, "demux", "demux abstract socket name, repeatable (default mctp-mux and mctp-demux)")
	tagged := fs.String("tagged-demux", "", "abstract socket name of the tag-aware demux (default: the first -demux name plus \"-tagged\", mctp-mux-tagged; empty disables)")
	fs.StringVar(&cfg.Kea, "kea", "/run/mctpd/control.sock", "Kea JSON control socket path (empty disables)")
	fs.StringVar(&cfg.State, "state", "/perm/mctpd", "state directory (the persistent UUID)")
	routes := cliflag.NewList()
	fs.Var(routes, "route", "static route EID[-EID]=BINDING (a binding name such as serial:/dev/ttyS1), repeatable")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args, -1); err != nil {
		return err
	}
	if cfg.EID < 0 || cfg.EID > 255 || !mctp.ValidEID(byte(cfg.EID)) {
		return cli.Usage("-e %d: not a valid local EID (0, 1-7 and 255 are reserved; use 8..254)", cfg.EID)
	}
	groups, err := splitBindings(fs.Args())
	if err != nil {
		return err
	}
	cfg.Demux, cfg.Routes, cfg.Bindings = demuxNames.Values, routes.Values, groups
	// Deriving the default from the first plain name keeps two daemons
	// with their own -demux names from contending for one tagged name.
	cfg.TaggedDemux = *tagged
	taggedSet := false
	fs.Visit(func(f *flag.Flag) { taggedSet = taggedSet || f.Name == "tagged-demux" })
	if !taggedSet && len(cfg.Demux) > 0 {
		cfg.TaggedDemux = strings.TrimPrefix(cfg.Demux[0], "@") + "-tagged"
	}
	log := logging.Logger(stderr)

	var rts []mctp.Route
	for _, s := range cfg.Routes {
		r, err := mctp.ParseRoute(s)
		if err != nil {
			return cli.Usage("-route: %w", err)
		}
		rts = append(rts, r)
	}
	var bs []binding.Binding
	var names []string
	for _, g := range cfg.Bindings {
		var name string
		if len(g) > 0 {
			name = g[0]
		}
		b, err := openBinding(name, g[min(1, len(g)):], log)
		if err != nil {
			return err
		}
		if slices.Contains(names, b.Name()) {
			return cli.Usage("binding %s given twice", b.Name())
		}
		bs = append(bs, b)
		names = append(names, b.Name())
	}
	uuid, err := mctp.LoadUUID(cfg.State)
	if err != nil {
		return &cli.ExitError{Code: 1, Err: err}
	}
	var rn running
	var router *mctp.Router
	d := ctl.NewRegistry(ctl.Options{
		Name:    "mctpd",
		Logger:  log,
		LogRing: logging.Ring(),
		Config:  func() any { return cfg },
		Status: func() map[string]any {
			return map[string]any{"eid": router.EID(), "mctp": router.Stats()}
		},
	})
	srv := ctl.NewServer(d)
	// The demuxes exist before the router, which delivers to them, and
	// serve once it does, with the router as their sender.
	inherit := srv.Inheritance()
	dm, err := demux.New(cfg.Demux, demux.Options{Log: log, Inheritance: inherit})
	if err != nil {
		return &cli.ExitError{Code: 1, Err: err}
	}
	var td *demux.Server
	if cfg.TaggedDemux != "" {
		// The hook runs only for clients, which connect once Serve
		// below has run, after router is set.
		td, err = demux.New([]string{cfg.TaggedDemux}, demux.Options{Log: log, Inheritance: inherit, Tagged: true,
			OnDisconnect: func(id mctp.ClientID) { router.ClientGone(id) }})
		if err != nil {
			return &cli.ExitError{Code: 1, Err: fmt.Errorf("tagged demux: %w", err)}
		}
	}
	opts := mctp.Options{EID: byte(cfg.EID), Bindings: bs, Routes: rts, UUID: uuid, Log: log, Clients: dm}
	if td != nil {
		opts.Tagged = td
	}
	router, err = mctp.New(opts)
	if err != nil {
		return cli.Usage("%w", err)
	}
	rn.router = router
	// closeDemuxes stops the demuxes, giving their clients the control
	// plane's 5 s.
	closeDemuxes := func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		dm.Close(cctx)
		if td != nil {
			td.Close(cctx)
		}
	}
	if err := dm.Serve(router); err != nil {
		srv.Close(context.Background())
		return &cli.ExitError{Code: 1, Err: err}
	}
	rn.demux = dm
	if td != nil {
		if err := td.Serve(demux.SenderFunc(router.SendTagged)); err != nil {
			closeDemuxes()
			srv.Close(context.Background())
			return &cli.ExitError{Code: 1, Err: fmt.Errorf("tagged demux: %w", err)}
		}
		rn.tagged = td
	}
	cmds := control.Options{Router: router, Demux: dm}
	if rn.tagged != nil {
		cmds.Tagged = rn.tagged
	}
	d.MustRegister(control.Commands(cmds)...)
	if cfg.Kea != "" {
		k, err := kea.Serve(srv, ctl.SocketSpec{Addr: cfg.Kea, Mode: 0o660}, kea.Options{})
		if err != nil {
			closeDemuxes()
			srv.Close(context.Background())
			return &cli.ExitError{Code: 1, Err: err}
		}
		rn.kea = k
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(ctx) }()
	log.Info("mctpd serving", "eid", cfg.EID, "bindings", names, "demux", cfg.Demux, "tagged_demux", cfg.TaggedDemux, "uuid", mctp.FormatUUID(uuid))
	if h.ready != nil {
		h.ready(rn)
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	closeDemuxes()
	cancel()
	if err := <-routerDone; err != nil {
		log.Error("bindings stopped", "err", err)
	}
	log.Info("mctpd stopped")
	return nil
}

const usage = `usage: mctpd [flags] BINDING [PARAMS] [+ BINDING [PARAMS]]...
bindings:
  null                         local loopback only
  serial DEVICE [-baud N] [-mtu N]
                               DSP0253 over a tty; named serial:DEVICE. -mtu: payload
                               bytes per packet sent, 64 (baseline, libmctp and Linux
                               compatible; the default) to 251. Set the same -mtu on
                               both ends: a peer at 64 cannot take bigger packets. The
                               receiver accepts packets up to 251 whatever -mtu says.
  i2c BUS ADDR [OWN]           DSP0237 SMBus to peer ADDR; named i2c:I2C1:0x1d for bus 1
Several bindings, separated by a lone '+', make mctpd a bridge: a packet for
another endpoint is forwarded unchanged on the binding a -route names (with
two bindings and no route, on the other one). Client messages without a
route take the first binding. -route refers to bindings by name.
example: mctpd -e 10 -route 9=serial:/dev/ttyS2 serial /dev/ttyS1 -baud 115200 + serial /dev/ttyS2
Tag-aware clients use the tagged demux: frames [EID][TAG][TYPE][BODY] both
ways, TAG = TO<<3 | tag; a client sends 0x88 for a request with a tag mctpd
allocates (the response comes to it alone) or 0x00-0x07 for a response with
that tag, and gets [EID][0x40][TYPE][CODE][TEXT] when mctpd cannot send.
flags:
`
