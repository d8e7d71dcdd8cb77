// Package procstat reads fields of a Linux /proc/PID/stat line, whose
// second field, the command name in parentheses, may itself hold spaces
// and parentheses.
package procstat

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Field numbers of proc(5).
const (
	UTime     = 14 // user CPU time, clock ticks
	STime     = 15 // system CPU time, clock ticks
	StartTime = 22 // start after boot, clock ticks
)

// TicksPerSecond is USER_HZ, the unit of the stat line's times: 100 on
// every architecture Linux and Go share.
const TicksPerSecond = 100

// maxTicks bounds a time field: over thirty years of CPU time is no real
// figure, and more would overflow a time.Duration.
const maxTicks = 1e11

// Ticks returns field n (numbered as in proc(5), 3 or more) of a stat
// line as a count of clock ticks.
func Ticks(stat string, n int) (uint64, error) {
	if n < 3 {
		return 0, fmt.Errorf("/proc stat: field %d is not a number field", n)
	}
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < n-2 {
		return 0, fmt.Errorf("/proc stat %q: %d fields, want %d", stat, len(f)+2, n)
	}
	v, err := strconv.ParseUint(f[n-3], 10, 64)
	if err != nil || v > maxTicks {
		return 0, fmt.Errorf("/proc stat field %d %q: not a time", n, f[n-3])
	}
	return v, nil
}

// CPU returns the user plus system CPU time of a stat line.
func CPU(stat string) (time.Duration, error) {
	u, err := Ticks(stat, UTime)
	if err != nil {
		return 0, err
	}
	s, err := Ticks(stat, STime)
	if err != nil {
		return 0, err
	}
	return time.Duration(u+s) * (time.Second / TicksPerSecond), nil
}
