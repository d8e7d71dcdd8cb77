package ctl

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// DaemonOptions configures the common commands every tickbox daemon
// serves.
type DaemonOptions struct {
	// Name is the daemon's name ("ptpd", "ctl", ...).
	Name string
	// Version overrides the version taken from the build information.
	Version string
	// Config returns the running configuration for config-get. Nil gives
	// an empty map.
	Config func() any
	// Status adds daemon-specific keys to status-get.
	Status func() map[string]any
	Logger *slog.Logger
}

// Daemon is a Registry with the Kea-style common commands (version-get,
// status-get, build-report, config-get, shutdown) and the process state
// they report.
type Daemon struct {
	*Registry
	opts DaemonOptions

	mu       sync.Mutex
	started  time.Time
	reloaded time.Time
	reloads  int

	shutdownOnce sync.Once
	shutdown     chan struct{}
}

// NewDaemon returns a registry with the common commands registered.
func NewDaemon(opts DaemonOptions) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = BuildVersion()
	}
	now := time.Now()
	d := &Daemon{
		Registry: NewRegistry(opts.Logger),
		opts:     opts,
		started:  now,
		reloaded: now,
		shutdown: make(chan struct{}),
	}
	builtin := []*Command{
		{
			Name:    "version-get",
			Comment: "report the version and build",
			Handler: func(context.Context, *Call) Result {
				return OK(d.opts.Version, map[string]any{"extended": BuildReport(d.opts.Name, d.opts.Version)})
			},
		},
		{
			Name:    "build-report",
			Comment: "report how the daemon was built",
			Handler: func(context.Context, *Call) Result {
				return OK(BuildReport(d.opts.Name, d.opts.Version), nil)
			},
		},
		{
			Name:    "status-get",
			Comment: "report pid, uptime, reloads and daemon state",
			Handler: func(context.Context, *Call) Result {
				return OK("", d.Status())
			},
		},
		{
			Name:    "config-get",
			Comment: "report the running configuration",
			Handler: func(context.Context, *Call) Result {
				var cfg any = map[string]any{}
				if d.opts.Config != nil {
					cfg = d.opts.Config()
				}
				return OK("", cfg)
			},
		},
		{
			Name:    "shutdown",
			Comment: "shut the daemon down cleanly (exit 0)",
			Handler: func(context.Context, *Call) Result {
				d.RequestShutdown()
				return OK("Shutting down.", nil)
			},
		},
	}
	for _, c := range builtin {
		c.builtin = true
		// Kea's version-get, build-report, status-get and config-get
		// ignore any arguments; shutdown stays strict, as it is not one
		// of Kea's argument-free commands (Kea's takes exit-value).
		c.IgnoreExtraArgs = c.Name != "shutdown"
		d.MustRegister(c)
	}
	return d
}

// Name returns the daemon's name.
func (d *Daemon) Name() string { return d.opts.Name }

// Version returns the daemon's version.
func (d *Daemon) Version() string { return d.opts.Version }

// Status returns what status-get reports.
func (d *Daemon) Status() map[string]any {
	d.mu.Lock()
	now := time.Now()
	st := map[string]any{
		"pid":     os.Getpid(),
		"uptime":  int64(now.Sub(d.started) / time.Second),
		"reload":  int64(now.Sub(d.reloaded) / time.Second),
		"reloads": d.reloads,
	}
	d.mu.Unlock()
	if d.opts.Status != nil {
		for k, v := range d.opts.Status() {
			st[k] = v
		}
	}
	return st
}

// restoreState sets the start time and reload count carried across a
// re-exec, and counts this start as a reload.
func (d *Daemon) restoreState(started time.Time, reloads int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = started
	d.reloads = reloads + 1
	d.reloaded = time.Now()
}

func (d *Daemon) state() (time.Time, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started, d.reloads
}

// RequestShutdown asks the daemon to shut down; ShutdownRequested's
// channel closes.
func (d *Daemon) RequestShutdown() {
	d.shutdownOnce.Do(func() {
		d.Logger().Info("shutdown requested")
		close(d.shutdown)
	})
}

// ShutdownRequested is closed once shutdown was requested.
func (d *Daemon) ShutdownRequested() <-chan struct{} { return d.shutdown }

// BuildVersion returns the main module's version, or the VCS revision for
// a development build.
func BuildVersion() string {
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
