package hub

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
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
		{name: "null", in: `null`, err: "invalid first character n"},
		{name: "comments", in: "# the hub\n{\"control-sockets\": { // one\n \"a\": {/* x */ \"socket-name\": \"/a\"}}}\n// end",
			want: []Socket{{"a", "unix", "/a"}}, timeout: DefaultTimeout},
		{name: "unterminated comment after", in: `{"control-sockets": {"a": {"socket-name": "/a"}}} /* x`, err: "unterminated"},
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

// TestLoadConfigKea: the Control Agent's own file, as Debian's
// kea-ctrl-agent package ships it (comments and all), loads.
func TestLoadConfigKea(t *testing.T) {
	const shipped = "/etc/kea/kea-ctrl-agent.conf"
	if _, err := os.Stat(shipped); err != nil {
		testutil.Require(t, "Debian's kea-ctrl-agent (its shipped "+shipped+"): "+err.Error())
	}
	cfg, err := LoadConfig(shipped)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cfg.Sockets {
		names = append(names, s.Service)
		if s.Type != "unix" || !strings.HasPrefix(s.Name, "/") {
			t.Errorf("socket %+v", s)
		}
	}
	if strings.Join(names, ",") != "dhcp4,dhcp6,d2" {
		t.Errorf("services %v, want dhcp4, dhcp6, d2 in the file's order", names)
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

// TestImageConfig: the hub configuration the image ships (in the
// gokrazy instance's config.json) loads and fronts the four daemons at
// the sockets their flags give.
func TestImageConfig(t *testing.T) {
	b, err := os.ReadFile("../../../gokrazy-instance/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var inst struct {
		PackageConfig map[string]struct {
			CommandLineFlags  []string
			ExtraFileContents map[string]string
		}
	}
	if err := json.Unmarshal(b, &inst); err != nil {
		t.Fatal(err)
	}
	ctlPkg := inst.PackageConfig["github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl"]
	if !slices.Contains(ctlPkg.CommandLineFlags, "-config=/etc/ctl/hub.json") {
		t.Fatalf("ctl's flags %v do not name /etc/ctl/hub.json", ctlPkg.CommandLineFlags)
	}
	cfg, err := ParseConfig([]byte(ctlPkg.ExtraFileContents["/etc/ctl/hub.json"]))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ptpd": "/run/ptpd/control.sock", "mctpd": "/run/mctpd/control.sock",
		"mdiod": "/run/mdiod/control.sock", "appliance": "/run/appliance/control.sock",
	}
	if len(cfg.Sockets) != len(want) {
		t.Fatalf("sockets %+v", cfg.Sockets)
	}
	for _, s := range cfg.Sockets {
		if want[s.Service] != s.Name {
			t.Errorf("%s at %s, want %s", s.Service, s.Name, want[s.Service])
		}
	}
}
