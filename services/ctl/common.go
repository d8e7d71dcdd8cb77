package ctl

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/logring"
)

// registerCommon registers the common commands every tickbox daemon
// serves, under the names and with the answers the JSON control
// channel's tools expect, so that those tools drive any of them.
func (r *Registry) registerCommon() {
	builtin := []*Command{
		{
			Name:    "version-get",
			Comment: "report the version and build",
			Handler: func(context.Context, *Call) Result {
				return OK(r.opts.Version, map[string]any{"extended": BuildReport(r.opts.Name, r.opts.Version)})
			},
		},
		{
			Name:    "build-report",
			Comment: "report how the daemon was built",
			Handler: func(context.Context, *Call) Result {
				return OK(BuildReport(r.opts.Name, r.opts.Version), nil)
			},
		},
		{
			Name:    "status-get",
			Comment: "report pid, uptime, reloads, goroutines and daemon state",
			Handler: func(context.Context, *Call) Result {
				return OK("", r.Status())
			},
		},
		{
			Name:    "config-get",
			Comment: "report the running configuration",
			Handler: func(context.Context, *Call) Result {
				var cfg any = map[string]any{}
				if r.opts.Config != nil {
					cfg = r.opts.Config()
				}
				return OK("", cfg)
			},
		},
		{
			Name:    "shutdown",
			Comment: "shut the daemon down cleanly (exit 0)",
			Handler: func(context.Context, *Call) Result {
				r.RequestShutdown()
				return OK("Shutting down.", nil)
			},
		},
	}
	builtin = append(builtin, r.commandsGetCommand())
	if r.opts.LogRing != nil {
		builtin = append(builtin, logGetCommand(r.opts.LogRing))
	}
	for _, c := range builtin {
		c.builtin = true
		// version-get, build-report, status-get and config-get ignore
		// any arguments, as the originals do; shutdown stays strict, as
		// the original is not argument-free (it takes exit-value).
		// commands-get and log-get are tickbox's own and check theirs.
		c.IgnoreExtraArgs = c.Name != "shutdown" && c.Params == nil
		r.MustRegister(c)
	}
}

// Name returns the daemon's name.
func (r *Registry) Name() string { return r.opts.Name }

// Version returns the daemon's version.
func (r *Registry) Version() string { return r.opts.Version }

// Status returns what status-get reports: pid, uptime, reload, reloads,
// goroutines (the process's count, runtime.NumGoroutine, so that a soak
// or a supervisor can watch it grow), the request counts per front end and result ("requests", once there
// is one), the connections per front end being served ("connections")
// and accepted since start ("connections-accepted") when a Server runs
// the registry, and the daemon's own keys from Options.Status, which
// win over these.
func (r *Registry) Status() map[string]any {
	r.smu.Lock()
	now := time.Now()
	st := map[string]any{
		"pid":        os.Getpid(),
		"uptime":     int64(now.Sub(r.started) / time.Second),
		"reload":     int64(now.Sub(r.reloaded) / time.Second),
		"reloads":    r.reloads,
		"goroutines": runtime.NumGoroutine(),
	}
	srv := r.srv
	r.smu.Unlock()
	if reqs := r.Requests(); len(reqs) > 0 {
		st["requests"] = reqs
	}
	if srv != nil {
		active, accepted := srv.connections()
		st["connections"] = active
		st["connections-accepted"] = accepted
	}
	if r.opts.Status != nil {
		for k, v := range r.opts.Status() {
			st[k] = v
		}
	}
	return st
}

// restoreState sets the start time and reload count carried across a
// re-exec, and counts this start as a reload.
func (r *Registry) restoreState(started time.Time, reloads int) {
	r.smu.Lock()
	defer r.smu.Unlock()
	r.started = started
	r.reloads = reloads + 1
	r.reloaded = time.Now()
}

func (r *Registry) state() (time.Time, int) {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.started, r.reloads
}

// RequestShutdown asks the daemon to shut down; ShutdownRequested's
// channel closes.
func (r *Registry) RequestShutdown() {
	r.shutdownOnce.Do(func() {
		r.Logger().Info("shutdown requested")
		close(r.shutdown)
	})
}

// ShutdownRequested is closed once shutdown was requested.
func (r *Registry) ShutdownRequested() <-chan struct{} { return r.shutdown }

// The image build sets these at link time (gokrazy-instance/derive gives
// every tickbox package -ldflags=-X for both): the version it was built
// as and when, in UTC. A plain go build leaves them empty, and the build
// information decides. The linker writes them; nothing assigns them at
// run time.
var (
	linkVersion   string
	linkBuildTime string
)

// BuildVersion returns the version the image build set, else the main
// module's version, else the VCS revision of a development build.
func BuildVersion() string {
	if linkVersion != "" {
		return linkVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, modified := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += "-dirty"
	}
	return "devel-" + rev
}

// BuildReport returns a multi-line report of how the program was built:
// Go version, platform, module versions and VCS information when present.
func BuildReport(name, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", name, version)
	if linkBuildTime != "" {
		fmt.Fprintf(&b, "built: %s\n", linkBuildTime)
	}
	fmt.Fprintf(&b, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		b.WriteString("build information unavailable\n")
		return b.String()
	}
	fmt.Fprintf(&b, "path: %s\n", bi.Path)
	fmt.Fprintf(&b, "module: %s %s\n", bi.Main.Path, bi.Main.Version)
	for _, s := range bi.Settings {
		switch {
		case strings.HasPrefix(s.Key, "vcs"), s.Key == "CGO_ENABLED", s.Key == "GOARCH", s.Key == "GOOS", s.Key == "-tags", s.Key == "-trimpath":
			fmt.Fprintf(&b, "%s: %s\n", s.Key, s.Value)
		}
	}
	for _, m := range bi.Deps {
		line := fmt.Sprintf("dep: %s %s", m.Path, m.Version)
		if m.Replace != nil {
			line += fmt.Sprintf(" => %s %s", m.Replace.Path, m.Replace.Version)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Bounds of log-get.
const (
	// DefaultLogLimit is how many lines log-get returns when not told.
	DefaultLogLimit = 100
	// MaxLogLimit is the most lines one log-get returns.
	MaxLogLimit = 1000
)

// logGetCommand returns log-get, which pages through the daemon's log
// ring with a cursor, as mdiod's events-get pages through its events.
func logGetCommand(ring *logring.Ring) *Command {
	return &Command{
		Name:    "log-get",
		Comment: "recent log lines, oldest first, after a cursor",
		Usage: "Each line has a sequence number (seq). next is the cursor for the\n" +
			"following call (pass it as since); missed counts the lines after since\n" +
			"that are not returned (gone from the ring, or left out by limit); epoch\n" +
			"changes when the daemon restarts, and with it the numbering.",
		Params: []Param{
			{Name: "since", Type: Int, Default: int64(0), Ranged: true, Min: 0, Max: 1 << 62, Help: "only lines with a larger seq"},
			{Name: "limit", Type: Int, Default: int64(DefaultLogLimit), Ranged: true, Min: 1, Max: MaxLogLimit, Help: "only the last N of them"},
		},
		Handler: func(_ context.Context, c *Call) Result {
			lines, next, missed := ring.Since(uint64(c.Args.Int("since")), int(c.Args.Int("limit")))
			if lines == nil {
				lines = []logring.Line{}
			}
			return OK("", map[string]any{"lines": lines, "next": next, "missed": missed, "epoch": ring.Epoch()})
		},
	}
}
