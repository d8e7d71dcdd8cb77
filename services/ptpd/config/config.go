// Package config reads ptpd's configuration file, written in sfptpd's
// syntax: a [general] section declaring the sync instances with
// "sync_module MODULE NAME" lines, [ptp] and [freerun] sections holding
// defaults for every instance of that module, and one [NAME] section per
// instance. Every error names the file and line, because the file is
// edited by hand and a daemon that starts with a half-understood
// configuration disciplines clocks the wrong way.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults, as sfptpd documents them where it has the same option.
const (
	DefaultControlPath      = "/var/run/sfptpd/control-v1.sock"
	DefaultControlMode      = fs.FileMode(0o660)
	DefaultStatePath        = "/var/lib/sfptpd"
	DefaultSelectionHoldoff = 10 * time.Second
	DefaultStepThreshold    = 900 * time.Millisecond
	DefaultPriority         = 128
	// The PI coefficients are in ppb of correction per ns of offset (P)
	// and per ns·s (I), independent of the sync rate. The defaults are
	// the servo's own (package servo): critically damped at 0.3 rad/s,
	// the tuning the linuxptp interop tests hold to.
	DefaultPIDFilterP = 0.6
	DefaultPIDFilterI = 0.09
)

// Selection policies.
const (
	PolicyAutomatic     = "automatic"
	PolicyManual        = "manual"
	PolicyManualStartup = "manual-startup"
)

// Clock control modes.
const (
	ClockSlewAndStep   = "slew-and-step"
	ClockStepAtStartup = "step-at-startup"
	ClockNoStep        = "no-step"
	ClockNoAdjust      = "no-adjust"
)

// Hotplug detection modes.
const (
	HotplugNetlink = "netlink"
	HotplugManual  = "manual"
)

// Modules are the sync modules the syntax knows. Whether a module is
// available in a build is the engine's business.
var modules = []string{"ptp", "freerun"}

// MaxFileSize bounds the configuration file; a larger one is refused
// rather than read into memory.
const MaxFileSize = 1 << 20

// maxLine bounds one line.
const maxLine = 4096

// Config is a parsed configuration.
type Config struct {
	// File is the file name used in error messages.
	File    string
	General General
	// Instances are the declared sync instances, in declaration order
	// (which is also the selection's final tie-break).
	Instances []Instance
}

// General holds the [general] options.
type General struct {
	SelectionPolicy string
	// SelectionInstance is the instance named by a manual policy.
	SelectionInstance string
	// SelectionLine is the line of the selection_policy option (0 when
	// defaulted), for errors about the named instance.
	SelectionLine    int
	SelectionHoldoff time.Duration
	// MessageLog is "stderr", "syslog" or a file path.
	MessageLog string
	// StatsLog and JSONStats are "" (off), "stdout", "stderr" or a path.
	StatsLog  string
	JSONStats string
	StatePath string

	ControlPath string
	ControlMode fs.FileMode

	ClockControl  string
	StepThreshold time.Duration
	PIDFilterP    float64
	PIDFilterI    float64
	Hotplug       string
}

// Instance is one sync instance's configuration, with [ptp]/[freerun]
// and [general] defaults already applied.
type Instance struct {
	Name   string
	Module string
	// Line is the line of its sync_module declaration.
	Line int

	Interface string
	Domain    int
	Mode      string // ptp: "slave" or "master"
	Priority  int

	ClockControl  string
	StepThreshold time.Duration
	PIDFilterP    float64
	PIDFilterI    float64
}

// Error is a configuration error at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Errorf returns an Error at line of file; the engine uses it for
// errors about a declared instance (an unavailable module).
func Errorf(file string, line int, format string, a ...any) error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, a...)}
}

