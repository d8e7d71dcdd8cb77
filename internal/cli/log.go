package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/tickbox-fw/tickbox/internal/logring"
)

// Logging is the log level a command line asks for: -log-level LEVEL
// (debug, info, warn, error, or slog's forms such as warn+2) and the
// program's -v spellings, which mean -log-level debug. Where both are
// given, the later one on the command line wins.
//
// The loggers it makes also keep the recent lines in a ring
// (internal/logring) at the same level, which the daemon hands its
// registry (ctl.Options.LogRing) for the log-get command.
type Logging struct {
	level slog.Level
	ring  *logring.Ring
}

// LogFlags adds -log-level and, under each of verboseNames (ptpd has
// -v and --verbose; the others -v), the debug switch to fs. The level is
// info until a flag says otherwise.
func LogFlags(fs *flag.FlagSet, verboseNames ...string) *Logging {
	l := &Logging{level: slog.LevelInfo, ring: logring.New(logring.DefaultLines, logring.DefaultBytes)}
	fs.Var(levelFlag{l}, "log-level", "log `LEVEL`: debug, info (the default), warn or error")
	for _, n := range verboseNames {
		fs.Var(verboseFlag{l}, n, "debug logging (-log-level debug)")
	}
	return l
}

// Level is the level asked for.
func (l *Logging) Level() slog.Level { return l.level }

// Logger returns a logger writing slog's text form to w at the level
// asked for: what every daemon but ptpd (whose sfptpd message_log
// chooses its own handler) logs with.
func (l *Logging) Logger(w io.Writer) *slog.Logger {
	return l.Wrap(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l.level}))
}

// Wrap returns a logger writing to h and into the ring, for a daemon
// with a handler of its own (ptpd's message_log).
func (l *Logging) Wrap(h slog.Handler) *slog.Logger {
	return slog.New(logring.Tee(h, l.ring, l.level))
}

// Ring is the ring of recent log lines the loggers write into.
func (l *Logging) Ring() *logring.Ring { return l.ring }

// ParseLevel parses a level name as -log-level takes it.
func ParseLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return lv, nil
}

type levelFlag struct{ l *Logging }

func (f levelFlag) String() string {
	if f.l == nil {
		return slog.LevelInfo.String()
	}
	return strings.ToLower(f.l.level.String())
}

func (f levelFlag) Set(s string) error {
	lv, err := ParseLevel(s)
	if err != nil {
		return err
	}
	f.l.level = lv
	return nil
}

// verboseFlag is a boolean flag: -v sets debug, -v=false info.
type verboseFlag struct{ l *Logging }

func (f verboseFlag) IsBoolFlag() bool { return true }

func (f verboseFlag) String() string {
	if f.l == nil {
		return "false"
	}
	return fmt.Sprint(f.l.level <= slog.LevelDebug)
}

func (f verboseFlag) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	f.l.level = slog.LevelInfo
	if on {
		f.l.level = slog.LevelDebug
	}
	return nil
}
