package engine

import (
	"math"
	"strings"
	"testing"
)

// FuzzControlParams feeds the parameter part of a control datagram
// ("p1,p2,...", split as the datagram front end splits it) to the
// parsers of testmode, pid_adjust and block_clock. None may panic; a
// parse that succeeds must hold only what its input can give.
func FuzzControlParams(f *testing.F) {
	for _, s := range []string{
		"", ",", ",,,reset", ",0.05", "0.5,0.01,0,ptp,reset", "1e999,-0,nan", "0x10,010,-1",
		"1", "0", "maybe", "1,system,phc0", "0,phc0(eth0)", "no_sync_pkts", "timestamp_jitter,0x7fffffff,9,9,9",
		"adjust_frequency,-1000", "bogus,1", "reset,local,pps", "\x00,\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var fields []string
		if s != "" {
			fields = strings.Split(s, ",")
		}
		if m, params, err := ParseTestMode(fields); err == nil {
			if _, ok := LookupTestMode(fields[0]); !ok || m != mustMode(t, fields[0]) {
				t.Fatalf("testmode %q parsed as mode %v", s, m)
			}
			for i := len(fields) - 1; i < len(params); i++ {
				if i >= 0 && params[i] != 0 {
					t.Fatalf("testmode %q: parameter %d set without a field: %v", s, i, params)
				}
			}
		}
		if p, err := ParsePIDAdjust(fields); err == nil {
			if p.Mask == 0 {
				t.Fatalf("pid_adjust %q: empty servo mask", s)
			}
			for i, c := range []float64{p.KP, p.KI, p.KD} {
				if math.IsNaN(c) && i < len(fields) && fields[i] != "" && !strings.Contains(strings.ToLower(fields[i]), "nan") {
					t.Fatalf("pid_adjust %q: coefficient %d kept though given", s, i)
				}
			}
		}
		_, clocks := ParseBlockClock(fields)
		if len(fields) <= 1 && clocks != nil || len(fields) > 1 && len(clocks) != len(fields)-1 {
			t.Fatalf("block_clock %q: clocks %q", s, clocks)
		}
	})
}

func mustMode(t *testing.T, name string) TestMode {
	m, ok := LookupTestMode(name)
	if !ok {
		t.Fatalf("mode %q", name)
	}
	return m
}
