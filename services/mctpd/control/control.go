// Package control is mctpd's command table: the Kea commands that read
// and steer an [mctp.Router] and its demuxes, kept next to the router's
// API rather than in the daemon's start-up code.
//
//   - [Commands]: endpoints-get, routes-get, stats-get, eid-set.
//   - [Options]: the router and demuxes they read.
//
// The commands live here, not in mctp, so that the router's package
// need not know the command registry's types.
package control

import (
	"context"
	"fmt"
	"slices"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// Demux is what the commands read of a demux: its counters, clients by
// message type among them.
type Demux interface {
	Stats() demux.Stats
}

// Options are what the commands act on.
type Options struct {
	Router *mctp.Router
	// Demux is the libmctp-format demux.
	Demux Demux
	// Tagged is the tag-aware demux; leave it nil (not a nil pointer
	// in the interface) when it is disabled.
	Tagged Demux
}

// Commands returns mctpd's commands.
func Commands(o Options) []*ctl.Command {
	r, dm, tagged := o.Router, o.Demux, o.Tagged
	demuxes := []Demux{dm}
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
