package ntp

import (
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// tol is how far a loopback measurement may be from the truth: the
// request is stamped in user space, so a loaded machine adds a little.
const tol = 2 * time.Millisecond

// settle bounds waiting for a state; polls are 150 ms apart.
const settle = 10 * time.Second

func near(got float64, want time.Duration, within time.Duration) bool {
	return math.Abs(got-float64(want)) <= float64(within)
}

// offsetNear reports whether an instance's offset is want within tol
// plus its path delay. An NTP sample's offset can be wrong by up to half
// its round trip (the delay is not known to be symmetric), and the
// instance reports that half as PathDelayNS: on an idle machine it is a
// few tens of microseconds, on a loaded one it is the scheduling delay
// that the sample really suffered.
func offsetNear(st instance.Status, want time.Duration) bool {
	return near(st.OffsetNS, want, tol+time.Duration(st.PathDelayNS))
}

// closedPort returns a loopback address nothing listens on, so queries
// to it are refused at once.
func closedPort(t *testing.T, ip string) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

func TestServerChoice(t *testing.T) {
	kod := behaviour{kod: "DENY"}
	unsync := good()
	unsync.stratum, unsync.leap, unsync.offset = 1, 3, 40*time.Millisecond
	for _, tc := range []struct {
		name string
		a, b behaviour
		// aClosed: server a is a port nothing listens on.
		aClosed bool
		want    string // the address picked: "a" or "b"
	}{
		{"lower stratum wins", behaviour{stratum: 3, offset: 4 * time.Millisecond}, behaviour{stratum: 2, offset: -3 * time.Millisecond}, false, "b"},
		{"same stratum: shorter root distance", behaviour{stratum: 2, rootDisp: 50 * time.Millisecond, offset: 7 * time.Millisecond}, behaviour{stratum: 2, rootDisp: time.Millisecond, offset: -6 * time.Millisecond}, false, "b"},
		{"same stratum and distance: configuration order", behaviour{stratum: 4, offset: 5 * time.Millisecond}, behaviour{stratum: 4, offset: -5 * time.Millisecond}, false, "a"},
		{"unsynchronised server ignored", unsync, behaviour{stratum: 4, offset: 3 * time.Millisecond}, false, "b"},
		{"kiss-of-death ignored", kod, behaviour{stratum: 5, offset: -2 * time.Millisecond}, false, "b"},
		{"unreachable ignored", behaviour{}, behaviour{stratum: 6, offset: 6 * time.Millisecond}, true, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var aAddr string
			if tc.aClosed {
				aAddr = closedPort(t, "127.0.0.2")
			} else {
				aAddr = startFake(t, "127.0.0.2", tc.a).addr
			}
			fb := startFake(t, "127.0.0.3", tc.b)
			n, _ := run(t, testConfig(aAddr, fb.addr), virtual(t, 0, 0))
			want, wantB := "127.0.0.2", tc.a
			if tc.want == "b" {
				want, wantB = "127.0.0.3", tc.b
			}
			st := waitFor(t, n, settle, "slave of "+want, func(s instance.Status) bool {
				return s.State == instance.Slave && s.ParentID == want
			})
			// Several polls later the choice still holds.
			time.Sleep(600 * time.Millisecond)
			st = n.Status()
			if st.State != instance.Slave || st.ParentID != want {
				t.Fatalf("choice did not hold: %+v", st)
			}
			// The clock reads real time: local minus server is minus
			// the server's offset.
			if !offsetNear(st, -wantB.offset) {
				t.Errorf("offset %.0f ns, want %v ±(%v + path delay %.0f ns)", st.OffsetNS, -wantB.offset, tol, st.PathDelayNS)
			}
			if st.StepsRemoved != int(wantB.stratum) {
				t.Errorf("steps removed %d, want stratum %d", st.StepsRemoved, wantB.stratum)
			}
		})
	}
}

