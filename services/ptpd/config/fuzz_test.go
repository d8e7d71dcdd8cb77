package config

import (
	"strings"
	"testing"
)

// FuzzConfig checks that the parser never panics, that every error is
// located as FILE: or FILE:LINE: with a line inside the file, and that a
// valid result is internally consistent.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("[general]\nsync_module freerun fr1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseOptions("fz.cfg", data, noNTPConf)
		lines := strings.Count(string(data), "\n") + 1
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "fz.cfg:") {
				t.Fatalf("error not located: %q", msg)
			}
			if e, ok := err.(*Error); ok && e.Line > lines {
				t.Fatalf("line %d beyond the file: %q", e.Line, msg)
			}
			return
		}
		if len(c.Instances) == 0 {
			t.Fatal("valid config without instances")
		}
		seen := map[string]bool{}
		for _, in := range c.Instances {
			if seen[in.Name] || !validName(in.Name) {
				t.Fatalf("bad or duplicate instance %q", in.Name)
			}
			seen[in.Name] = true
			if !contains(modules, in.Module) {
				t.Fatalf("module %q", in.Module)
			}
			if in.Module == "ptp" && in.Mode != "slave" && in.Mode != "master" {
				t.Fatalf("ptp instance %q with mode %q", in.Name, in.Mode)
			}
			if in.Priority < 0 || in.Priority > 255 || len(in.NTPServers) > maxServers {
				t.Fatalf("instance %+v", in)
			}
			if in.Clock != "" && in.Interface != "" {
				t.Fatalf("instance %q has both a clock and an interface", in.Name)
			}
		}
		if n := c.General.SelectionInstance; n != "" && !seen[n] {
			t.Fatalf("selection instance %q not declared", n)
		}
		for _, ig := range c.Ignored {
			if ig.Line < 1 || ig.Line > lines || ig.Reason == "" || ig.Keyword == "" {
				t.Fatalf("ignored record %+v", ig)
			}
		}
		for _, w := range c.Warnings {
			if w.Line < 0 || w.Line > lines || w.Msg == "" {
				t.Fatalf("warning %+v", w)
			}
		}
	})
}
