package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The value checks follow sfptpd's parsers: integers in C's %i form
// (decimal, 0x hex, 0 octal), decimal numbers, fixed words.

// parseCInt parses an integer as C's "%i" does, whole string only.
func parseCInt(s string) (int64, error) {
	if strings.Contains(s, "_") {
		return 0, errors.New("not an integer")
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return 0, errors.New("not an integer")
	}
	return n, nil
}

// intIn parses an integer within [lo, hi].
func intIn(s string, lo, hi int64) (int, error) {
	n, err := parseCInt(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("bad value '%s' (want an integer %d..%d)", s, lo, hi)
	}
	return int(n), nil
}

// floatIn parses a decimal number within [lo, hi].
func floatIn(s string, lo, hi float64) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
		return 0, fmt.Errorf("bad value '%s' (want a number %g..%g)", s, lo, hi)
	}
	return f, nil
}

// nsDuration parses sfptpd's nanosecond thresholds (a decimal number).
func nsDuration(s string) (time.Duration, error) {
	f, err := floatIn(s, 0, 1e15)
	if err != nil {
		return 0, fmt.Errorf("bad value '%s' (want nanoseconds, e.g. 1000)", s)
	}
	return time.Duration(f), nil
}

// oneOf checks a word against a fixed set.
func oneOf(s string, words ...string) error {
	if contains(words, s) {
		return nil
	}
	return fmt.Errorf("bad value '%s' (want %s)", s, strings.Join(words, ", "))
}

// onOff parses sfptpd's on/off switches.
func onOff(s string) (bool, error) {
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("bad value '%s' (want on or off)", s)
}

// octalMode parses an access mode as C's "%o" does.
func octalMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("bad value '%s' (want an octal mode such as 0660)", s)
	}
	return uint32(m), nil
}

// prefixes checks ACL lists: network prefixes separated by blanks or
// commas.
func prefixes(args []string) error {
	for _, a := range args {
		for _, p := range strings.Split(a, ",") {
			if p == "" {
				continue
			}
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("bad network prefix '%s' (want a.b.c.d/len)", p)
			}
		}
	}
	return nil
}

// distinctWords checks a list of words from a set, each at most once.
func distinctWords(args []string, words ...string) error {
	seen := map[string]bool{}
	for _, a := range args {
		if err := oneOf(a, words...); err != nil {
			return err
		}
		if seen[a] {
			return fmt.Errorf("'%s' listed more than once", a)
		}
		seen[a] = true
	}
	return nil
}

// hostPort checks an ntp_server or similar address: HOST, HOST:PORT,
// [V6] or [V6]:PORT.
func hostPort(s string) error {
	bad := fmt.Errorf("bad server '%s' (want HOST or HOST:PORT)", s)
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad
		}
		host = s[1:end]
		if _, err := netip.ParseAddr(host); err != nil {
			return bad
		}
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return bad
			}
			port = rest[1:]
		}
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		host, port = s[:i], s[i+1:]
	case strings.Count(s, ":") > 1:
		// A bare IPv6 address.
		if _, err := netip.ParseAddr(s); err != nil {
			return bad
		}
		return nil
	}
	if host == "" || len(host) > 253 {
		return bad
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '_') {
			return bad
		}
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad
		}
	}
	return nil
}

// word checks a free-form single word such as a clock or interface name.
func word(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("bad value '%s' (at most %d characters)", s, max)
	}
	return nil
}

// interfaceName checks a network interface name as Linux limits it.
func interfaceName(s string) error {
	if s == "" || len(s) > 15 || strings.ContainsAny(s, "/: ") {
		return fmt.Errorf("bad interface name '%s'", s)
	}
	return nil
}

// path checks a file path value.
func path(s string) error {
	if s == "" || len(s) > 4095 {
		return fmt.Errorf("bad path '%s'", s)
	}
	return nil
}