func TestStates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers func(t *testing.T) []string
		want    instance.State
		class   uint8
		problem string // a log line that must appear exactly once
	}{
		{"no servers: disabled", func(*testing.T) []string { return nil }, instance.Disabled, ClockClassFreerunning, ""},
		{"refused: faulty", func(t *testing.T) []string { return []string{closedPort(t, "127.0.0.4")} }, instance.Faulty, ClockClassFreerunning, `problem="unreachable: recvmsg: connection refused"`},
		{"silent: faulty", func(t *testing.T) []string {
			return []string{startFake(t, "127.0.0.4", behaviour{silent: true}).addr}
		}, instance.Faulty, ClockClassFreerunning, `problem="unreachable: i/o timeout"`},
		{"name does not resolve: faulty", func(*testing.T) []string { return []string{"ntp.example.invalid"} }, instance.Faulty, ClockClassFreerunning, `problem="DNS: ntp.example.invalid`},
		{"only kiss-of-death: listening", func(t *testing.T) []string {
			return []string{startFake(t, "127.0.0.4", behaviour{kod: "RATE"}).addr}
		}, instance.Listening, ClockClassFreerunning, `problem="kiss-of-death`},
		{"valid: slave", func(t *testing.T) []string { return []string{startFake(t, "127.0.0.4", good()).addr} }, instance.Slave, ClockClassLocked, ""},
		{"name from hosts file: slave", func(t *testing.T) []string {
			f := startFake(t, "127.0.0.1", good())
			_, port, _ := net.SplitHostPort(f.addr)
			return []string{"localhost:" + port}
		}, instance.Slave, ClockClassLocked, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.servers(t)...)
			cfg.Module = "crny"
			cfg.UserPriority = 7
			n, lb := run(t, cfg, virtual(t, 0, 0))
			st := waitFor(t, n, settle, tc.want.String(), func(s instance.Status) bool { return s.State == tc.want })
			// Stays there over several polls.
			time.Sleep(800 * time.Millisecond)
			st = n.Status()
			if st.State != tc.want {
				t.Fatalf("state moved on to %v", st.State)
			}
			if st.Name != cfg.Name || st.Module != "crny" || st.UserPriority != 7 || st.Clock != "virtual" {
				t.Errorf("identity: %+v", st)
			}
			if st.ClockClass != tc.class {
				t.Errorf("clock class %d, want %d", st.ClockClass, tc.class)
			}
			if tc.want == instance.Slave {
				if math.IsInf(st.AccuracyNS, 0) || st.AccuracyNS < LocalAccuracyNS {
					t.Errorf("accuracy %v, want root dispersion + %v", st.AccuracyNS, LocalAccuracyNS)
				}
				if st.StepsRemoved != 2 || st.GrandmasterID != "192.0.2.1" {
					t.Errorf("stratum/reference: %+v", st)
				}
				if st.PathDelayNS <= 0 || st.PathDelayNS > float64(tol) {
					t.Errorf("path delay %v ns", st.PathDelayNS)
				}
			} else {
				if !math.IsInf(st.AccuracyNS, 1) || st.OffsetNS != 0 || st.ParentID != "" || st.InSync {
					t.Errorf("without a server: %+v", st)
				}
			}
			if tc.problem != "" {
				if c := lb.count(tc.problem); c != 1 {
					t.Errorf("log lines with %q: %d, want 1 (logged once per change)", tc.problem, c)
				}
			}
			if c := lb.count("state changed"); c > 1 {
				t.Errorf("%d state changes logged, want at most 1", c)
			}
		})
	}
}

func TestBadPackets(t *testing.T) {
	short := make([]byte, 20)
	for _, tc := range []struct {
		name string
		b    behaviour
	}{
		{"short packet", behaviour{raw: short}},
		{"client mode", behaviour{stratum: 2, mode: 3}},
		{"wrong origin", behaviour{stratum: 2, badOrig: true}},
		{"stratum 16", behaviour{stratum: 16}},
		{"leap not in sync", behaviour{stratum: 2, leap: 3}},
		{"root dispersion over 16 s", behaviour{stratum: 2, rootDisp: 20 * time.Second}},
		{"zeros", behaviour{raw: make([]byte, 48)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, "127.0.0.5", tc.b)
			n, lb := run(t, testConfig(f.addr), virtual(t, 0, 0))
			waitFor(t, n, settle, "listening", func(s instance.Status) bool { return s.State == instance.Listening && f.count() >= 3 })
			if c := lb.count("problem="); c != 1 {
				t.Errorf("%d problem lines, want 1", c)
			}
			// The server mends its ways: the instance takes it up.
			f.set(good())
			waitFor(t, n, settle, "slave", func(s instance.Status) bool { return s.State == instance.Slave })
			if lb.count("NTP server answering") != 1 {
				t.Errorf("recovery not logged once")
			}
		})
	}
}

