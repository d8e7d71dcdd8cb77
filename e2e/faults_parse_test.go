package e2e

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

// TestFaultParsers checks the fault test's readers of what the VM
// reports, so that TestVM's figures rest on them.
func TestFaultParsers(t *testing.T) {
	t.Run("load log", func(t *testing.T) {
		tests := []struct {
			in      string
			n, ends int
			bad     bool
		}{
			{"1.000 1.200 kea=/s ok\n1.2 1.3 kea=/s down\nend kea=/s\n", 2, 1, false},
			{"1.000 1.200 kea=/s bad:reply {\"result\": 1}\n", 1, 0, false},
			{"", 0, 0, false},
			{"1.000 1.2", 0, 0, true},         // cut short
			{"x 1.2 kea=/s ok\n", 0, 0, true}, // not a time
			{"1.0 1.2 kea=/s\n", 0, 0, true},  // no result
		}
		for _, tc := range tests {
			rs, ends, err := parseFaultLog(tc.in)
			if (err != nil) != tc.bad || len(rs) != tc.n || ends != tc.ends {
				t.Errorf("%q: %d results, %d ends, %v", tc.in, len(rs), ends, err)
			}
		}
		rs, _, _ := parseFaultLog("1.000 1.200 kea=/s bad:reply {\"a\": 1}\n")
		if want := (faultResult{1, 1.2, "kea=/s", `bad:reply {"a": 1}`}); rs[0] != want {
			t.Errorf("got %+v, want %+v", rs[0], want)
		}
	})
	t.Run("proc start", func(t *testing.T) {
		// comm may hold spaces and parentheses; starttime is field 22.
		stat := "538 (my (odd) prog) S 1 538 538 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 7 0 8493 1 2 3\n"
		if got, err := procStart(stat); err != nil || got != 84.93 {
			t.Errorf("procStart: %v, %v; want 84.93", got, err)
		}
		if _, err := procStart("538 (x) S 1 2"); err == nil {
			t.Error("a short stat line parsed")
		}
	})
	t.Run("log lines since", func(t *testing.T) {
		log := "2026-12-07 15:30:29.100000: info: interfaceinsert: x (interface=tbf0)\n" +
			"2026/12/07 15:30:30 gokrazy: attempt 1\n" +
			"2026-12-07 15:30:31.130933: info: interfaceinsert: x (interface=tbf0)\n" +
			"time=2026-12-07T15:30:28.997Z level=INFO msg=\"port reattached\" interface=tbf0\n" +
			"time=2026-12-07T15:30:32.001Z level=INFO msg=\"port reattached\" interface=tbf0\n"
		since := time.Date(2026, 12, 7, 15, 30, 30, 0, time.UTC)
		got := logLinesSince(log, since, regexp.MustCompile(`tbf0`))
		want := []string{
			"2026-12-07 15:30:31.130933: info: interfaceinsert: x (interface=tbf0)",
			"time=2026-12-07T15:30:32.001Z level=INFO msg=\"port reattached\" interface=tbf0",
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %q\nwant %q", got, want)
		}
	})
}
