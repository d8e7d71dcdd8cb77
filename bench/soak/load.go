package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// outcome of one request.
type outcome int

const (
	okReply   outcome = iota
	malformed         // a reply that does not parse or does not match
	lost              // no reply within the timeout, or the request could not be made
)

// failure is one request that went wrong, kept with its times so that
// MCTP failures can be set against the pty fault's window.
type failure struct {
	kind       string
	how        outcome
	start, end time.Time
	err        string
}

// tally counts every request by kind and outcome.
type tally struct {
	mu       sync.Mutex
	ok       map[string]int
	failures []failure
}

func newTally() *tally { return &tally{ok: map[string]int{}} }

func (t *tally) add(kind string, how outcome, start time.Time, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if how == okReply {
		t.ok[kind]++
		return
	}
	t.failures = append(t.failures, failure{kind: kind, how: how, start: start, end: time.Now(), err: err.Error()})
}

// randInt returns a uniform int in [0, n).
func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

// keaCheck is a Kea command and what its answer must hold.
type keaCheck struct {
	req   string
	check func(d *daemon, r keaReply) error
}

func checkStatus(d *daemon, r keaReply) error {
	var st struct {
		Pid        int
		Goroutines *int
	}
	if err := json.Unmarshal(r.Arguments, &st); err != nil {
		return err
	}
	if st.Pid != d.pid || st.Goroutines == nil || *st.Goroutines < 1 {
		return fmt.Errorf("status-get pid %d goroutines %v, want pid %d", st.Pid, st.Goroutines, d.pid)
	}
	return nil
}

func checkVersion(d *daemon, r keaReply) error {
	if r.Text != d.version || r.Text == "" {
		return fmt.Errorf("version %q, was %q", r.Text, d.version)
	}
	return nil
}

// commandsFor returns the commands the load sends to a daemon: the
// common ones and one of its own, each with its check.
func commandsFor(name string, s *setup) []keaCheck {
	cs := []keaCheck{
		{`{"command":"status-get"}`, checkStatus},
		{`{"command":"version-get"}`, checkVersion},
	}
	switch name {
	case "ptpd":
		cs = append(cs, keaCheck{`{"command":"instances-get"}`, func(_ *daemon, r keaReply) error {
			var a struct{ Instances []struct{ Name string } }
			if err := json.Unmarshal(r.Arguments, &a); err != nil {
				return err
			}
			for _, in := range a.Instances {
				if in.Name == s.ptpInstance {
					return nil
				}
			}
			return fmt.Errorf("no instance %s in %s", s.ptpInstance, r.Arguments)
		}})
	case "mctpd", "mctpd-peer":
		eid := eidA
		if name == "mctpd-peer" {
			eid = eidB
		}
		cs = append(cs, keaCheck{`{"command":"endpoints-get"}`, func(_ *daemon, r keaReply) error {
			var a struct{ EID *int }
			if err := json.Unmarshal(r.Arguments, &a); err != nil {
				return err
			}
			if a.EID == nil || *a.EID != eid {
				return fmt.Errorf("endpoints-get eid %v, want %d", a.EID, eid)
			}
			return nil
		}})
	case "mdiod":
		cs = append(cs, keaCheck{`{"command":"mdio_read","arguments":{"phy":1,"address":2}}`, func(_ *daemon, r keaReply) error {
			var v int
			if err := json.Unmarshal(r.Arguments, &v); err != nil {
				return err
			}
			if v != s.phyID1 {
				return fmt.Errorf("mdio_read 1 2 = %#x, want %#x", v, s.phyID1)
			}
			return nil
		}})
	case "appliance":
		cs = append(cs, keaCheck{`{"command":"interfaces-get"}`, func(_ *daemon, r keaReply) error {
			var a struct{ Interfaces []struct{ Name string } }
			if err := json.Unmarshal(r.Arguments, &a); err != nil {
				return err
			}
			for _, in := range a.Interfaces {
				if in.Name == s.ptpIface {
					return nil
				}
			}
			return fmt.Errorf("no interface %s in %s", s.ptpIface, r.Arguments)
		}})
	}
	return cs
}

