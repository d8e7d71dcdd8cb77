package logring

import (
	"context"
	"errors"
	"log/slog"
)

// Tee returns a handler that passes every record to h and, at level and
// above, writes it into ring as one line of slog's text form (the form
// the daemons log in). Records below level that h takes still reach h.
func Tee(h slog.Handler, ring *Ring, level slog.Leveler) slog.Handler {
	return &tee{h: h, ring: ring, level: level, text: slog.NewTextHandler(ringWriter{ring}, &slog.HandlerOptions{Level: level})}
}

type tee struct {
	h     slog.Handler
	ring  *Ring
	level slog.Leveler
	text  slog.Handler
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= t.level.Level() || t.h.Enabled(ctx, l)
}

func (t *tee) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if r.Level >= t.level.Level() {
		// The text handler writes one record in one Write.
		errs = append(errs, t.text.Handle(ctx, r.Clone()))
	}
	if t.h.Enabled(ctx, r.Level) {
		errs = append(errs, t.h.Handle(ctx, r))
	}
	return errors.Join(errs...)
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	return &tee{h: t.h.WithAttrs(as), ring: t.ring, level: t.level, text: t.text.WithAttrs(as)}
}

func (t *tee) WithGroup(name string) slog.Handler {
	return &tee{h: t.h.WithGroup(name), ring: t.ring, level: t.level, text: t.text.WithGroup(name)}
}

// ringWriter takes the text handler's output, one record per Write.
type ringWriter struct{ r *Ring }

func (w ringWriter) Write(p []byte) (int, error) {
	w.r.Append(string(p))
	return len(p), nil
}
