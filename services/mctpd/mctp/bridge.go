package mctp

// Bridging: with two or more bindings the router forwards packets
// between them, as libmctp's bridge mode does but with routes. A packet
// received for another endpoint (not the local EID, 0 or 0xFF) is
// forwarded as it is, packet by packet and without reassembly, on the
// binding the first matching route names; with exactly two bindings and
// no matching route it goes out of the other one. It is dropped, and
// counted by reason, when the route leads back to the binding it came in
// on (DropLoop), when nothing routes it (DropNoRoute), when its payload
// exceeds the out binding's MTU (DropMTU: bridges do not refragment) and
// when the out binding refuses it (DropForwardSend: Send never blocks,
// so a full queue is a drop, not a stall of the receive path).

import "github.com/tickbox-fw/tickbox/services/mctpd/binding"

// forwardDecision is where the bridge sends a packet for dest that came
// in on binding in: the index of the out binding in Options.Bindings,
// or -1 and the drop reason. It does not look at MTUs.
func (r *Router) forwardDecision(in string, dest byte) (out int, reason string) {
	i, ok := r.index[in]
	if !ok {
		return -1, DropNoRoute
	}
	if rt, ok := r.match(dest); ok {
		o := r.index[rt.Binding]
		if o == i {
			return -1, DropLoop
		}
		return o, ""
	}
	if len(r.list) == 2 {
		return 1 - i, ""
	}
	return -1, DropNoRoute
}

// forward sends pkt, received on in for another endpoint, out of the
// binding forwardDecision picks, unchanged.
func (r *Router) forward(in binding.Binding, h Header, pkt []byte) {
	o, reason := r.forwardDecision(in.Name(), h.Dest)
	if reason != "" {
		r.dropLog(reason, "in", in.Name(), "src", h.Src, "dest", h.Dest)
		return
	}
	out := r.list[o]
	if len(pkt)-HeaderLen > out.MTU() {
		r.dropLog(DropMTU, "in", in.Name(), "out", out.Name(), "src", h.Src, "dest", h.Dest, "payload", len(pkt)-HeaderLen, "mtu", out.MTU())
		return
	}
	if err := out.Send(pkt); err != nil {
		r.dropLog(DropForwardSend, "in", in.Name(), "out", out.Name(), "src", h.Src, "dest", h.Dest, "err", err)
		return
	}
	r.forwarded[r.index[in.Name()]*len(r.list)+o].Add(1)
}

// dropLog counts a forwarding drop. The first of each reason is a
// warning, because it usually means a missing route or a mismatched
// MTU; the rest go to the debug log, so that a stream of such packets
// cannot flood the log.
func (r *Router) dropLog(reason string, attrs ...any) {
	r.dropMu.Lock()
	r.drops[reason]++
	n := r.drops[reason]
	r.dropMu.Unlock()
	attrs = append(attrs, "reason", reason)
	if n == 1 {
		r.log.Warn("mctp: packet not forwarded (further drops of this reason are counted in stats-get)", attrs...)
		return
	}
	r.log.Debug("mctp: packet not forwarded", attrs...)
}

// ForwardStat counts the packets bridged from one binding to another.
type ForwardStat struct {
	In      string `json:"in"`
	Out     string `json:"out"`
	Packets uint64 `json:"packets"`
}
