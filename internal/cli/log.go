package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// Logging is the log level a command line asks for: -log-level LEVEL
// (debug, info, warn, error, or slog's forms such as warn+2) and the
// program's -v spellings, which mean -log-level debug. Where both are
// given, the later one on the command line wins.
type Logging struct {
	level slog.Level
}

// LogFlags adds -log-level and, under each of verboseNames (ptpd has
// -v and --verbose; the others -v), the debug switch to fs. The level is
// info until a flag says otherwise.
func LogFlags(fs *flag.FlagSet, verboseNames ...string) *Logging {
	l := &Logging{level: slog.LevelInfo}
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
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l.level}))
}

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
