package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// mctpdStats is the part of mctpd's stats-get the soak reads.
type mctpdStats struct {
	MCTP struct {
		Drops    map[string]uint64            `json:"drops"`
		Bindings map[string]map[string]uint64 `json:"bindings"`
	} `json:"mctp"`
	Demux struct {
		Overflows    uint64         `json:"overflows"`
		DropOverflow uint64         `json:"drop-overflow"`
		Clients      map[string]int `json:"clients"`
	} `json:"demux"`
}

func (s *setup) mctpdStats(name string) (mctpdStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	r, err := s.daemons[name].call(ctx, `{"command":"stats-get"}`)
	if err != nil {
		return mctpdStats{}, fmt.Errorf("%s: %w", name, err)
	}
	var st mctpdStats
	if err := json.Unmarshal(r.Arguments, &st); err != nil {
		return mctpdStats{}, fmt.Errorf("%s stats-get: %w", name, err)
	}
	return st, nil
}

// serialStats returns the counters of the daemon's one serial binding.
func (st mctpdStats) serial() map[string]uint64 {
	for name, b := range st.MCTP.Bindings {
		if strings.HasPrefix(name, "serial:") {
			return b
		}
	}
	return nil
}

// ptyFault is what the pty fault did and saw.
type ptyFault struct {
	cut            cutReport
	from, restored time.Time // the pull asked for; new ptys in place
	recovered      time.Time // the first probe answered after the restore
	probes         int
	before, after  map[string]map[string]uint64 // serial counters of mctpd and mctpd-peer
	err            error
}

