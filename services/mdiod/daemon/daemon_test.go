package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/sim"
)

func newSim(t testing.TB, spec string) *sim.PHY {
	t.Helper()
	p, err := sim.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// regs is a register file for Decode tests.
type regs map[uint8]uint16

func (r regs) read(reg uint8) (uint16, error) { return r[reg], nil }

func TestDecode(t *testing.T) {
	id := regs{2: 0x0141, 3: 0x0dd1}
	with := func(r regs) regs {
		for k, v := range id {
			r[k] = v
		}
		return r
	}
	tests := []struct {
		name string
		r    regs
		msg  string
		role string
	}{
		{"no link", with(regs{0: 0x1140, 1: 0x7949}), "link down", ""},
		{"1000 master", with(regs{0: 0x1140, 1: 0x796d, 4: 0x01e1, 5: 0x41e1, 9: 0x0300, 10: 0x7c00, 15: 0x3000}), "link up 1000MBit (master)", "master"},
		{"1000 slave", with(regs{0: 0x1140, 1: 0x796d, 9: 0x0200, 10: 0x3800, 15: 0x3000}), "link up 1000MBit (slave)", "slave"},
		{"1000 not advertised: 100", with(regs{0: 0x1140, 1: 0x796d, 4: 0x01e1, 5: 0x41e1, 9: 0, 10: 0x0c00, 15: 0x3000}), "link up 100MBit", ""},
		{"100 half", with(regs{0: 0x1140, 1: 0x786d, 4: 0x00e1, 5: 0x40a1}), "link up 100MBit half-duplex", ""},
		{"10 full", with(regs{0: 0x1140, 1: 0x786d, 4: 0x0061, 5: 0x4061}), "link up 10MBit", ""},
		{"forced 100 full", with(regs{0: 0x2100, 1: 0x784d}), "link up 100MBit", ""},
		{"forced 10 half", with(regs{0: 0x0000, 1: 0x784d}), "link up 10MBit half-duplex", ""},
	}
	for _, tc := range tests {
		st, err := Decode(tc.r.read)
		if err != nil {
			t.Fatal(err)
		}
		if st.Message() != tc.msg || st.Role != tc.role || st.OUI() != "00:50:43" || st.Model() != 0x1d || st.Rev() != 1 {
			t.Errorf("%s: %q role %q oui %s model %d rev %d", tc.name, st.Message(), st.Role, st.OUI(), st.Model(), st.Rev())
		}
	}
}

// TestDecodeMissingRegisters decodes PHYs that do not answer every
// register BMSR promises. The registers are those of qemu's e1000 PHY
// model, which sets BMSR's extended status bit but fails ESTATUS reads.
func TestDecodeMissingRegisters(t *testing.T) {
	e1000 := regs{0: 0x1140, 1: 0x796d, 2: 0x0141, 3: 0x0c20, 4: 0x0de1, 5: 0x01e0, 9: 0x0e00, 10: 0x3c00}
	without := func(r regs, missing ...uint8) func(uint8) (uint16, error) {
		return func(reg uint8) (uint16, error) {
			for _, m := range missing {
				if reg == m {
					return 0, fmt.Errorf("SIOCGMIIREG reg %d: %w", reg, syscall.EIO)
				}
			}
			return r.read(reg)
		}
	}
	with := func(r regs, k uint8, v uint16) regs {
		out := regs{}
		for rk, rv := range r {
			out[rk] = rv
		}
		out[k] = v
		return out
	}
	tests := []struct {
		name    string
		read    func(uint8) (uint16, error)
		msg     string
		wantErr string
	}{
		{"no ESTATUS: 1000BASE-T registers", without(e1000, 15), "link up 1000MBit (slave)", ""},
		{"no ESTATUS, no 1000BASE-T registers", without(e1000, 15, 9, 10), "link up 100MBit", ""},
		{"no ESTATUS, no STAT1000", without(e1000, 15, 10), "link up 100MBit", ""},
		{"ESTATUS with 1000BASE-T, STAT1000 fails", without(with(e1000, 15, 0x3000), 10), "", "read register 10: SIOCGMIIREG reg 10: input/output error"},
		{"ESTATUS without 1000BASE-T", without(with(e1000, 15, 0), 9, 10), "link up 100MBit", ""},
		{"BMSR fails", without(e1000, 1), "", "read register 1: SIOCGMIIREG reg 1: input/output error"},
	}
	for _, tc := range tests {
		st, err := Decode(tc.read)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || st.Message() != tc.msg || st.ID != 0x01410c20 {
			t.Errorf("%s: %q id %#x, %v; want %q", tc.name, st.Message(), st.ID, err, tc.msg)
		}
	}
}

func TestEventLog(t *testing.T) {
	l := newEventLog(3)
	if got := l.list(0, 0); len(got) != 0 {
		t.Fatalf("empty log: %v", got)
	}
	for i := range 5 {
		l.add(Event{Msg: string(rune('a' + i))})
	}
	tests := []struct {
		since uint64
		limit int
		want  string
	}{
		{0, 0, "cde"}, {3, 0, "de"}, {0, 1, "e"}, {0, 2, "de"}, {5, 0, ""}, {99, 0, ""}, {1, 10, "cde"},
	}
	for _, tc := range tests {
		var b strings.Builder
		for _, e := range l.list(tc.since, tc.limit) {
			b.WriteString(e.Msg)
		}
		if b.String() != tc.want {
			t.Errorf("list(%d, %d) = %q, want %q", tc.since, tc.limit, b.String(), tc.want)
		}
	}
}

// notes collects Notify messages.
type notes struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notes) add(m string) {
	n.mu.Lock()
	n.msgs = append(n.msgs, m)
	n.mu.Unlock()
}