func TestKissOfDeathBacksOff(t *testing.T) {
	f := startFake(t, "127.0.0.6", behaviour{kod: "RATE"})
	n, lb := run(t, testConfig(f.addr), virtual(t, 0, 0))
	// 12 polls: the first is kissed, then 4 are skipped, the next is
	// kissed and 8 are skipped.
	time.Sleep(12*150*time.Millisecond + 100*time.Millisecond)
	if q := f.count(); q < 1 || q > 3 {
		t.Errorf("%d queries in 12 polls to a server that sent kiss-of-death, want 2 or so", q)
	}
	if st := n.Status(); st.State != instance.Listening {
		t.Errorf("state %v, want listening", st.State)
	}
	if lb.count("kiss-of-death") < 1 {
		t.Errorf("kiss-of-death not logged")
	}
}

// TestClockCorrection: offsets are of the instance's clock, whether it
// maps kernel timestamps itself (the virtual clock) or is only read
// (plainClock), and whatever the server's own offset.
func TestClockCorrection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		clkOff time.Duration
		ppm    float64
		srvOff time.Duration
		plain  bool
	}{
		{"virtual +2ms", 2 * time.Millisecond, 0, 0, false},
		{"virtual -50ms fast", -50 * time.Millisecond, 100, 0, false},
		{"virtual +1.5s, server -20ms", 1500 * time.Millisecond, -30, -20 * time.Millisecond, false},
		{"plain +2ms", 2 * time.Millisecond, 0, 0, true},
		{"plain -300ms, server +5ms", -300 * time.Millisecond, 50, 5 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := good()
			b.offset = tc.srvOff
			f := startFake(t, "127.0.0.7", b)
			vc := virtual(t, tc.clkOff, tc.ppm)
			var clk clock.Clock = vc
			if tc.plain {
				clk = plainClock{vc}
			}
			n, _ := run(t, testConfig(f.addr), clk)
			if _, isMapper := clk.(clock.RealtimeMapper); isMapper == tc.plain {
				t.Fatalf("clock mapper %v, want %v", isMapper, !tc.plain)
			}
			waitFor(t, n, settle, "slave", func(s instance.Status) bool { return s.State == instance.Slave })
			time.Sleep(500 * time.Millisecond)
			st := n.Status()
			// The truth: the clock's error minus the server's.
			want := vc.TrueError() - tc.srvOff
			if !offsetNear(st, want) {
				t.Errorf("offset %.0f ns, want %v ±%v", st.OffsetNS, want, tol)
			}
			if vc.Steps() != 0 {
				t.Errorf("clock stepped while only measuring")
			}
		})
	}
}