// Default returns the configuration of an empty file (without
// instances).
func Default(file string) *Config {
	return &Config{
		File: file,
		General: General{
			SelectionPolicy:  PolicyAutomatic,
			SelectionHoldoff: DefaultSelectionHoldoff,
			MessageLog:       "stderr",
			StatePath:        DefaultStatePath,
			ControlPath:      DefaultControlPath,
			ControlMode:      DefaultControlMode,
			ClockControl:     ClockSlewAndStep,
			StepThreshold:    DefaultStepThreshold,
			PIDFilterP:       DefaultPIDFilterP,
			PIDFilterI:       DefaultPIDFilterI,
			Hotplug:          HotplugNetlink,
		},
	}
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	return Parse(path, b)
}

// line is one option line: a keyword and its values.
type line struct {
	no      int
	section string
	key     string
	args    []string
}

// Parse parses a configuration; file names it in errors.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	errAt := func(no int, format string, a ...any) error {
		return &Error{File: file, Line: no, Msg: fmt.Sprintf(format, a...)}
	}
	// Pass 1: split into sections and option lines.
	var lines []line
	sectionLine := map[string]int{}
	section := "general"
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxLine)
	no := 0
	for sc.Scan() {
		no++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if strings.HasPrefix(text, "[") {
			if !strings.HasSuffix(text, "]") {
				return nil, errAt(no, "malformed section header %q", text)
			}
			name := strings.TrimSpace(text[1 : len(text)-1])
			if !validName(name) {
				return nil, errAt(no, "bad section name %q", name)
			}
			if prev, dup := sectionLine[name]; dup {
				return nil, errAt(no, "section [%s] repeated (first at line %d)", name, prev)
			}
			sectionLine[name] = no
			section = name
			continue
		}
		if !utf8Printable(text) {
			return nil, errAt(no, "line contains control characters or invalid UTF-8")
		}
		f := strings.Fields(text)
		lines = append(lines, line{no: no, section: section, key: f[0], args: f[1:]})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errAt(no+1, "line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("config: %s: %w", file, err)
	}

	cfg := Default(file)
	g := &cfg.General
	// Pass 2: [general], which declares the instances.
	index := map[string]int{}
	for _, l := range lines {
		if l.section != "general" {
			continue
		}
		if err := parseGeneral(cfg, l, index, errAt); err != nil {
			return nil, err
		}
	}
	if len(cfg.Instances) == 0 {
		return nil, errAt(0, "no sync instances: declare one in [general], e.g. \"sync_module freerun fr1\"")
	}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		in.Priority = DefaultPriority
		in.ClockControl = g.ClockControl
		in.StepThreshold = g.StepThreshold
		in.PIDFilterP = g.PIDFilterP
		in.PIDFilterI = g.PIDFilterI
		if in.Module == "ptp" {
			in.Mode = "slave"
		}
	}
	// Pass 3: module defaults, then each instance's own section, so that
	// an instance section overrides [ptp] wherever it appears in the file.
	for _, pass := range []bool{true, false} {
		for _, l := range lines {
			if l.section == "general" {
				continue
			}
			isModule := l.section == "ptp" || l.section == "freerun"
			if isModule != pass {
				continue
			}
			if isModule {
				for i := range cfg.Instances {
					if cfg.Instances[i].Module == l.section {
						if err := parseInstance(&cfg.Instances[i], l, errAt); err != nil {
							return nil, err
						}
					}
				}
				// Check the option even with no instance of the module.
				probe := Instance{Module: l.section, Name: l.section}
				if err := parseInstance(&probe, l, errAt); err != nil {
					return nil, err
				}
				continue
			}
			i, ok := index[l.section]
			if !ok {
				return nil, errAt(sectionLine[l.section], "section [%s] is not a declared sync instance (declare it in [general] with \"sync_module ptp|freerun %s\")", l.section, l.section)
			}
			if err := parseInstance(&cfg.Instances[i], l, errAt); err != nil {
				return nil, err
			}
		}
	}
	// Empty instance sections are not in lines; check their names too,
	// reporting the first in the file.
	bad, badLine := "", 0
	for name, no := range sectionLine {
		if name == "general" || name == "ptp" || name == "freerun" {
			continue
		}
		if _, ok := index[name]; !ok && (badLine == 0 || no < badLine) {
			bad, badLine = name, no
		}
	}
	if badLine != 0 {
		return nil, errAt(badLine, "section [%s] is not a declared sync instance (declare it in [general] with \"sync_module ptp|freerun %s\")", bad, bad)
	}
	for _, in := range cfg.Instances {
		if in.Module == "ptp" && in.Interface == "" {
			return nil, errAt(in.Line, "ptp instance '%s' has no interface (set \"interface IF\" in [%s] or [ptp])", in.Name, in.Name)
		}
	}
	if g.SelectionInstance != "" {
		if _, ok := index[g.SelectionInstance]; !ok {
			return nil, errAt(g.SelectionLine, "selection_policy: sync instance '%s' is not declared", g.SelectionInstance)
		}
	}
	return cfg, nil
}

