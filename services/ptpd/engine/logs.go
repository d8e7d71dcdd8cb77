package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"path/filepath"
	"sync"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/msglog"
)

// Sink is one log destination: a standard stream, or a file that
// logrotate can reopen. A Write is one whole line and holds the lock,
// and Reopen swaps files under the same lock, so a rotation never cuts
// or loses a line: lines before it go to the old (renamed) file, lines
// after it to the new one.
type Sink struct {
	path string // "" for a stream
	mu   sync.Mutex
	w    io.Writer
	f    *os.File
}

// openSink opens spec: "stdout", "stderr" or a file path (appended to,
// created 0644 with its parents as sfptpd does).
func openSink(spec string, stdout, stderr io.Writer) (*Sink, error) {
	switch spec {
	case "stdout":
		return &Sink{w: stdout}, nil
	case "stderr":
		return &Sink{w: stderr}, nil
	}
	s := &Sink{path: spec}
	f, err := s.open()
	if err != nil {
		return nil, err
	}
	s.f, s.w = f, f
	return s, nil
}

func (s *Sink) open() (*os.File, error) {
	// On the appliance /run is an empty tmpfs at every boot: make the
	// directory rather than fail to start.
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Write writes p whole.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Reopen opens the path again (logrotate has usually renamed the old
// file) and then closes the old file. On failure the old file stays in
// use, so lines keep going somewhere.
func (s *Sink) Reopen() error {
	if s == nil || s.path == "" {
		return nil
	}
	f, err := s.open()
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.f
	s.f, s.w = f, f
	s.mu.Unlock()
	return old.Close()
}

// Close closes a file sink.
func (s *Sink) Close() error {
	if s == nil || s.f == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}

// Path returns the file path ("" for a stream).
func (s *Sink) Path() string { return s.path }

// Logs are the message log, the text stats log and the json_stats log.
type Logs struct {
	// Message receives the daemon's log lines (a slog handler writes
	// to it).
	Message io.Writer
	msg     *Sink
	sysl    *syslog.Writer
	// Stats and JSON are nil when off.
	Stats *Sink
	JSON  *Sink
	// Fallback is set when message_log syslog found no syslog daemon
	// and the messages went to stderr instead: the daemon logs it once
	// as a warning, on the log it fell back to.
	Fallback string
}

// SyslogDialer connects to the local syslog daemon; nil means
// log/syslog's own search of the usual sockets.
type SyslogDialer func() (*syslog.Writer, error)

// OpenLogs opens the logs g names. message_log "syslog" uses the local
// syslog daemon, and falls back to stderr when there is none: a box
// without syslog still has a message log, and a daemon that would not
// start for want of one would be worse than one that says so once.
func OpenLogs(g config.General, stdout, stderr io.Writer) (*Logs, error) {
	return OpenLogsWith(g, stdout, stderr, nil)
}

// OpenLogsWith is OpenLogs with the syslog connection made by dial.
func OpenLogsWith(g config.General, stdout, stderr io.Writer, dial SyslogDialer) (*Logs, error) {
	l := &Logs{}
	if dial == nil {
		dial = func() (*syslog.Writer, error) { return syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "ptpd") }
	}
	var err error
	spec := g.MessageLog
	if spec == "syslog" {
		l.sysl, err = dial()
		if err == nil {
			l.Message = l.sysl
		} else {
			l.Fallback = fmt.Sprintf("message_log syslog: no syslog daemon (%v); logging to stderr", err)
			l.sysl, spec = nil, "stderr"
		}
	}
	if l.sysl == nil {
		if l.msg, err = openSink(spec, stdout, stderr); err != nil {
			return nil, fmt.Errorf("message_log: %w", err)
		}
		l.Message = l.msg
	}
	if g.StatsLog != "" {
		if l.Stats, err = openSink(g.StatsLog, stdout, stderr); err != nil {
			l.Close()
			return nil, fmt.Errorf("stats_log: %w", err)
		}
	}
	if g.JSONStats != "" {
		if l.JSON, err = openSink(g.JSONStats, stdout, stderr); err != nil {
			l.Close()
			return nil, fmt.Errorf("json_stats: %w", err)
		}
	}
	return l, nil
}

// Handler returns the slog handler of the message log in sfptpd's
// format: syslog at each message's priority for "message_log syslog",
// sfptpd's text lines otherwise. level nil means info.
func (l *Logs) Handler(level slog.Leveler) slog.Handler {
	opts := &msglog.Options{Level: level}
	if l.sysl != nil {
		return msglog.NewSyslog(l.sysl, opts)
	}
	return msglog.New(l.Message, opts)
}

// Rotate reopens every log file (logrotate, SIGHUP).
func (l *Logs) Rotate() error {
	if l == nil {
		return nil
	}
	return errors.Join(l.msg.Reopen(), l.Stats.Reopen(), l.JSON.Reopen())
}

// Close closes the files.
func (l *Logs) Close() error {
	if l == nil {
		return nil
	}
	var errs []error
	if l.sysl != nil {
		errs = append(errs, l.sysl.Close())
	}
	return errors.Join(append(errs, l.msg.Close(), l.Stats.Close(), l.JSON.Close())...)
}
