package hotplug

import (
	"fmt"
	"path"
	"strings"
)

// Loopback is always ignored: no PTP daemon runs on it, and sfptpd's own
// netlink mode skips it too.
const Loopback = "lo"

// MaxPatterns bounds the -ignore list, so that matching stays cheap for
// every link message.
const MaxPatterns = 256

// maxPatternLen bounds one pattern. Interface names are at most 15
// bytes; a longer glob is still legal (many '*') but not useful.
const maxPatternLen = 256

// Patterns is the set of interface name globs the agent ignores, always
// including "lo". The zero value ignores only "lo".
type Patterns struct {
	globs []string
}

// ParsePatterns validates globs (path.Match syntax: '*', '?', '[a-z]',
// '\\' escapes) and returns the set. Empty and duplicate patterns are
// dropped; a malformed one is an error naming it, so that a typo in a
// flag stops the agent at start rather than silently matching nothing.
//
// An empty (or all-blank) pattern means "no pattern", not path.Match's
// glob that matches only the empty name: it comes from an empty flag or
// config value (-ignore= from a template), no interface is named "", and
// a link message with an empty name is a bogus one that must not be
// hidden by a pattern nobody meant to write.
func ParsePatterns(globs []string) (Patterns, error) {
	if len(globs) > MaxPatterns {
		return Patterns{}, fmt.Errorf("too many ignore patterns (%d, at most %d)", len(globs), MaxPatterns)
	}
	var p Patterns
	seen := map[string]bool{Loopback: true}
	for _, g := range globs {
		g = strings.TrimSpace(g)
		if g == "" || seen[g] {
			continue
		}
		if len(g) > maxPatternLen {
			return Patterns{}, fmt.Errorf("ignore pattern %.20q...: longer than %d bytes", g, maxPatternLen)
		}
		if _, err := path.Match(g, ""); err != nil {
			return Patterns{}, fmt.Errorf("ignore pattern %q: %w", g, err)
		}
		seen[g] = true
		p.globs = append(p.globs, g)
	}
	return p, nil
}

// Match reports whether the interface name is ignored.
func (p Patterns) Match(name string) bool {
	if name == Loopback {
		return true
	}
	for _, g := range p.globs {
		// The patterns were validated, so Match cannot fail here.
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// List returns the patterns, "lo" first, for config-get.
func (p Patterns) List() []string {
	return append([]string{Loopback}, p.globs...)
}