func TestDiscipline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control servo.ClockControl
		on      bool
		steers  bool
	}{
		{"not selected: measures only", servo.SlewAndStep, false, false},
		{"selected: slew-and-step", servo.SlewAndStep, true, true},
		{"selected: no-step slews", servo.NoStep, true, true},
		{"selected but no-adjust", servo.NoAdjust, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, "127.0.0.8", good())
			const off = 5 * time.Millisecond
			vc := virtual(t, off, 20)
			cfg := testConfig(f.addr)
			cfg.ClockControl = tc.control
			n, _ := run(t, cfg, vc)
			n.SetDiscipline(tc.on)
			waitFor(t, n, settle, "slave", func(s instance.Status) bool { return s.State == instance.Slave })
			if tc.steers {
				// Steered: the clock's true error comes down to the
				// loopback's measurement noise.
				deadline := time.Now().Add(30 * time.Second)
				for math.Abs(float64(vc.TrueError())) > float64(tol) {
					if time.Now().After(deadline) {
						t.Fatalf("true error still %v after 30 s; status %+v", vc.TrueError(), n.Status())
					}
					time.Sleep(100 * time.Millisecond)
				}
				if tc.control == servo.NoStep && vc.Steps() != 0 {
					t.Errorf("no-step clock stepped %d times", vc.Steps())
				}
				if tc.control == servo.SlewAndStep && vc.Steps() != 1 {
					t.Errorf("slew-and-step: %d steps, want the one first step", vc.Steps())
				}
			} else {
				time.Sleep(time.Second)
				if f, _ := vc.FreqPPB(); vc.Steps() != 0 || f != 0 {
					t.Errorf("clock touched: %d steps, %v ppb", vc.Steps(), f)
				}
				if !near(float64(vc.TrueError()), off, 100*time.Microsecond) {
					t.Errorf("true error %v moved from %v", vc.TrueError(), off)
				}
			}
			st := n.Status()
			if st.Disciplining != tc.steers {
				t.Errorf("disciplining %v, want %v", st.Disciplining, tc.steers)
			}
			if st.Steps != vc.Steps() {
				t.Errorf("status steps %d, clock %d", st.Steps, vc.Steps())
			}
			if tc.steers {
				waitFor(t, n, settle, "in sync", func(s instance.Status) bool { return s.InSync })
			}
			// Deselected: the clock is left alone from then on.
			n.SetDiscipline(false)
			time.Sleep(200 * time.Millisecond)
			f1, _ := vc.FreqPPB()
			s1 := vc.Steps()
			time.Sleep(600 * time.Millisecond)
			if f2, _ := vc.FreqPPB(); f2 != f1 || vc.Steps() != s1 {
				t.Errorf("deselected clock still adjusted: %v→%v ppb, %d→%d steps", f1, f2, s1, vc.Steps())
			}
		})
	}
}

func TestStepClock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control servo.ClockControl
		off     time.Duration
		wantErr bool
	}{
		{"steps by the offset", servo.SlewAndStep, 30 * time.Millisecond, false},
		{"steps back", servo.NoStep, -200 * time.Millisecond, false},
		{"no-adjust refuses", servo.NoAdjust, 30 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, "127.0.0.9", good())
			vc := virtual(t, tc.off, 0)
			cfg := testConfig(f.addr)
			cfg.ClockControl = tc.control
			n, _ := run(t, cfg, vc)
			waitFor(t, n, settle, "slave", func(s instance.Status) bool { return s.State == instance.Slave })
			err := n.StepClock()
			if tc.wantErr {
				if err == nil || vc.Steps() != 0 {
					t.Fatalf("StepClock under no-adjust: err %v, %d steps", err, vc.Steps())
				}
				return
			}
			if err != nil {
				t.Fatalf("StepClock: %v", err)
			}
			if vc.Steps() != 1 || !near(float64(vc.TrueError()), 0, tol) {
				t.Errorf("after the step: %d steps, true error %v", vc.Steps(), vc.TrueError())
			}
			st := n.Status()
			if st.State != instance.Slave || !offsetNear(st, 0) {
				t.Errorf("after the step: %+v", st)
			}
			// The next polls measure the stepped clock.
			time.Sleep(600 * time.Millisecond)
			if st := n.Status(); !offsetNear(st, 0) {
				t.Errorf("offset after the step %.0f ns", st.OffsetNS)
			}
		})
	}
	t.Run("without a server", func(t *testing.T) {
		n, _ := run(t, testConfig(closedPort(t, "127.0.0.9")), virtual(t, 0, 0))
		waitFor(t, n, settle, "faulty", func(s instance.Status) bool { return s.State == instance.Faulty })
		if err := n.StepClock(); err == nil {
			t.Fatal("StepClock with no server: no error")
		}
	})
}

