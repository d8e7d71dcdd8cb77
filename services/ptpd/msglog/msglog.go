// Package msglog is a log/slog handler that writes sfptpd's message log:
//
//	2024-03-16 19:39:42.114315: info: selected sync instance ptp1 ([none] was active for 0.000s)
//
// local time with microseconds, then one of the kernel's eight priority
// names, then the text. Monitoring that reads sfptpd's message log reads
// ptpd's the same way. A syslog variant hands each message to syslog at
// the matching priority.
package msglog

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Levels beyond slog's four, placed between and above them so that each
// of sfptpd's eight priorities has a slog.Level.
const (
	LevelDebug     = slog.LevelDebug
	LevelInfo      = slog.LevelInfo
	LevelNotice    = slog.Level(2)
	LevelWarning   = slog.LevelWarn
	LevelError     = slog.LevelError
	LevelCritical  = slog.Level(12)
	LevelAlert     = slog.Level(16)
	LevelEmergency = slog.Level(20)
)

// Priority is a syslog priority, 0 (emergency) to 7 (debug).
type Priority int

// PriorityOf maps a slog level onto sfptpd's priorities: each level
// takes the priority of the highest named level at or below it.
func PriorityOf(l slog.Level) Priority {
	switch {
	case l >= LevelEmergency:
		return 0
	case l >= LevelAlert:
		return 1
	case l >= LevelCritical:
		return 2
	case l >= LevelError:
		return 3
	case l >= LevelWarning:
		return 4
	case l >= LevelNotice:
		return 5
	case l >= LevelInfo:
		return 6
	}
	return 7
}

var priorityNames = [...]string{"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"}

// String is sfptpd's name for the priority.
func (p Priority) String() string {
	if p >= 0 && int(p) < len(priorityNames) {
		return priorityNames[p]
	}
	return "debug"
}

// TimeLayout is the message log's time stamp.
const TimeLayout = "2006-01-02 15:04:05.000000"

// Options configure a handler.
type Options struct {
	// Level is the lowest level written; nil means LevelInfo.
	Level slog.Leveler
	// Now stamps the lines; nil means time.Now. Tests fix it. The
	// record's own time is not used so that the stamp is taken when the
	// line is written, as sfptpd does.
	Now func() time.Time
}

// output is what handlers derived from one New share: the writer and
// the lock that makes each line one Write.
type output struct {
	mu   sync.Mutex
	w    io.Writer
	sysl SyslogWriter
}

// Handler is the message log handler. It is safe for concurrent use;
// handlers made by WithAttrs and WithGroup share its output and lock.
type Handler struct {
	out    *output
	opts   Options
	prefix string // rendered WithAttrs attributes
	group  string // open group name, "a.b."
}

// New returns a handler writing sfptpd's text lines to w, one Write per
// line.
func New(w io.Writer, opts *Options) slog.Handler {
	return newHandler(&output{w: w}, opts)
}

func newHandler(out *output, opts *Options) *Handler {
	h := &Handler{out: out}
	if opts != nil {
		h.opts = *opts
	}
	if h.opts.Level == nil {
		h.opts.Level = LevelInfo
	}
	if h.opts.Now == nil {
		h.opts.Now = time.Now
	}
	return h
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.opts.Level.Level()
}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	text := h.text(r)
	p := PriorityOf(r.Level)
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	if h.out.sysl != nil {
		return h.out.syslog(p, text)
	}
	line := make([]byte, 0, len(text)+48)
	line = h.opts.Now().Local().AppendFormat(line, TimeLayout)
	line = append(line, ": "...)
	line = append(line, p.String()...)
	line = append(line, ": "...)
	line = append(line, text...)
	line = append(line, '\n')
	_, err := h.out.w.Write(line)
	return err
}

// text renders the message and its attributes. An "err" attribute is
// appended as ", TEXT" (sfptpd's "..., strerror" habit); the others
// follow in parentheses as key=value, so a line stays plain text.
func (h *Handler) text(r slog.Record) string {
	var b strings.Builder
	b.WriteString(oneLine(r.Message))
	var errText string
	attrs := h.prefix
	r.Attrs(func(a slog.Attr) bool {
		if h.group == "" && (a.Key == "err" || a.Key == "error") && errText == "" {
			errText = oneLine(a.Value.Resolve().String())
			return true
		}
		attrs = appendAttr(attrs, h.group, a)
		return true
	})
	if errText != "" {
		b.WriteString(", ")
		b.WriteString(errText)
	}
	if attrs != "" {
		b.WriteString(" (")
		b.WriteString(attrs)
		b.WriteByte(')')
	}
	return b.String()
}

// appendAttr adds "key=value" to s, flattening groups as "g.key".
func appendAttr(s, group string, a slog.Attr) string {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			s = appendAttr(s, g, ga)
		}
		return s
	}
	if a.Equal(slog.Attr{}) {
		return s
	}
	if s != "" {
		s += ", "
	}
	return s + group + a.Key + "=" + quoteIfNeeded(valueText(v))
}

func valueText(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindFloat64:
		return strconv.FormatFloat(v.Float64(), 'g', -1, 64)
	}
	return v.String()
}

// quoteIfNeeded quotes values with blanks, separators or control
// characters so that the parenthesised list reads back unambiguously.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " ,()=\"\t\n\r") || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(s)
	}
	return s
}

// oneLine keeps a message on its line: sfptpd's lines hold no newlines,
// and a reader splits the file at them.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\n\r") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	for _, a := range as {
		h2.prefix = appendAttr(h2.prefix, h.group, a)
	}
	return &h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group += name + "."
	return &h2
}
