package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// LogRecord is one log record a Logs handler kept.
type LogRecord struct {
	Level slog.Level
	Msg   string
	// Attrs holds every attribute, those added with With included, as
	// its value's String.
	Attrs map[string]string
}

// Logs is a slog handler that keeps every record, at every level, so
// that a test can assert a log line's exact text. It is safe for
// concurrent use; handlers made by WithAttrs share their parent's records.
type Logs struct {
	attrs []slog.Attr
	root  *logsRoot
}

type logsRoot struct {
	mu   sync.Mutex
	recs []LogRecord
}

// NewLogs returns an empty Logs.
func NewLogs() *Logs { return &Logs{root: &logsRoot{}} }

// Enabled implements slog.Handler: every level is kept.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	rec := LogRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	l.root.mu.Lock()
	l.root.recs = append(l.root.recs, rec)
	l.root.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler.
func (l *Logs) WithAttrs(as []slog.Attr) slog.Handler {
	return &Logs{attrs: append(append([]slog.Attr(nil), l.attrs...), as...), root: l.root}
}

// WithGroup implements slog.Handler; groups are flattened.
func (l *Logs) WithGroup(string) slog.Handler { return l }

// Records returns a copy of every record so far.
func (l *Logs) Records() []LogRecord {
	l.root.mu.Lock()
	defer l.root.mu.Unlock()
	return append([]LogRecord(nil), l.root.recs...)
}

// Find returns the records whose message is msg.
func (l *Logs) Find(msg string) []LogRecord {
	var out []LogRecord
	for _, r := range l.Records() {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// Dump returns the records a line each, for a failing test's message.
func (l *Logs) Dump() string {
	var b strings.Builder
	for _, r := range l.Records() {
		fmt.Fprintf(&b, "%s %q %v\n", r.Level, r.Msg, r.Attrs)
	}
	return b.String()
}