func TestNewRejects(t *testing.T) {
	many := make([]string, MaxServers+1)
	for i := range many {
		many[i] = "192.0.2." + strconv.Itoa(i+1)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"module", func(c *Config) { c.Module = "ptp" }},
		{"bad server", func(c *Config) { c.Servers = []string{"host:port"} }},
		{"too many servers", func(c *Config) { c.Servers = many }},
		{"poll too fast", func(c *Config) { c.PollInterval = time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			if _, err := New(c, virtual(t, 0, 0), nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := New(DefaultConfig(), nil, nil); err == nil {
		t.Fatal("accepted a nil clock")
	}
}

func TestSetPID(t *testing.T) {
	n, err := New(testConfig("192.0.2.1"), virtual(t, 0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kp, ki         float64
		wantKp, wantKi float64
	}{
		{0.3, 0.02, 0.3, 0.02},
		{-1, 0.05, 0.3, 0.05}, // a bad coefficient is ignored
	} {
		n.SetPID(tc.kp, tc.ki, 0, false)
		if c := n.Config(); c.PIDKp != tc.wantKp || c.PIDKi != tc.wantKi {
			t.Errorf("SetPID(%v, %v): %v, %v", tc.kp, tc.ki, c.PIDKp, c.PIDKi)
		}
	}
}

// TestLostReplies: a lost reply or two keep the server selected (the
// reachability register), three in a row drop it, and it is taken up
// again when it answers.
func TestLostReplies(t *testing.T) {
	b := good()
	b.offset = -4 * time.Millisecond
	f := startFake(t, "127.0.0.10", b)
	n, _ := run(t, testConfig(f.addr), virtual(t, 0, 0))
	waitFor(t, n, settle, "slave", func(s instance.Status) bool { return s.State == instance.Slave })
	for _, step := range []struct {
		name   string
		silent bool
		wait   time.Duration
		want   instance.State
	}{
		// Each poll without a reply lasts the 200 ms timeout, so in
		// 250 ms at most two can have failed.
		{"two polls lost", true, 250 * time.Millisecond, instance.Slave},
		{"three or more lost", true, settle, instance.Faulty},
		{"back", false, settle, instance.Slave},
	} {
		b := b
		b.silent = step.silent
		f.set(b)
		if step.want == instance.Slave && step.silent {
			time.Sleep(step.wait)
			st := n.Status()
			if st.State != instance.Slave || !offsetNear(st, 4*time.Millisecond) {
				t.Fatalf("%s: %+v", step.name, st)
			}
			continue
		}
		waitFor(t, n, step.wait, step.name+": "+step.want.String(), func(s instance.Status) bool { return s.State == step.want })
	}
}

// TestLeapGuard: while the engine's leap-second guard is on, replies
// are not taken (the server's clock jumping by a second, as it does at
// a leap, does not reach the offset); once it is off they are again.
func TestLeapGuard(t *testing.T) {
	f := startFake(t, "127.0.0.8", good())
	n, _ := run(t, testConfig(f.addr), virtual(t, 0, 0))
	waitFor(t, n, settle, "slave", func(s instance.Status) bool { return s.State == instance.Slave })
	n.LeapGuard(true)
	jumped := good()
	jumped.offset = -time.Second
	f.set(jumped)
	q := f.count()
	testutil.WaitFor(t, "polls under the guard", settle, func() bool { return f.count() >= q+4 })
	if st := n.Status(); !offsetNear(st, 0) || st.State != instance.Slave {
		t.Fatalf("under the guard: offset %.0f ns, state %v; want the last offset from before it", st.OffsetNS, st.State)
	}
	n.LeapGuard(false)
	waitFor(t, n, settle, "offset after the guard", func(s instance.Status) bool { return offsetNear(s, time.Second) })
}

// TestFilterRTT: the selection's root distance takes the shortest of
// the last eight round trips, so one delayed reply does not count
// against a server, and a lasting change does once it fills the window.
func TestFilterRTT(t *testing.T) {
	var s server
	ms := time.Millisecond
	for i, tc := range []struct {
		rtt, want time.Duration
	}{
		{2 * ms, 2 * ms}, {9 * ms, 2 * ms}, {1 * ms, 1 * ms}, {5 * ms, 1 * ms},
		{5 * ms, 1 * ms}, {5 * ms, 1 * ms}, {5 * ms, 1 * ms}, {5 * ms, 1 * ms},
		{5 * ms, 1 * ms}, {5 * ms, 1 * ms}, // the 1 ms reply (the third) leaves the window after this, the tenth
		{5 * ms, 5 * ms},
	} {
		if got := s.filterRTT(tc.rtt); got != tc.want {
			t.Fatalf("reply %d (%v): filtered %v, want %v", i, tc.rtt, got, tc.want)
		}
	}
}
