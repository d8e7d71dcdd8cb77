// Command mctpd is tickbox's MCTP daemon: the MCTP core with its
// control responder and router, a libmctp-compatible demux for handler
// programs (PLDM, NVMe-MI tools) and a Kea control channel.
//
//	mctpd [-e EID] [-v] [-demux NAME]… [-tagged-demux NAME] [-kea PATH] [-state DIR] [-route EID[-EID]=BINDING]… BINDING [PARAMS] [+ BINDING [PARAMS]]…
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
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/cliflag"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
	"github.com/tickbox-fw/tickbox/services/mctpd/i2c"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
	"github.com/tickbox-fw/tickbox/services/mctpd/serial"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mctpd:", err)
		os.Exit(cli.Code(err, 1))
	}
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
	demux  *ctl.Demux
	tagged *ctl.Demux
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

// run parses args and serves until ctx ends. ready, when not nil, is
// called once everything is listening.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(running)) error {
	fs := flag.NewFlagSet("mctpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.IntVar(&cfg.EID, "e", 8, "local endpoint ID (8..254)")
	verbose := fs.Bool("v", false, "debug logging")
	demux := cliflag.NewList(ctl.DefaultDemuxNames...)
	fs.Var(demux, "demux", "demux abstract socket name, repeatable (default mctp-mux and mctp-demux)")
	tagged := fs.String("tagged-demux", "", "abstract socket name of the tag-aware demux (default: the first -demux name plus \"-tagged\", mctp-mux-tagged; empty disables)")
	fs.StringVar(&cfg.Kea, "kea", "/run/mctpd/control.sock", "Kea JSON control socket path (empty disables)")
	fs.StringVar(&cfg.State, "state", "/perm/mctpd", "state directory (the persistent UUID)")
	routes := cliflag.NewList()
	fs.Var(routes, "route", "static route EID[-EID]=BINDING (a binding name such as serial:/dev/ttyS1), repeatable")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &cli.ExitError{Code: 2, Err: err}
	}
	if cfg.EID < 0 || cfg.EID > 255 || !mctp.ValidEID(byte(cfg.EID)) {
		return cli.Usage("-e %d: not a valid local EID (0, 1-7 and 255 are reserved; use 8..254)", cfg.EID)
	}
	groups, err := splitBindings(fs.Args())
	if err != nil {
		return err
	}
	cfg.Demux, cfg.Routes, cfg.Bindings = demux.Values, routes.Values, groups
	// Deriving the default from the first plain name keeps two daemons
	// with their own -demux names from contending for one tagged name.
	cfg.TaggedDemux = *tagged
	taggedSet := false
	fs.Visit(func(f *flag.Flag) { taggedSet = taggedSet || f.Name == "tagged-demux" })
	if !taggedSet && len(cfg.Demux) > 0 {
		cfg.TaggedDemux = strings.TrimPrefix(cfg.Demux[0], "@") + "-tagged"
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

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
	router, err := mctp.New(mctp.Options{EID: byte(cfg.EID), Bindings: bs, Routes: rts, UUID: uuid, Log: log})
	if err != nil {
		return cli.Usage("%w", err)
	}

	var rn running
	rn.router = router
	d := ctl.NewRegistry(ctl.Options{
		Name:   "mctpd",
		Logger: log,
		Config: func() any { return cfg },
		Status: func() map[string]any {
			return map[string]any{"eid": router.EID(), "mctp": router.Stats()}
		},
	})
	srv := ctl.NewServer(d)
	dm, err := srv.ServeDemux(cfg.Demux, ctl.DemuxOptions{Router: router})
	if err != nil {
		srv.Close(context.Background())
		return &cli.ExitError{Code: 1, Err: err}
	}
	rn.demux = dm
	if cfg.TaggedDemux != "" {
		td, err := srv.ServeDemux([]string{cfg.TaggedDemux}, ctl.DemuxOptions{Router: router, Tagged: true, OnDisconnect: router.ClientGone})
		if err != nil {
			srv.Close(context.Background())
			return &cli.ExitError{Code: 1, Err: fmt.Errorf("tagged demux: %w", err)}
		}
		router.AttachTagged(td)
		rn.tagged = td
	}
	d.MustRegister(commands(router, dm, rn.tagged)...)
	if cfg.Kea != "" {
		k, err := kea.Serve(srv, ctl.SocketSpec{Addr: cfg.Kea, Mode: 0o660}, kea.Options{})
		if err != nil {
			srv.Close(context.Background())
			return &cli.ExitError{Code: 1, Err: err}
		}
		rn.kea = k
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(ctx, dm) }()
	log.Info("mctpd serving", "eid", cfg.EID, "bindings", names, "demux", cfg.Demux, "tagged_demux", cfg.TaggedDemux, "uuid", mctp.FormatUUID(uuid))
	if ready != nil {
		ready(rn)
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("shutdown", "err", err)
	}
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

// commands are mctpd's Kea commands. tagged is the tag-aware demux, nil
// when disabled.
func commands(r *mctp.Router, dm, tagged *ctl.Demux) []*ctl.Command {
	demuxes := []*ctl.Demux{dm}
	if tagged != nil {
		demuxes = append(demuxes, tagged)
	}
	return []*ctl.Command{
		{
			Name:    "endpoints-get",
			Comment: "local endpoint: EID, UUID, bindings (name, MTU, default route, forwarding) and client message types",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				types := []int{}
				for _, d := range demuxes {
					for t, n := range d.Stats().Clients {
						if n > 0 && !slices.Contains(types, int(t)) {
							types = append(types, int(t))
						}
					}
				}
				slices.Sort(types)
				return ctl.OK("", map[string]any{
					"eid":      r.EID(),
					"uuid":     mctp.FormatUUID(r.UUID()),
					"bindings": r.BindingInfo(),
					"bridge":   len(r.Bindings()) > 1,
					"types":    types,
				})
			},
		},
		{
			Name:    "routes-get",
			Comment: "routes by destination EID range, the default route last; the bindings and where each forwards unrouted packets",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				out := []map[string]any{}
				rts := r.Routes()
				for i, rt := range rts {
					// Routes ends with the default route.
					out = append(out, map[string]any{"first": rt.First, "last": rt.Last, "binding": rt.Binding, "default": i == len(rts)-1})
				}
				return ctl.OK("", map[string]any{"local": r.EID(), "routes": out, "bindings": r.BindingInfo()})
			},
		},
		{
			Name:    "stats-get",
			Comment: "packets and messages in and out, forwarded packets per binding pair, drops by reason, binding counters, outstanding tags, clients by type (demux-tagged: the tag-aware demux)",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				out := map[string]any{"mctp": r.Stats(), "demux": dm.Stats()}
				if tagged != nil {
					out["demux-tagged"] = tagged.Stats()
				}
				return ctl.OK("", out)
			},
		},
		{
			Name:    "eid-set",
			Comment: "set the local EID",
			Params:  []ctl.Param{{Name: "eid", Type: ctl.Int, Required: true, Ranged: true, Min: 8, Max: 254, Help: "new local EID"}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				e := byte(c.Args.Int("eid"))
				r.SetEID(e)
				return ctl.OK(fmt.Sprintf("local EID %d", e), map[string]any{"eid": e})
			},
		},
	}
}