// pullPTY takes the line between the two mctpds away in the middle of a
// frame from A to B, leaves it away for outage, puts new ptys behind
// the same names and probes with echo requests until one is answered.
func (s *setup) pullPTY(outage time.Duration) *ptyFault {
	f := &ptyFault{before: map[string]map[string]uint64{}, after: map[string]map[string]uint64{}}
	for _, n := range []string{"mctpd", "mctpd-peer"} {
		st, err := s.mctpdStats(n)
		if err != nil {
			f.err = err
			return f
		}
		f.before[n] = st.serial()
	}
	f.from = time.Now()
	f.cut, f.err = s.relay.pull(s.timeout)
	if f.err != nil {
		return f
	}
	time.Sleep(outage)
	if f.err = s.relay.restore(); f.err != nil {
		return f
	}
	f.restored = time.Now()
	// Probe on a connection of its own, each probe bounded, until one
	// echo comes back byte for byte.
	deadline := f.restored.Add(s.timeout)
	for {
		f.probes++
		if err := s.probeEcho(5 * time.Second); err == nil {
			f.recovered = time.Now()
			break
		} else if time.Now().After(deadline) {
			f.err = fmt.Errorf("MCTP traffic did not come back within %v of restoring the ptys (last probe: %w)", s.timeout, err)
			return f
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range []string{"mctpd", "mctpd-peer"} {
		st, err := s.mctpdStats(n)
		if err != nil {
			f.err = err
			return f
		}
		f.after[n] = st.serial()
	}
	for _, n := range []string{"mctpd", "mctpd-peer"} {
		if d := f.after[n]["reconnects"] - f.before[n]["reconnects"]; d < 1 {
			f.err = errors.Join(f.err, fmt.Errorf("%s counted no reconnect of its serial port", n))
		}
	}
	return f
}

func (s *setup) probeEcho(timeout time.Duration) error {
	c, err := demux.DialTagged(s.demuxA+"-tagged", echoType)
	if err != nil {
		return err
	}
	defer c.Close()
	body := []byte("soak probe after restoring the pty")
	c.SetDeadline(time.Now().Add(timeout))
	if err := c.SendTag(eidB, mctp.TagRequest, echoType, body); err != nil {
		return err
	}
	for {
		src, tag, _, got, err := c.RecvTag()
		if err != nil {
			return err
		}
		if tag == mctp.TagError {
			return fmt.Errorf("mctpd error frame from %d: %q", src, got)
		}
		if string(got) == string(body) {
			return nil
		}
	}
}

// stuckFault is what the stuck-client fault did and saw.
type stuckFault struct {
	sent          int           // messages sent towards the stuck client
	took          time.Duration // until mctpd disconnected it
	overflowsFrom uint64
	overflowsTo   uint64
	drained       int // messages still queued for it when it read again
	rssBeforeKiB  int
	rssPeakKiB    int
	logged        bool // mctpd logged the overflow
	err           error
}

// stuckClient connects a client of stuckType to mctpd A's demux that
// never reads, and sends it messages from mctpd B's side until mctpd A
// disconnects it for overflowing its queue (the demux's documented
// rule: each client has a queue of 512 messages or 4 MiB, and one that
// overflows is disconnected). Meanwhile the rest of the load goes on
// and must be served. Then the stuck client reads what was queued for
// it and must see the disconnect.
func (s *setup) stuckClient(ctx context.Context) *stuckFault {
	f := &stuckFault{}
	a := s.daemons["mctpd"]
	st, err := s.mctpdStats("mctpd")
	if err != nil {
		f.err = err
		return f
	}
	f.overflowsFrom = st.Demux.Overflows
	if f.rssBeforeKiB, f.err = rssKiB(a.pid); f.err != nil {
		return f
	}
	stuck, err := demux.Dial(s.demuxA, stuckType)
	if err != nil {
		f.err = err
		return f
	}
	defer stuck.Close()
	flood, err := demux.Dial(s.demuxB, stuckType)
	if err != nil {
		f.err = err
		return f
	}
	// Wait for the stuck client's registration to show.
	if err := waitCond(s.timeout, func() bool {
		st, err := s.mctpdStats("mctpd")
		return err == nil && st.Demux.Clients[fmt.Sprint(stuckType)] == 1
	}); err != nil {
		flood.Close()
		f.err = fmt.Errorf("stuck client's registration: %w", err)
		return f
	}
	start := time.Now()
	floodDone := make(chan struct{})
	stopFlood := make(chan struct{})
	go func() {
		defer close(floodDone)
		body := make([]byte, 1024)
		for {
			select {
			case <-stopFlood:
				return
			default:
			}
			if err := flood.Send(eidA, body); err != nil {
				return
			}
			f.sent++
		}
	}()
	// mctpd A's RSS is read every 10 ms until the stuck client has
	// read its end.
	stopRSS := make(chan struct{})
	rssDone := make(chan int)
	go func() {
		peak := f.rssBeforeKiB
		for {
			if rss, err := rssKiB(a.pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stopRSS:
				rssDone <- peak
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stopRSS); f.rssPeakKiB = <-rssDone }()
	// The overflow.
	deadline := start.Add(2 * s.timeout)
	for {
		st, err := s.mctpdStats("mctpd")
		if err == nil && st.Demux.Overflows > f.overflowsFrom {
			f.overflowsTo = st.Demux.Overflows
			f.took = time.Since(start)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.err = fmt.Errorf("mctpd did not disconnect the stuck client within %v (last stats: %+v, %v)", 2*s.timeout, st.Demux, err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopFlood)
	flood.Close() // unblocks a Send held back by the line
	<-floodDone
	if f.err != nil {
		return f
	}
	// The stuck client reads again: what was queued for it before the
	// disconnect (its socket's buffer), then the end.
	stuck.SetDeadline(time.Now().Add(s.timeout))
	for {
		_, _, _, err := stuck.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.err = fmt.Errorf("stuck client after %d queued messages: no disconnect: %w", f.drained, err)
			return f
		}
		f.drained++
	}
	if err := waitCond(s.timeout, func() bool {
		st, err := s.mctpdStats("mctpd")
		return err == nil && st.Demux.Clients[fmt.Sprint(stuckType)] == 0
	}); err != nil {
		f.err = fmt.Errorf("the stuck client is still registered: %w", err)
	}
	b, _ := os.ReadFile(a.logPath)
	f.logged = strings.Contains(string(b), "demux: client queue overflow; disconnecting it")
	if !f.logged {
		f.err = errors.Join(f.err, errors.New("mctpd did not log the stuck client's overflow"))
	}
	return f
}

func waitCond(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
