package hub

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var syscall_ENOENT = syscall.ENOENT

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Socket
		timeout  time.Duration
		err      string
	}{
		{name: "control agent file",
			in: `{"Control-agent": {"http-host": "127.0.0.1", "http-port": 8000,
				"control-sockets": {
					"ptpd": {"socket-type": "unix", "socket-name": "/run/ptpd/control.sock"},
					"mdiod": {"socket-name": "/run/mdiod/control.sock", "comment": "PHYs"}},
				"loggers": []}}`,
			want:    []Socket{{"ptpd", "unix", "/run/ptpd/control.sock"}, {"mdiod", "unix", "/run/mdiod/control.sock"}},
			timeout: DefaultTimeout},
		{name: "bare object with timeout",
			in:      `{"control-sockets": {"b": {"socket-name": "/b"}, "a": {"socket-name": "/a"}}, "forward-timeout": 2500}`,
			want:    []Socket{{"b", "unix", "/b"}, {"a", "unix", "/a"}},
			timeout: 2500 * time.Millisecond},
		{name: "not json", in: `{`, err: "invalid JSON"},
		{name: "trailing", in: `{"control-sockets": {"a": {"socket-name": "/a"}}} {}`, err: "data after"},
		{name: "null", in: `null`, err: "want a JSON object"},
		{name: "no sockets", in: `{"Control-agent": {}}`, err: "no control-sockets"},
		{name: "empty sockets", in: `{"control-sockets": {}}`, err: "names no service"},
		{name: "duplicate", in: `{"control-sockets": {"a": {"socket-name": "/a"}, "a": {"socket-name": "/b"}}}`, err: `duplicate service "a"`},
		{name: "no name", in: `{"control-sockets": {"a": {"socket-type": "unix"}}}`, err: "control-sockets.a: no socket-name"},
		{name: "bad type", in: `{"control-sockets": {"a": {"socket-type": "http", "socket-name": "/a"}}}`, err: `only "unix"`},
		{name: "unknown key", in: `{"control-sockets": {"a": {"socket-name": "/a", "port": 1}}}`, err: `unknown key "port"`},
		{name: "name not string", in: `{"control-sockets": {"a": {"socket-name": 5}}}`, err: "socket-name: want a string"},
		{name: "list", in: `{"control-sockets": []}`, err: "want an object"},
		{name: "bad timeout", in: `{"control-sockets": {"a": {"socket-name": "/a"}}, "forward-timeout": 0}`, err: "forward-timeout"},
		{name: "empty service", in: `{"control-sockets": {"": {"socket-name": "/a"}}}`, err: "empty service name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Timeout != tc.timeout || len(cfg.Sockets) != len(tc.want) {
				t.Fatalf("got %+v", cfg)
			}
			for i := range tc.want {
				if cfg.Sockets[i] != tc.want[i] {
					t.Fatalf("socket %d = %+v, want %+v", i, cfg.Sockets[i], tc.want[i])
				}
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "hub.json")
	os.WriteFile(p, []byte(`{"control-sockets": {"a": {"socket-name": 1}}}`), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad file: error %v does not name it", err)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	os.WriteFile(big, []byte(strings.Repeat(" ", maxConfig+1)), 0o644)
	if _, err := LoadConfig(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big file: %v", err)
	}
}

// FuzzConfig: any input gives a config or an error, and a config names
// at least one unix socket with a path.
func FuzzConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.json")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		if len(cfg.Sockets) == 0 || cfg.Timeout <= 0 {
			t.Fatalf("config without sockets or timeout: %+v", cfg)
		}
		for _, s := range cfg.Sockets {
			if s.Type != "unix" || s.Name == "" || s.Service == "" {
				t.Fatalf("bad socket %+v", s)
			}
		}
	})
}
