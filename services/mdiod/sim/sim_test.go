package sim

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// clock is a manual clock for tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1000, 0)} }
func open(t *testing.T, spec string, c *clock) *PHY {
	t.Helper()
	cfg, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, c.now)
}

func rd(t *testing.T, p *PHY, reg uint8) uint16 {
	t.Helper()
	v, err := p.Read(reg)
	if err != nil {
		t.Fatalf("read %d: %v", reg, err)
	}
	return v
}

func wr(t *testing.T, p *PHY, reg uint8, v uint16) {
	t.Helper()
	if err := p.Write(reg, v); err != nil {
		t.Fatalf("write %d: %v", reg, err)
	}
}

func TestResetValues(t *testing.T) {
	tests := []struct {
		spec string
		want map[uint8]uint16
	}{
		{"", map[uint8]uint16{0: 0x1140, 1: 0x7949, 2: 0x0141, 3: 0x0dd1, 4: 0x01e1, 5: 0, 9: 0x0300, 10: 0, 15: 0x3000, 16: 0x3070, 22: 0}},
		{"88e1512,link=up", map[uint8]uint16{1: 0x796d, 5: 0x41e1, 10: 0x7c00, 17: 0xac00}},
		{"88e1512,link=up,role=slave", map[uint8]uint16{1: 0x796d, 10: 0x3c00}},
		{"88e1512,link=up,speed=100", map[uint8]uint16{1: 0x796d, 5: 0x41e1, 10: 0, 17: 0x6c00}},
		{"88e1512,link=up,speed=10", map[uint8]uint16{1: 0x796d, 5: 0x4061, 17: 0x2c00}},
		{"generic100", map[uint8]uint16{0: 0x3100, 1: 0x7849, 2: 0x2000, 3: 0x5c90, 9: 0, 10: 0, 22: 0x0100}},
		{"generic100,link=up", map[uint8]uint16{1: 0x786d, 5: 0x41e1}},
	}
	for _, tc := range tests {
		p := open(t, tc.spec, newClock())
		for reg, want := range tc.want {
			if got := rd(t, p, reg); got != want {
				t.Errorf("%q: reg %d = %#04x, want %#04x", tc.spec, reg, got, want)
			}
		}
	}
}

func TestLinkLatch(t *testing.T) {
	c := newClock()
	p := open(t, "", c)
	steps := []struct {
		do   func()
		want []uint16 // successive BMSR reads
	}{
		{nil, []uint16{0x7949, 0x7949}},
		{func() { p.SetState(State{AN: true}) }, []uint16{0x7969}},
		{func() { p.SetLink(true, 1000, true) }, []uint16{0x796d, 0x796d}},
		// Down and up again between two reads: the first read shows the
		// latched-low link bit, the second the live state.
		{func() { p.SetLink(false, 0, false); p.SetLink(true, 1000, true) }, []uint16{0x7969, 0x796d}},
		{func() { p.SetLink(false, 0, false) }, []uint16{0x7949, 0x7949}},
	}
	for i, s := range steps {
		if s.do != nil {
			s.do()
		}
		for j, want := range s.want {
			if got := rd(t, p, mdio.BMSR); got != want {
				t.Errorf("step %d read %d: BMSR %#04x, want %#04x", i, j, got, want)
			}
		}
	}
}

func TestPages(t *testing.T) {
	p := open(t, "", newClock())
	wr(t, p, 22, 1)
	if got := rd(t, p, 22); got != 1 {
		t.Errorf("page register %d, want 1", got)
	}
	if got := rd(t, p, 1); got != 0x0149 {
		t.Errorf("page 1 reg 1 %#04x, want fiber BMSR 0x0149", got)
	}
	wr(t, p, 16, 0x1234)
	wr(t, p, 22, 3)
	if got := rd(t, p, 16); got != 0x101e {
		t.Errorf("page 3 reg 16 %#04x, want 0x101e", got)
	}
	wr(t, p, 22, 200) // absent page: reads 0, writes ignored
	wr(t, p, 16, 0xffff)
	if got := rd(t, p, 16); got != 0 {
		t.Errorf("absent page reg 16 %#04x, want 0", got)
	}
	wr(t, p, 22, 1)
	if got := rd(t, p, 16); got != 0x1234 {
		t.Errorf("page 1 reg 16 %#04x after write, want 0x1234", got)
	}
	wr(t, p, 22, 0)
	if got := rd(t, p, 16); got != 0x3070 {
		t.Errorf("page 0 reg 16 %#04x, want 0x3070", got)
	}
	if got := rd(t, p, 1); got != 0x7949 {
		t.Errorf("page 0 BMSR %#04x", got)
	}
	// Without paging, register 22 is an ordinary register.
	g := open(t, "generic100", newClock())
	wr(t, g, 22, 5)
	if got, bmsr := rd(t, g, 22), rd(t, g, 1); got != 5 || bmsr != 0x7849 {
		t.Errorf("generic100: reg 22 %#x, BMSR %#04x", got, bmsr)
	}
}