// keaWorker sends Kea commands to random daemons, directly or through
// the hub (the request then names the service and the answer is a list
// of one), until ctx ends.
func keaWorker(ctx context.Context, s *setup, viaHub bool) {
	kind := "kea direct"
	if viaHub {
		kind = "kea via hub"
	}
	names := s.keaNames(viaHub)
	for ctx.Err() == nil {
		name := names[randInt(len(names))]
		d := s.daemons[name]
		cs := commandsFor(name, s)
		c := cs[randInt(len(cs))]
		start := time.Now()
		sock, req := d.kea, c.req
		if viaHub {
			sock = s.daemons["hub"].kea
			req = strings.TrimSuffix(req, "}") + fmt.Sprintf(`,"service":[%q]}`, name)
		}
		cctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		b, err := kea.Call(cctx, sock, []byte(req))
		cancel()
		if err != nil {
			s.tally.add(kind, lost, start, fmt.Errorf("%s %s: %w", name, req, err))
		} else if err := checkKea(d, b, viaHub, c.check); err != nil {
			s.tally.add(kind, malformed, start, fmt.Errorf("%s %s: %w", name, req, err))
		} else {
			s.tally.add(kind, okReply, start, nil)
		}
		pace(ctx, s.pace)
	}
}

func checkKea(d *daemon, b []byte, viaHub bool, check func(*daemon, keaReply) error) error {
	var r keaReply
	if viaHub {
		var list []keaReply
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("%w: %s", err, b)
		}
		if len(list) != 1 {
			return fmt.Errorf("%d answers: %s", len(list), b)
		}
		r = list[0]
	} else if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%w: %s", err, b)
	}
	if r.Result == nil || *r.Result != 0 {
		return fmt.Errorf("not result 0: %s", b)
	}
	return check(d, r)
}

func pace(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ipcWorker reads PHY registers from mdiod over the nose IPC in the
// JSON form, on one connection at a time, each used for a few hundred
// requests, and checks every reply's id, value and success.
func ipcWorker(ctx context.Context, s *setup) {
	const kind, perConn = "ipc (mdiod)", 300
	id := 0
	for ctx.Err() == nil {
		c, err := ipc.Dial(s.mdiodIPC)
		if err != nil {
			s.tally.add(kind, lost, time.Now(), err)
			pace(ctx, time.Second)
			continue
		}
		for i := 0; i < perConn && ctx.Err() == nil; i++ {
			id++
			addr, want := 2, s.phyID1
			if id%2 == 0 {
				addr, want = 3, s.phyID2
			}
			start := time.Now()
			c.SetDeadline(start.Add(s.timeout))
			line, err := c.Do(fmt.Sprintf(`{"command":"mdio_read","phy":1,"address":%d,"id":%d}`, addr, id), nil)
			if err != nil {
				s.tally.add(kind, lost, start, err)
				break
			}
			var r struct {
				ID      *int
				Result  *int
				Success *bool
			}
			if err := json.Unmarshal(line, &r); err != nil || r.ID == nil || *r.ID != id || r.Result == nil || *r.Result != want || r.Success == nil || !*r.Success {
				s.tally.add(kind, malformed, start, fmt.Errorf("id %d mdio_read 1 %d: reply %s (want result %d)", id, addr, line, want))
				break
			}
			s.tally.add(kind, okReply, start, nil)
			pace(ctx, s.pace)
		}
		c.Close()
	}
}

// consoleWorker runs one-shot console commands ("! cmd": the command
// runs and the connection half-closes) on mdiod's console and on the
// hub's, which forwards to mdiod and ptpd, and compares the whole
// output.
func consoleWorker(ctx context.Context, s *setup) {
	const kind = "console"
	type job struct{ sock, line, want string }
	jobs := []job{
		{s.mdiodConsole, "! mdio_read 1 2", fmt.Sprintf("result: value=0x%04x\n", s.phyID1)},
		{s.hubConsole, "! mdiod mdio_read 1 3", fmt.Sprintf("result: value=0x%04x\n", s.phyID2)},
		{s.hubConsole, "! ptpd version-get", s.daemons["ptpd"].version + "\n"},
	}
	for i := 0; ctx.Err() == nil; i++ {
		j := jobs[i%len(jobs)]
		start := time.Now()
		out, err := consoleOnce(j.sock, j.line, s.timeout)
		switch {
		case err != nil:
			s.tally.add(kind, lost, start, fmt.Errorf("%s on %s: %w", j.line, j.sock, err))
		case out != j.want:
			s.tally.add(kind, malformed, start, fmt.Errorf("%s on %s: %q, want %q", j.line, j.sock, out, j.want))
		default:
			s.tally.add(kind, okReply, start, nil)
		}
		pace(ctx, s.pace)
	}
}

func consoleOnce(sock, line string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), err
	}
	return string(b), nil
}

// The MCTP message type of the echo traffic and of the stuck client's
// (vendor defined, PCI and IANA: nothing else registers for them).
const (
	echoType  = 0x7e
	stuckType = 0x7f
	eidA      = 8
	eidB      = 9
)

