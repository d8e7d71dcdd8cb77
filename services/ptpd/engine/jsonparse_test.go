package engine

import (
	"bytes"
	"testing"
)

// FuzzParseJSONStats: any input gives a value or an error, never a
// panic; a line that parses renders stats of numbers and strings only.
func FuzzParseJSONStats(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseJSONStats(b)
		if err != nil {
			return
		}
		if len(bytes.TrimSpace(b)) > MaxJSONStatsLine {
			t.Fatal("oversized line accepted")
		}
		for _, s := range p.Stats {
			if s.IsNum && s.Str != "" {
				t.Fatalf("stat %q is both number and string", s.Key)
			}
		}
	})
}