func (n *notes) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, "")
}

// TestWatcher checks the link events: up at start, a blip between two
// polls seen through the latch, a speed change, down, and a drop that a
// client's BMSR read consumed before the poll.
func TestWatcher(t *testing.T) {
	a := newSim(t, "88e1512,link=up,role=slave")
	var n notes
	m, err := New([2]mdio.PHY{a}, Options{Poll: time.Hour, Notify: n.add, Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	p := m.Port(0)
	want := "PHY A: link up 1000MBit (slave)\n"
	wait := func() {
		t.Helper()
		testutil.WaitFor(t, "events "+want, 5*time.Second, func() bool { return n.all() == want })
	}
	wait()
	a.SetLink(false, 0, false)
	a.SetLink(true, 1000, false)
	p.Kick()
	want += "PHY A: link down\nPHY A: link up 1000MBit (slave)\n"
	wait()
	a.SetLink(true, 100, false)
	p.Kick()
	want += "PHY A: link down\nPHY A: link up 100MBit\n"
	wait()
	// A client reads BMSR twice between the drop and the poll: the
	// latch is consumed, but the port remembers the drop.
	a.SetLink(false, 0, false)
	a.SetLink(true, 100, false)
	for range 2 {
		if _, err := p.Read(mdio.BMSR, NoPage); err != nil {
			t.Fatal(err)
		}
	}
	p.Kick()
	want += "PHY A: link down\nPHY A: link up 100MBit\n"
	wait()
	a.SetLink(false, 0, false)
	p.Kick()
	want += "PHY A: link down\n"
	wait()
	evs := m.Events(0, 0)
	if len(evs) != 8 || evs[7].Seq != 8 || evs[1].Link || !evs[2].Link || evs[2].Role != "slave" || evs[4].Speed != 100 {
		t.Errorf("events %+v", evs)
	} // links-get: the last state and the count of changes, per port.
	got, _ := json.Marshal(m.links())
	if want := `[{"changes":8,"duplex":"","link":false,"phy":1,"port":"A","speed":0}]`; string(got) != want {
		t.Errorf("links %s, want %s", got, want)
	}
	a.SetLink(true, 100, true)
	p.Kick()
	want += "PHY A: link up 100MBit\n"
	wait()
	got, _ = json.Marshal(m.links())
	if want := `[{"changes":9,"duplex":"full","link":true,"phy":1,"port":"A","speed":100}]`; string(got) != want {
		t.Errorf("links %s, want %s", got, want)
	}
}

// invoke runs a command through a registry, as every front end does.
func invoke(t testing.TB, reg *ctl.Registry, name string, named map[string]any) ctl.Result {
	t.Helper()
	return reg.Invoke(context.Background(), name, ctl.Input{Named: named}, nil)
}

func newRegistry(t testing.TB, phys [2]mdio.PHY, opts Options) (*MDIO, *ctl.Registry) {
	t.Helper()
	m, err := New(phys, opts)
	if err != nil {
		t.Fatal(err)
	}
	reg := ctl.NewRegistry(ctl.Options{})
	reg.MustRegister(m.Commands(reg)...)
	return m, reg
}

func TestCommands(t *testing.T) {
	_, reg := newRegistry(t, [2]mdio.PHY{nil, newSim(t, "generic100,link=up")}, Options{})
	tests := []struct {
		cmd   string
		named map[string]any
		code  ctl.Code
		want  string // JSON of Args, or the error text
	}{
		{"mdio_read", map[string]any{"phy": "2", "address": "1"}, ctl.Success, "30829"},
		{"mdio_read", map[string]any{"phy": "1", "address": "1"}, ctl.Error, "phy 1: port A is not configured (configured: B=2)"},
		{"mdio_write", map[string]any{"phy": "2", "address": "22", "value": "0x7"}, ctl.Success, "null"},
		{"mdio_read", map[string]any{"phy": "2", "address": "22"}, ctl.Success, "7"},
		{"mdio_read_c45", map[string]any{"phy": "2", "devad": "3", "reg": "2"}, ctl.Error, "PHY B (sim:generic100): sim: MMD 3 not present: no PHY answered"},
		{"hw-info-get", map[string]any{}, ctl.Success, `{"ports":[{"backend":"sim:generic100","phy":2,"phy_id":"0x20005c90","port":"B"}]}`},
		{"interfaceinsert", map[string]any{"interface": "eth0"}, ctl.Success, "null"},
		{"interfaceinsert", map[string]any{"interface": "0123456789abcdefg"}, ctl.Error, "interfaceinsert: parameter 'interface' is too long: 17 bytes, at most 15"},
		{"hw_info", nil, ctl.Success, "null"},
		// No watcher runs here: the link is down, as before the first poll.
		{"links-get", nil, ctl.Success, `{"events":0,"ports":[{"changes":0,"duplex":"","link":false,"phy":2,"port":"B","speed":0}]}`},
		{"mdio_write", map[string]any{"phy": "b", "address": "22", "value": "0", "page": "NOP"}, ctl.Success, "null"},
		{"inject", map[string]any{"phy": "AB", "data": "00"}, ctl.Error, "inject needs the Ethernet Debugger hardware; mdiod drives the board's own PHYs over MDIO"},
		{"help", map[string]any{"command": "phy_status"}, ctl.Success, "null"},
	}
	for _, tc := range tests {
		res := invoke(t, reg, tc.cmd, tc.named)
		got := res.Text
		if res.Code == ctl.Success {
			b, _ := json.Marshal(res.Args)
			got = string(b)
		}
		if res.Code != tc.code || got != tc.want {
			t.Errorf("%s %v: %d %s, want %d %s", tc.cmd, tc.named, res.Code, got, tc.code, tc.want)
		}
	}
	if _, ok := reg.Lookup("exit"); ok {
		t.Error("exit registered without Options.Exit")
	}
}

// failPHY fails the page restore, to check the error reports it.
type failPHY struct {
	mdio.PHY
	writes []string
}

func (f *failPHY) Write(reg uint8, v uint16) error {
	f.writes = append(f.writes, string(rune('0'+reg%10)))
	if reg == mdio.PageSel && v == 0 {
		return mdio.ErrNoResponse
	}
	return f.PHY.Write(reg, v)
}

func TestPageRestoreFailure(t *testing.T) {
	f := &failPHY{PHY: newSim(t, "")}
	_, reg := newRegistry(t, [2]mdio.PHY{f}, Options{})
	res := invoke(t, reg, "mdio_read", map[string]any{"phy": "1", "address": "1", "page": "2"})
	if res.Code != ctl.Error || !strings.Contains(res.Text, "restore page 0: no PHY answered") {
		t.Errorf("%+v", res)
	}
	if !bytes.Equal([]byte(strings.Join(f.writes, "")), []byte("22")) {
		t.Errorf("writes %v, want page select and restore", f.writes)
	}
}
