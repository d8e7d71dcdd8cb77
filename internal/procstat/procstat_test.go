package procstat

import (
	"testing"
	"time"
)

func TestTicks(t *testing.T) {
	const line = "4242 (mctpd) S 1 4242 4242 0 -1 4194560 300 0 0 0 150 37 0 0 20 0 7 0 8493 0 0\n"
	for _, tc := range []struct {
		name, in string
		field    int
		want     uint64
		ok       bool
	}{
		{"utime", line, UTime, 150, true},
		{"stime", line, STime, 37, true},
		{"starttime", line, StartTime, 8493, true},
		{"state is no number", line, 3, 0, false},
		{"name field", line, 2, 0, false},
		{"name with spaces and parens", "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 2 3 0 0", STime, 3, true},
		{"no name", "4242 mctpd S 1 2 3", UTime, 0, false},
		{"short", "1 (x) S 0 0 0", UTime, 0, false},
		{"negative", "1 (x) S 0 0 0 0 0 0 0 0 0 0 -1 0 0 0", UTime, 0, false},
		{"too large", "1 (x) S 0 0 0 0 0 0 0 0 0 0 99999999999999 0 0 0", UTime, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Ticks(tc.in, tc.field)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("Ticks(%q, %d) = %d, %v; want %d, ok %v", tc.in, tc.field, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestCPU(t *testing.T) {
	got, err := CPU("4242 (mctpd) S 1 4242 4242 0 -1 4194560 300 0 0 0 150 37 0 0\n")
	if err != nil || got != 1870*time.Millisecond {
		t.Errorf("CPU = %v, %v; want 1.87s", got, err)
	}
	if _, err := CPU("1 (x) S 0"); err == nil {
		t.Error("CPU of a short line: no error")
	}
}

func FuzzTicks(f *testing.F) {
	f.Add("4242 (mctpd) S 1 4242 4242 0 -1 4194560 300 0 0 0 150 37 0 0 20 0 7 0 100 0 0\n", 14)
	f.Add("1 ()) R", 22)
	f.Fuzz(func(t *testing.T, in string, n int) {
		v, err := Ticks(in, n)
		if err != nil && v != 0 || v > maxTicks {
			t.Fatalf("Ticks(%q, %d) = %d, %v", in, n, v, err)
		}
		d, err := CPU(in)
		if d < 0 || err != nil && d != 0 {
			t.Fatalf("CPU(%q) = %v, %v", in, d, err)
		}
	})
}