// echoResponder answers every request of echoType mctpd B's tagged demux
// hands it with the same body and the request's tag, until ctx ends.
// Anything else it receives is malformed.
func echoResponder(ctx context.Context, s *setup, c *demux.Conn) {
	const kind = "mctp echo responder"
	go func() { <-ctx.Done(); c.Close() }()
	for {
		src, tag, typ, body, err := c.RecvTag()
		if err != nil {
			if ctx.Err() == nil {
				s.tally.add(kind, lost, time.Now(), fmt.Errorf("recv: %w", err))
			}
			return
		}
		if src != eidA || typ != echoType || tag&mctp.TagOwner == 0 {
			s.tally.add(kind, malformed, time.Now(), fmt.Errorf("got src %d tag %#x type %#x", src, tag, typ))
			continue
		}
		if err := c.SendTag(eidA, tag&mctp.TagValue, echoType, body); err != nil {
			if ctx.Err() == nil {
				s.tally.add(kind, lost, time.Now(), fmt.Errorf("send: %w", err))
			}
			return
		}
	}
}

// echoRequester sends requests of echoType from mctpd A to B with a
// sequence number and random payload, and waits for each reply, which
// must carry the same bytes. A reply to an earlier request, late after
// the timeout, is counted and skipped.
func echoRequester(ctx context.Context, s *setup, id byte) {
	const kind = "mctp echo"
	var seq uint64
	for ctx.Err() == nil {
		c, err := demux.DialTagged(s.demuxA+"-tagged", echoType)
		if err != nil {
			s.tally.add(kind, lost, time.Now(), err)
			pace(ctx, time.Second)
			continue
		}
		for ctx.Err() == nil {
			seq++
			body := make([]byte, 9+randInt(s.maxPayload))
			binary.BigEndian.PutUint64(body, seq)
			body[8] = id
			rand.Read(body[9:])
			start := time.Now()
			c.SetDeadline(start.Add(s.timeout))
			if err := c.SendTag(eidB, mctp.TagRequest, echoType, body); err != nil {
				s.tally.add(kind, lost, start, fmt.Errorf("send seq %d: %w", seq, err))
				break
			}
			how, err := awaitEcho(c, seq, body, s)
			s.tally.add(kind, how, start, err)
			if how == lost && err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				break // the connection failed: dial again
			}
			pace(ctx, s.pace)
		}
		c.Close()
	}
}

func awaitEcho(c *demux.Conn, seq uint64, body []byte, s *setup) (outcome, error) {
	for {
		src, tag, typ, got, err := c.RecvTag()
		if err != nil {
			return lost, fmt.Errorf("seq %d (%d bytes): %w", seq, len(body), err)
		}
		if tag == mctp.TagError {
			return lost, fmt.Errorf("seq %d: mctpd error frame from %d: % x", seq, src, got)
		}
		if src != eidB || typ != echoType || tag&mctp.TagOwner != 0 || len(got) < 9 {
			return malformed, fmt.Errorf("seq %d: reply src %d tag %#x type %#x len %d", seq, src, tag, typ, len(got))
		}
		if n := binary.BigEndian.Uint64(got); n < seq && got[8] == body[8] {
			s.late.Add(1)
			continue
		}
		if !bytes.Equal(got, body) {
			return malformed, fmt.Errorf("seq %d: reply of %d bytes differs from the %d sent", seq, len(got), len(body))
		}
		return okReply, nil
	}
}

// summary of the tally, with MCTP echo failures in the pty fault's
// window set apart.
type summary struct {
	kinds                     []string
	ok, malformed, lost       map[string]int
	faultMalformed, faultLost int
	examples                  []string
	faultExamples             []string
}

func (t *tally) summarize(faultFrom, faultTo time.Time) summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := summary{ok: map[string]int{}, malformed: map[string]int{}, lost: map[string]int{}}
	seen := map[string]bool{}
	for k, n := range t.ok {
		s.ok[k] = n
		seen[k] = true
	}
	for _, f := range t.failures {
		seen[f.kind] = true
		inFault := strings.HasPrefix(f.kind, "mctp echo") && !faultFrom.IsZero() &&
			f.start.Before(faultTo) && f.end.After(faultFrom)
		line := fmt.Sprintf("%s %s, sent %s: %s", f.kind, map[outcome]string{malformed: "malformed", lost: "lost"}[f.how], f.start.Format("15:04:05.000"), f.err)
		if inFault {
			if f.how == malformed {
				s.faultMalformed++
			} else {
				s.faultLost++
			}
			if len(s.faultExamples) < 5 {
				s.faultExamples = append(s.faultExamples, line)
			}
			continue
		}
		if f.how == malformed {
			s.malformed[f.kind]++
		} else {
			s.lost[f.kind]++
		}
		if len(s.examples) < 10 {
			s.examples = append(s.examples, line)
		}
	}
	for k := range seen {
		s.kinds = append(s.kinds, k)
	}
	sort.Strings(s.kinds)
	return s
}