func TestBMCR(t *testing.T) {
	c := newClock()
	p := open(t, "88e1512,link=up,an=1s", c)
	rd(t, p, 1)
	// AN restart: self-clearing, link drops (latched) and returns after
	// the AN time.
	wr(t, p, 0, 0x1340)
	if got := rd(t, p, 0); got != 0x1140 {
		t.Errorf("BMCR after AN restart %#04x, want 0x1140", got)
	}
	if got := rd(t, p, 1); got != 0x7949 {
		t.Errorf("BMSR during AN %#04x", got)
	}
	c.add(999 * time.Millisecond)
	if got := rd(t, p, 1); got != 0x7949 {
		t.Errorf("BMSR before AN time %#04x", got)
	}
	c.add(time.Millisecond)
	if got := rd(t, p, 1); got != 0x796d {
		t.Errorf("BMSR after AN time %#04x", got)
	}
	// Advertise only 10 full: renegotiates to 10 Mbit/s.
	wr(t, p, 4, 0x0041)
	wr(t, p, 9, 0)
	wr(t, p, 0, 0x1340)
	c.add(time.Second)
	if got := rd(t, p, 17); got != 0x2c00 {
		t.Errorf("copper status %#04x, want 10 full 0x2c00", got)
	}
	// Reset: self-clearing, registers back to their defaults.
	wr(t, p, 0, 0x8000)
	if got, anar := rd(t, p, 0), rd(t, p, 4); got != 0x1140 || anar != 0x01e1 {
		t.Errorf("after reset BMCR %#04x ANAR %#04x", got, anar)
	}
	c.add(time.Second)
	rd(t, p, 1)
	if got := rd(t, p, 17); got != 0xac00 {
		t.Errorf("copper status after reset %#04x, want 1000 full", got)
	}
	// Forced 100 full with AN off.
	wr(t, p, 0, 0x2100)
	c.add(time.Second)
	rd(t, p, 1)
	if got, lp := rd(t, p, 17), rd(t, p, 5); got != 0x6c00 || lp != 0 {
		t.Errorf("forced: copper status %#04x ANLPAR %#04x", got, lp)
	}
	if got := rd(t, p, 1); got != 0x794d {
		t.Errorf("forced BMSR %#04x, want link without AN complete", got)
	}
	// Power down: no link.
	wr(t, p, 0, 0x0800)
	if got := rd(t, p, 1) & mdio.BMSRLinkUp; got != 0 {
		t.Error("link up while powered down")
	}
	// Read-only registers ignore writes.
	wr(t, p, 2, 0)
	wr(t, p, 1, 0)
	if got := rd(t, p, 2); got != 0x0141 {
		t.Errorf("PHYID1 written: %#04x", got)
	}
}

func TestScript(t *testing.T) {
	c := newClock()
	p := open(t, "88e1512,script=up@2s;down@5s;up/100/slave@6s,cycle=8s", c)
	checks := []struct {
		at   time.Duration
		want uint16 // copper status after two BMSR reads
	}{
		{0, 0},
		{2500 * time.Millisecond, 0xac00},
		{5500 * time.Millisecond, 0},
		{6 * time.Second, 0x6c00},
		{9 * time.Second, 0x6c00}, // the last state holds until the next cycle's first step
		{10500 * time.Millisecond, 0xac00},
		{13500 * time.Millisecond, 0},
	}
	start := c.t
	for _, ch := range checks {
		c.t = start.Add(ch.at)
		rd(t, p, 1)
		rd(t, p, 1)
		got := rd(t, p, 17)
		if got != ch.want {
			t.Errorf("at %v: copper status %#04x, want %#04x", ch.at, got, ch.want)
		}
	}
	// A blip between two reads latches.
	c2 := newClock()
	q := open(t, "88e1512,link=up,script=down@1s;up@1100ms", c2)
	rd(t, q, 1)
	c2.add(2 * time.Second)
	if a, b := rd(t, q, 1), rd(t, q, 1); a != 0x7969 || b != 0x796d {
		t.Errorf("blip: BMSR %#04x then %#04x, want 0x7969 then 0x796d", a, b)
	}
}