type errFunc func(no int, format string, a ...any) error

func want(l line, n int, errAt errFunc) error {
	if len(l.args) != n {
		return errAt(l.no, "%s: expects %d value(s), got %d", l.key, n, len(l.args))
	}
	return nil
}

func parseGeneral(cfg *Config, l line, index map[string]int, errAt errFunc) error {
	g := &cfg.General
	switch l.key {
	case "sync_module":
		if len(l.args) < 2 {
			return errAt(l.no, "sync_module: expects a module and at least one instance name")
		}
		mod := l.args[0]
		if !contains(modules, mod) {
			return errAt(l.no, "sync_module: unknown module '%s' (want %s)", mod, strings.Join(modules, " or "))
		}
		for _, name := range l.args[1:] {
			if !validName(name) || name == "general" || contains(modules, name) {
				return errAt(l.no, "sync_module: bad instance name '%s'", name)
			}
			if i, dup := index[name]; dup {
				return errAt(l.no, "sync_module: instance '%s' already declared at line %d", name, cfg.Instances[i].Line)
			}
			index[name] = len(cfg.Instances)
			cfg.Instances = append(cfg.Instances, Instance{Name: name, Module: mod, Line: l.no})
		}
	case "selection_policy":
		if len(l.args) == 0 {
			return errAt(l.no, "selection_policy: expects automatic, manual INSTANCE or manual-startup INSTANCE")
		}
		switch p := l.args[0]; p {
		case PolicyAutomatic:
			if len(l.args) != 1 {
				return errAt(l.no, "selection_policy: automatic takes no instance")
			}
			g.SelectionInstance = ""
		case PolicyManual, PolicyManualStartup:
			if len(l.args) != 2 {
				return errAt(l.no, "selection_policy: %s expects one instance name", p)
			}
			g.SelectionInstance = l.args[1]
		default:
			return errAt(l.no, "selection_policy: bad value '%s' (want automatic, manual or manual-startup)", p)
		}
		g.SelectionPolicy = l.args[0]
		g.SelectionLine = l.no
	case "selection_holdoff_interval":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		n, err := strconv.Atoi(l.args[0])
		if err != nil || n < 0 || n > 3600 {
			return errAt(l.no, "selection_holdoff_interval: bad value '%s' (want whole seconds, 0..3600)", l.args[0])
		}
		g.SelectionHoldoff = time.Duration(n) * time.Second
	case "message_log":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		g.MessageLog = l.args[0]
	case "stats_log", "json_stats":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		v := l.args[0]
		if v == "off" {
			v = ""
		}
		if l.key == "stats_log" {
			g.StatsLog = v
		} else {
			g.JSONStats = v
		}
	case "state_path":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		g.StatePath = l.args[0]
	case "control_path":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		p := l.args[0]
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "@") || len(p) > 107 {
			return errAt(l.no, "control_path: bad value '%s' (want an absolute path or @abstract name of at most 107 bytes)", p)
		}
		g.ControlPath = p
	case "control_socket_mode":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		m, err := strconv.ParseUint(l.args[0], 8, 32)
		if err != nil || m > 0o777 {
			return errAt(l.no, "control_socket_mode: bad value '%s' (want an octal mode such as 0660)", l.args[0])
		}
		g.ControlMode = fs.FileMode(m)
	case "clock_control":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		switch v := l.args[0]; v {
		case ClockSlewAndStep, ClockStepAtStartup, ClockNoStep, ClockNoAdjust:
			g.ClockControl = v
		default:
			return errAt(l.no, "clock_control: bad value '%s' (want slew-and-step, step-at-startup, no-step or no-adjust)", v)
		}
	case "step_threshold":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		d, err := parseSeconds(l.args[0])
		if err != nil {
			return errAt(l.no, "step_threshold: bad value '%s' (%v)", l.args[0], err)
		}
		g.StepThreshold = d
	case "pid_filter_p", "pid_filter_i":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		v, err := parseCoefficient(l.args[0])
		if err != nil {
			return errAt(l.no, "%s: bad value '%s' (%v)", l.key, l.args[0], err)
		}
		if l.key == "pid_filter_p" {
			g.PIDFilterP = v
		} else {
			g.PIDFilterI = v
		}
	case "hotplug_detection_mode":
		if err := want(l, 1, errAt); err != nil {
			return err
		}
		switch v := l.args[0]; v {
		case HotplugNetlink, HotplugManual:
			g.Hotplug = v
		default:
			return errAt(l.no, "hotplug_detection_mode: bad value '%s' (want netlink or manual)", v)
		}
	default:
		return unknownKeyword(l, "general", errAt)
	}
	return nil
}

