// Package config reads ptpd's configuration file, written in sfptpd's
// syntax: a [general] section declaring the sync instances with
// "sync_module MODULE NAME..." lines, one section per module ([ptp],
// [freerun], [ntp], [crny], [pps], [gps]) holding defaults for every
// instance of that module, and one [NAME] section per instance.
//
// Every keyword sfptpd accepts loads. Keywords that concern hardware or
// facilities ptpd does not drive are accepted, their values checked, and
// recorded in Config.Ignored so that the daemon can say once what it is
// not doing. A wrong value or an unknown keyword is an error naming the
// file and line, because the file is edited by hand and a daemon that
// starts with a half-understood configuration disciplines clocks the
// wrong way.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Defaults, as sfptpd documents them where it has the same option.
const (
	DefaultControlPath      = "/run/sfptpd/control-v1.sock"
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
	// DefaultEpochGuard is sfptpd's default epoch_guard.
	DefaultEpochGuard = "correct-clock"
	// OutlierFilterSizeMin and OutlierFilterSizeMax bound
	// outlier_filter_size, as in sfptpd.
	OutlierFilterSizeMin = 5
	OutlierFilterSizeMax = 60
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

// ClockSystem is Instance.Clock for an instance on the system clock
// ("interface system" in a freerun section).
const ClockSystem = "system"

// Modules are the sync modules the syntax knows, in sfptpd's order.
// Whether a module is available at run time is the engine's business.
var modules = []string{"freerun", "ptp", "pps", "ntp", "crny", "gps"}

// Modules returns the sync module names the syntax knows.
func Modules() []string { return append([]string(nil), modules...) }

// DefaultNTPConfFiles are the files whose server and pool lines give an
// ntp or crny instance its servers when the instance names none: the box
// runs no ntpd or chronyd, but a file copied from a host that did says
// which servers that host used.
var DefaultNTPConfFiles = []string{"/etc/ntp.conf", "/etc/chrony/chrony.conf", "/etc/chrony.conf"}

// MaxFileSize bounds the configuration file; a larger one is refused
// rather than read into memory.
const MaxFileSize = 1 << 20

// maxLine bounds one line; maxTokens bounds the values on one line.
const (
	maxLine   = 4096
	maxTokens = 64
	// maxServers bounds the servers taken from an ntp.conf or
	// chrony.conf; a client has no use for more.
	maxServers = 64
)

// Config is a parsed configuration.
type Config struct {
	// File is the file name used in error messages.
	File    string
	General General
	// Instances are the declared sync instances, in declaration order
	// (which is also the selection's final tie-break).
	Instances []Instance
	// Ignored lists, in file order, the keywords that were accepted but
	// that ptpd does not act on (or acts on differently, as Reason
	// says). The daemon logs each once and "ptpd -t" prints them.
	Ignored []IgnoredKeyword
	// Warnings are observations about the file that are not errors:
	// an ntp instance without servers, a ptp instance without an
	// interface, an empty section naming no instance.
	Warnings []Warning
	// Lexed is the file as sfptpd reads it back into its "config"
	// state file: each section header and each option line as tokens
	// (quotes and escapes resolved, the keyword's dashes made
	// underscores), in file order, without comments or blank lines.
	Lexed []LexedLine
}

// LexedLine is a section header (Section set) or an option line.
type LexedLine struct {
	Section string
	Tokens  []string
}

// Confidential reports whether a keyword's values are secrets that
// copies of the configuration redact, as sfptpd redacts ntp_key.
func Confidential(keyword string) bool { return keyword == "ntp_key" }

// IgnoredKeyword is one accepted keyword that ptpd does not act on.
type IgnoredKeyword struct {
	File    string
	Line    int
	Section string
	Keyword string
	Reason  string
}

// String is the daemon's log line for it.
func (i IgnoredKeyword) String() string {
	return fmt.Sprintf("config: ignoring keyword '%s' at %s:%d: %s", i.Keyword, i.File, i.Line, i.Reason)
}

// Warning is an observation about the configuration; Line is 0 when it
// concerns the file as a whole.
type Warning struct {
	File    string
	Line    int
	Section string
	Msg     string
}

// String is the daemon's log line for it.
func (w Warning) String() string {
	if w.Line <= 0 {
		return fmt.Sprintf("config: %s: %s", w.File, w.Msg)
	}
	return fmt.Sprintf("config: %s:%d: %s", w.File, w.Line, w.Msg)
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

	// PersistentClockCorrection is persistent_clock_correction: start
	// each clock from its saved frequency correction (default on).
	PersistentClockCorrection bool
	// ClockReadonly lists the clocks (names, MACs, clock ids, interface
	// names, "system") that must never be stepped or slewed.
	ClockReadonly []string
	// ClockList is clock_list: nil means every clock may be disciplined.
	ClockList []string
	// LimitFreqAdjPPB is limit_freq_adj (0: no limit beyond the clock's).
	LimitFreqAdjPPB float64
	// TraceLevel is trace_level's general level.
	TraceLevel int
	// Daemon and Lock are sfptpd's daemon and lock; ptpd only reports
	// them (an init system supervises it; one process per box).
	Daemon bool
	Lock   bool
	// EpochGuard is epoch_guard's value.
	EpochGuard string
	// TestMode is test_mode: the testmode control command is honoured
	// only when it is set, as in sfptpd.
	TestMode bool
}

// Instance is one sync instance's configuration, with the module
// section's and [general]'s values already applied.
type Instance struct {
	Name   string
	Module string
	// Line is the line of its sync_module declaration.
	Line int

	// Interface is the network interface; Clock is set instead when the
	// section names a clock (ClockSystem for "interface system").
	Interface string
	Clock     string
	Domain    int
	// Mode is "slave" or "master" for ptp; ModeWord is ptp_mode's word
	// as written ("master-only"), for messages.
	Mode     string
	ModeWord string
	Priority int

	ClockControl  string
	StepThreshold time.Duration
	PIDFilterP    float64
	PIDFilterI    float64
	// MaxFreqPPB is [general] limit_freq_adj (0: the module's default).
	MaxFreqPPB float64

	// SyncThreshold is sync_threshold (0: the module's default).
	SyncThreshold time.Duration
	// Timestamping is ptp's timestamping: "auto", "hw" or "sw".
	Timestamping string
	// TxLatency and RxLatency are ptp_tx_latency and ptp_rx_latency.
	TxLatency time.Duration
	RxLatency time.Duration
	// Profile is ptp_profile ("" when not given).
	Profile string
	// The PTP intervals (log2 seconds) and the announce receipt
	// timeout; nil leaves the ptp package's default.
	AnnounceInterval *int
	SyncInterval     *int
	DelayReqInterval *int
	AnnounceTimeout  *int
	// Priority1 and Priority2 are ptp_bmc_priority1/2 (nil: default).
	Priority1 *int
	Priority2 *int
	// DelayFilter is mpd_filter_size (0: the ptp package's default).
	DelayFilter int
	// OutlierFilterSize is outlier_filter_size (0: the ptp package's
	// default, sfptpd's 60) and OutlierFilterAdaption
	// outlier_filter_adaption (nil: the default, sfptpd's 1.0).
	OutlierFilterSize     int
	OutlierFilterAdaption *float64

	// NTPServers are the servers of an ntp or crny instance, as
	// HOST[:PORT]; NTPServersFrom names the file they were taken from
	// when the section had no ntp_server line ("" otherwise).
	NTPServers     []string
	NTPServersFrom string
	// NTPPollInterval is ntp_poll_interval (0: the module's default).
	NTPPollInterval time.Duration

	// TimeOfDay is a pps section's time_of_day instance.
	TimeOfDay string
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

// Options adjusts parsing.
type Options struct {
	// NTPConfFiles are the candidate files for an ntp or crny instance
	// without ntp_server lines; the first that exists is read. Nil
	// means DefaultNTPConfFiles; an empty, non-nil slice reads none.
	NTPConfFiles []string
	// DefaultInterface is sfptpd's -i: the interface of every ptp, pps
	// and freerun instance whose sections name none ("" for none).
	DefaultInterface string
	// DefaultDomain is sfptpd's -D: the PTP domain of every ptp
	// instance whose sections set none (-1 for none).
	DefaultDomain int
}

// DefaultOptions are the daemon's options.
func DefaultOptions() Options {
	return Options{NTPConfFiles: append([]string(nil), DefaultNTPConfFiles...), DefaultDomain: -1}
}

// Default returns the configuration of an empty file (without
// instances).
func Default(file string) *Config {
	return &Config{
		File: file,
		General: General{
			SelectionPolicy:           PolicyAutomatic,
			SelectionHoldoff:          DefaultSelectionHoldoff,
			MessageLog:                "stderr",
			StatePath:                 DefaultStatePath,
			ControlPath:               DefaultControlPath,
			ControlMode:               DefaultControlMode,
			ClockControl:              ClockSlewAndStep,
			StepThreshold:             DefaultStepThreshold,
			PIDFilterP:                DefaultPIDFilterP,
			PIDFilterI:                DefaultPIDFilterI,
			Hotplug:                   HotplugNetlink,
			PersistentClockCorrection: true,
			Lock:                      true,
			EpochGuard:                DefaultEpochGuard,
		},
	}
}

// Load reads and parses the file at path with DefaultOptions.
func Load(path string) (*Config, error) {
	return LoadOptions(path, DefaultOptions())
}

// LoadOptions reads and parses the file at path.
func LoadOptions(path string, opts Options) (*Config, error) {
	b, err := readBounded(path)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseOptions(path, b, opts)
}

// readBounded reads at most MaxFileSize bytes of path.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	return b, nil
}

// Parse parses a configuration with DefaultOptions; file names it in
// errors.
func Parse(file string, data []byte) (*Config, error) {
	return ParseOptions(file, data, DefaultOptions())
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

// StartError returns, as an *Error at its sync_module line, the first
// instance that cannot start for a reason in the file (a ptp instance
// without an interface), or nil. Parse accepts such a file, as sfptpd's
// configuration test does, so that "ptpd -t" can list everything; the
// daemon calls StartError before starting the instances.
func (c *Config) StartError() error {
	for _, in := range c.Instances {
		if in.Module == "ptp" && in.Interface == "" {
			return Errorf(c.File, in.Line, "ptp instance '%s' has no interface (set \"interface IF\" in [%s] or [ptp])", in.Name, in.Name)
		}
	}
	return nil
}

// IgnoredKeywords returns the distinct ignored keywords in file order.
func (c *Config) IgnoredKeywords() []string {
	var out []string
	seen := map[string]bool{}
	for _, ig := range c.Ignored {
		if !seen[ig.Keyword] {
			seen[ig.Keyword] = true
			out = append(out, ig.Keyword)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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

// strip removes a trailing comment from a section header line.
func strip(s string) string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
