package testutil

import (
	"log/slog"
	"strings"
	"testing"
)

func TestLogs(t *testing.T) {
	l := NewLogs()
	log := slog.New(l)
	log.Debug("first", "n", 1)
	sub := log.With("frontend", "kea")
	sub.Warn("second", "err", "boom")
	sub.Warn("second", "err", "again")

	tests := []struct {
		msg   string
		count int
		attrs map[string]string
	}{
		{"first", 1, map[string]string{"n": "1"}},
		{"second", 2, map[string]string{"frontend": "kea", "err": "boom"}},
		{"absent", 0, nil},
	}
	for _, tc := range tests {
		got := l.Find(tc.msg)
		if len(got) != tc.count {
			t.Fatalf("Find(%q): %d records, want %d\n%s", tc.msg, len(got), tc.count, l.Dump())
		}
		for k, v := range tc.attrs {
			if got[0].Attrs[k] != v {
				t.Errorf("Find(%q)[0].Attrs[%q] = %q, want %q", tc.msg, k, got[0].Attrs[k], v)
			}
		}
	}
	if n := len(l.Records()); n != 3 {
		t.Errorf("Records: %d, want 3 (WithAttrs handlers share the parent's records)", n)
	}
	if d := l.Dump(); !strings.Contains(d, `WARN "second" map[err:again frontend:kea]`) {
		t.Errorf("Dump:\n%s", d)
	}
}
