package instance

import (
	"slices"
	"testing"
)

func TestSortAlarms(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{AlarmNoDelayResps, AlarmNoSyncPkts}, []string{AlarmNoSyncPkts, AlarmNoDelayResps}},
		// Names sfptpd lacks follow its own, in their order; duplicates go.
		{[]string{"zz", AlarmSustainedSyncFailure, "aa", AlarmPPSNoSignal, AlarmPPSNoSignal}, []string{AlarmPPSNoSignal, AlarmSustainedSyncFailure, "zz", "aa"}},
	}
	for _, tc := range tests {
		in := slices.Clone(tc.in)
		if got := SortAlarms(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SortAlarms(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("SortAlarms modified its argument")
		}
	}
	// sfptpd's table order, and its one text with a trailing blank.
	if AlarmRank(AlarmPPSNoSignal) != 0 || AlarmRank(AlarmSustainedSyncFailure) != 16 || AlarmRank("x") != 17 || AlarmCapsMismatch != "caps-mismatch " {
		t.Fatal("alarm table differs from sfptpd's")
	}
}
