package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed assets/page.html assets/page.css assets/page.js assets/uPlot.iife.min.js assets/uPlot.min.css assets/VERSION
var assets embed.FS

// keepalive is how often an idle event stream gets a comment line, so
// that proxies and the browser see it alive.
const keepalive = 15 * time.Second

// writeTimeout bounds each write to an event stream (a reader that
// stopped reading is dropped).
const writeTimeout = 10 * time.Second

// document is the page around its snapshot: head, then the snapshot's
// JSON, then tail; csp is its Content-Security-Policy.
type document struct {
	head, tail []byte
	csp        string
}

func asset(name string) string {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		// The files are embedded at build time; a missing one is a
		// broken build, not a run-time condition.
		panic(err)
	}
	return string(b)
}

// buildDocument inlines the CSS and scripts into the page template. The
// scripts are allowed by their hashes: nothing else can run.
func buildDocument() document {
	js, ujs := asset("page.js"), asset("uPlot.iife.min.js")
	page := strings.NewReplacer(
		"{{UPLOT_CSS}}", asset("uPlot.min.css"),
		"{{CSS}}", asset("page.css"),
		"{{UPLOT_JS}}", ujs,
		"{{JS}}", js,
		"{{UPLOT_VERSION}}", strings.TrimSpace(asset("VERSION")),
	).Replace(asset("page.html"))
	head, tail, ok := strings.Cut(page, "{{SNAPSHOT}}")
	if !ok {
		panic("web: page.html lacks {{SNAPSHOT}}")
	}
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return document{
		head: []byte(head), tail: []byte(tail),
		csp: "default-src 'none'; script-src " + hash(ujs) + " " + hash(js) +
			"; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	}
}

// Handler serves the page and its data:
//
//	GET /              the page
//	GET /api/snapshot  the snapshot as JSON; ?since=T (seconds since
//	                   the epoch) returns only the history after T
//	GET /api/events    server-sent events: one snapshot per round, the
//	                   first with the whole history, then only the newer
//
// The URLs in the page are relative: mount the handler at a path that
// ends in a slash (http.StripPrefix for a prefix).
func (p *Page) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.servePage)
	mux.HandleFunc("GET /api/snapshot", p.serveSnapshot)
	mux.HandleFunc("GET /api/events", p.serveEvents)
	return mux
}

func headers(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// writePage writes the page with the current snapshot embedded.
func (p *Page) writePage(w *bytes.Buffer) error {
	b, err := json.Marshal(p.Snapshot(0))
	if err != nil {
		return fmt.Errorf("encoding the snapshot: %w", err)
	}
	w.Write(p.doc.head)
	// json.Marshal escapes <, > and &: the snapshot cannot end the
	// script element it sits in.
	w.Write(b)
	w.Write(p.doc.tail)
	return nil
}

func (p *Page) servePage(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := p.writePage(&buf); err != nil {
		p.opts.Logger.Error("status page", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	headers(w, "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", p.doc.csp)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Write(buf.Bytes())
}

func parseSince(r *http.Request) (float64, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("since: want seconds since the epoch, got %q", v)
	}
	return f, nil
}

func (p *Page) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	since, err := parseSince(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := json.Marshal(p.Snapshot(since))
	if err != nil {
		p.opts.Logger.Error("status page: encoding the snapshot", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	headers(w, "application/json")
	w.Write(b)
}

// errStreams is the answer to one event stream too many.
var errStreams = errors.New("too many event streams")

func (p *Page) subscribe() (chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.streams) >= p.opts.MaxStreams {
		return nil, errStreams
	}
	ch := make(chan struct{}, 1)
	p.streams[ch] = struct{}{}
	return ch, nil
}

func (p *Page) unsubscribe(ch chan struct{}) {
	p.mu.Lock()
	delete(p.streams, ch)
	p.mu.Unlock()
}

// serveEvents streams one snapshot per round. Each carries the history
// after the last sample this stream sent, so a slow reader skips rounds
// but loses no samples.
func (p *Page) serveEvents(w http.ResponseWriter, r *http.Request) {
	ch, err := p.subscribe()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer p.unsubscribe(ch)
	rc := http.NewResponseController(w)
	headers(w, "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var since float64
	write := func(b []byte) error {
		// A server's WriteTimeout would end the stream; each write gets
		// its own deadline instead (where the writer supports it).
		if err := rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	send := func() error {
		s := p.Snapshot(since)
		if n := len(s.History.T); n > 0 {
			since = s.History.T[n-1]
		}
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("encoding the snapshot: %w", err)
		}
		return write(append(append([]byte("data: "), b...), '\n', '\n'))
	}
	if err := write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if err := send(); err != nil {
		return
	}
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		case <-ch:
			if err := send(); err != nil {
				p.opts.Logger.Debug("status page: event stream ended", "remote", r.RemoteAddr, "err", err)
				return
			}
		case <-tick.C:
			if err := write([]byte(": keepalive\n\n")); err != nil {
				return
			}
		}
	}
}