// instanceKeys are the keywords an instance (or module) section takes.
var instanceKeys = []string{"interface", "priority", "ptp_domain", "ptp_mode", "pid_filter_p", "pid_filter_i"}

func parseInstance(in *Instance, l line, errAt errFunc) error {
	if !contains(instanceKeys, l.key) {
		return unknownKeyword(l, l.section, errAt)
	}
	if err := want(l, 1, errAt); err != nil {
		return err
	}
	v := l.args[0]
	switch l.key {
	case "interface":
		if len(v) > 15 || strings.ContainsAny(v, "/:") {
			return errAt(l.no, "interface: bad interface name '%s'", v)
		}
		in.Interface = v
	case "priority":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 255 {
			return errAt(l.no, "priority: bad value '%s' (want 0..255, lower is preferred)", v)
		}
		in.Priority = n
	case "ptp_domain", "ptp_mode":
		if in.Module != "ptp" {
			return errAt(l.no, "%s: not an option of %s instance '%s'", l.key, in.Module, in.Name)
		}
		if l.key == "ptp_domain" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 255 {
				return errAt(l.no, "ptp_domain: bad value '%s' (want 0..255)", v)
			}
			in.Domain = n
		} else {
			if v != "slave" && v != "master" {
				return errAt(l.no, "ptp_mode: bad value '%s' (want slave or master)", v)
			}
			in.Mode = v
		}
	case "pid_filter_p", "pid_filter_i":
		f, err := parseCoefficient(v)
		if err != nil {
			return errAt(l.no, "%s: bad value '%s' (%v)", l.key, v, err)
		}
		if l.key == "pid_filter_p" {
			in.PIDFilterP = f
		} else {
			in.PIDFilterI = f
		}
	}
	return nil
}

func unknownKeyword(l line, section string, errAt errFunc) error {
	return errAt(l.no, "unknown keyword '%s' in [%s]", l.key, section)
}

func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e6 {
		return 0, errors.New("want seconds, e.g. 0.9")
	}
	return time.Duration(f * float64(time.Second)), nil
}

func parseCoefficient(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e3 {
		return 0, errors.New("want a number from 0 to 1000")
	}
	return f, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func utf8Printable(s string) bool {
	for _, r := range s {
		if r == 0xFFFD || r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Instance returns the named instance.
func (c *Config) Instance(name string) (Instance, bool) {
	for _, in := range c.Instances {
		if in.Name == name {
			return in, true
		}
	}
	return Instance{}, false
}