func TestC45(t *testing.T) {
	p := open(t, "88e1512,link=up", newClock())
	tests := []struct {
		devad uint8
		reg   uint16
		want  uint16
		err   error
	}{
		{3, 2, 0x0141, nil},
		{3, 3, 0x0dd1, nil},
		{3, 1, 0x0004, nil},
		{3, 20, 0x0006, nil},
		{7, 60, 0x0006, nil},
		{7, 61, 0x0006, nil},
		{7, 999, 0, nil},
		{1, 2, 0xffff, mdio.ErrNoResponse},
		{30, 0, 0xffff, mdio.ErrNoResponse},
	}
	for _, tc := range tests {
		got, err := p.ReadC45(tc.devad, tc.reg)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("MMD %d reg %d = %#04x, %v; want %#04x, %v", tc.devad, tc.reg, got, err, tc.want, tc.err)
		}
	}
	if err := p.WriteC45(7, 60, 0x0002); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.ReadC45(7, 60); got != 0x0002 {
		t.Errorf("EEE advertisement after write %#04x", got)
	}
	if err := p.WriteC45(3, 2, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.ReadC45(3, 2); got != 0x0141 {
		t.Errorf("ID written: %#04x", got)
	}
	if _, err := p.ReadC45(32, 0); err == nil {
		t.Error("devad 32 accepted")
	}
	if _, err := p.Read(32); err == nil {
		t.Error("register 32 accepted")
	}
	g := open(t, "generic100", newClock())
	if _, err := g.ReadC45(3, 2); !errors.Is(err, mdio.ErrNoResponse) {
		t.Errorf("generic100 MMD 3: %v", err)
	}
	p.Close()
	if _, err := p.Read(1); err == nil {
		t.Error("read after close succeeded")
	}
}

func TestParseSpecErrors(t *testing.T) {
	bad := []struct{ spec, want string }{
		{"nosuch", "unknown model"},
		{"88e1512,link=sideways", "want up or down"},
		{"88e1512,speed=2500", "want 10, 100 or 1000"},
		{"88e1512,role=boss", "want master or slave"},
		{"88e1512,script=up", "want STATE@OFFSET"},
		{"88e1512,script=up@2s;down@1s", "must increase"},
		{"88e1512,script=up@x", "offset"},
		{"88e1512,script=flap@1s", "want down, an or up"},
		{"88e1512,script=up/100/100@1s", "speed given twice"},
		{"88e1512,script=down/100@1s", "takes no speed"},
		{"88e1512,script=", "empty script"},
		{"88e1512,cycle=5s", "cycle needs a script"},
		{"88e1512,script=up@5s,cycle=5s", "longer than the last"},
		{"88e1512,cycle=1ms,script=up@0s", "cycle"},
		{"88e1512,bogus=1", "unknown option"},
		{"88e1512,link", "KEY=VALUE"},
		{"88e1512,link=up,link=down", "twice"},
		{"88e1512,an=2m", "an="},
		{"88e1512,script=" + manySteps(300), "steps"},
	}
	for _, tc := range bad {
		_, err := ParseSpec(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSpec(%q) = %v, want error containing %q", tc.spec, err, tc.want)
		}
	}
	cfg, err := ParseSpec("generic100,link=up,role=slave,an=0s,script=down@1s;an@2s;up/10@3s,cycle=4s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Name != "generic100" || !cfg.Initial.Up || cfg.Initial.Master || cfg.Initial.Speed != 100 || cfg.ANTime != 0 || cfg.Cycle != 4*time.Second {
		t.Errorf("config %+v", cfg)
	}
	var got []string
	for _, s := range cfg.Script {
		got = append(got, s.String())
	}
	if strings.Join(got, ";") != "down@1s;an@2s;up/10/slave@3s" {
		t.Errorf("script %v", got)
	}
}

func manySteps(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, "up@%dms", i+1)
	}
	return b.String()
}
