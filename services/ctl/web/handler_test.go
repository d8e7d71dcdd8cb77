package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// renderOK renders p's page and checks it is one self-contained
// document with the snapshot in its one JSON script element.
func renderOK(t testing.TB, p *Page) string {
	t.Helper()
	var b bytes.Buffer
	if err := p.writePage(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	// Three script elements: the snapshot, uPlot, the page's script;
	// and nothing from a daemon may open or close one.
	if n := strings.Count(strings.ToLower(page), "<script"); n != 3 {
		t.Fatalf("%d <script in the page", n)
	}
	if n := strings.Count(strings.ToLower(page), "</script"); n != 3 {
		t.Fatalf("%d </script in the page", n)
	}
	start := strings.Index(page, `<script type="application/json" id="initial">`)
	end := strings.Index(page[start:], "</script>")
	if start < 0 || end < 0 {
		t.Fatal("no snapshot element")
	}
	var s Snapshot
	if err := json.Unmarshal([]byte(page[start+len(`<script type="application/json" id="initial">`):start+end]), &s); err != nil {
		t.Fatalf("embedded snapshot: %v", err)
	}
	return page
}

func TestHandler(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	p := New(healthy(), Options{Logger: quiet(), Now: clk.Now})
	for i := 0; i < 3; i++ {
		p.Poll(context.Background())
		clk.Add(time.Second)
	}
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()

	tests := []struct {
		method, path string
		code         int
		ctype        string
		check        func(t *testing.T, h http.Header, body string)
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", func(t *testing.T, h http.Header, body string) {
			for _, want := range []string{`<meta name="viewport" content="width=device-width, initial-scale=1">`, "uPlot", `"round":3`, "Plots drawn with uPlot 1.6.32"} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			// No external assets: nothing is loaded from anywhere but
			// this handler.
			if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(body); m != "" {
				t.Errorf("external reference %q", m)
			}
			if m := regexp.MustCompile(`(?i)@import|url\(\s*["']?https?:`).FindString(body); m != "" {
				t.Errorf("external CSS %q", m)
			}
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") || strings.Contains(csp, "script-src 'unsafe-inline'") {
				t.Errorf("CSP %q", csp)
			}
		}},
		{"GET", "/api/snapshot", 200, "application/json", func(t *testing.T, _ http.Header, body string) {
			var s Snapshot
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatal(err)
			}
			if s.Round != 3 || !s.History.Full || len(s.History.T) != 3 || s.PTP.Selected != "ptp1" || len(s.Services) != 4 || s.IntervalMS != 1000 || s.HistoryS != 600 {
				t.Errorf("snapshot %+v", s)
			}
		}},
		{"GET", "/api/snapshot?since=1767323046.5", 200, "application/json", func(t *testing.T, _ http.Header, body string) {
			var s Snapshot
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatal(err)
			}
			if s.History.Full || len(s.History.T) != 1 || s.History.T[0] != 1767323047 {
				t.Errorf("history %+v", s.History)
			}
		}},
		{"GET", "/api/snapshot?since=x", 400, "text/plain; charset=utf-8", func(t *testing.T, _ http.Header, body string) {
			if !strings.Contains(body, `since: want seconds since the epoch, got "x"`) {
				t.Errorf("body %q", body)
			}
		}},
		{"GET", "/api/snapshot?since=NaN", 400, "text/plain; charset=utf-8", nil},
		{"GET", "/other", 404, "text/plain; charset=utf-8", nil},
		{"POST", "/", 405, "text/plain; charset=utf-8", nil},
		{"POST", "/api/snapshot", 405, "text/plain; charset=utf-8", nil},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != tc.ctype {
				t.Fatalf("%d %q, want %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.code, tc.ctype, body)
			}
			if tc.check != nil {
				tc.check(t, resp.Header, string(body))
			}
		})
	}
}

// sseReader reads one event stream's data lines.
type sseReader struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

func openStream(t *testing.T, url string) *sseReader {
	t.Helper()
	resp, err := http.Get(url + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sseReader{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next data event's snapshot, skipping retry lines and
// comments.
func (s *sseReader) next() Snapshot {
	s.t.Helper()
	type line struct {
		text string
		err  error
	}
	for {
		ch := make(chan line, 1)
		go func() { l, err := s.r.ReadString('\n'); ch <- line{l, err} }()
		var l line
		select {
		case l = <-ch:
		case <-time.After(10 * time.Second):
			s.t.Fatal("no event in 10 s")
		}
		if l.err != nil {
			s.t.Fatalf("reading the stream: %v", l.err)
		}
		data, ok := strings.CutPrefix(l.text, "data: ")
		if !ok {
			continue
		}
		var snap Snapshot
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			s.t.Fatalf("event %q: %v", data, err)
		}
		return snap
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f := healthy()
	p := New(f, Options{Logger: quiet(), Now: clk.Now, MaxStreams: 2})
	round := func() { p.Poll(context.Background()); clk.Add(time.Second) }
	round()
	round()
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close) // after the streams' cleanups

	st := openStream(t, srv.URL)
	steps := []struct {
		name string
		do   func()
		// want: round, full, samples, mdiod up
		round   uint64
		full    bool
		samples int
		mdiodUp bool
	}{
		{"first event: the whole history", func() {}, 2, true, 2, true},
		{"a round: only its sample", round, 3, false, 1, true},
		{"mdiod goes down", func() { f.setDown("mdiod", "connect: connection refused"); round() }, 4, false, 1, false},
		{"mdiod is back", func() { f.setDown("mdiod", ""); round() }, 5, false, 1, true},
	}
	for _, s := range steps {
		s.do()
		snap := st.next()
		up := false
		for _, sv := range snap.Services {
			if sv.Service == "mdiod" {
				up = sv.Up
			}
		}
		if snap.Round != s.round || snap.History.Full != s.full || len(snap.History.T) != s.samples || up != s.mdiodUp {
			t.Errorf("%s: round %d full %v samples %d mdiod up %v, want %d %v %d %v", s.name, snap.Round, snap.History.Full, len(snap.History.T), up, s.round, s.full, s.samples, s.mdiodUp)
		}
	}

	// A reader that missed rounds gets all their samples at once.
	round()
	round()
	round()
	got := 0
	for got < 3 {
		snap := st.next()
		if snap.History.Full {
			t.Fatal("full history again")
		}
		got += len(snap.History.T)
	}
	if got != 3 {
		t.Errorf("%d samples for three rounds", got)
	}

	// The stream limit: one more is fine, then 503 (the page polls).
	openStream(t, srv.URL)
	resp, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third stream: %d", resp.StatusCode)
	}
}

// TestEventsEnd: the streams end when the poller stops, and a closed
// client's stream is removed.
func TestEventsEnd(t *testing.T) {
	t.Parallel()
	p := New(healthy(), Options{Logger: quiet(), Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close) // after the streams' cleanups
	a := openStream(t, srv.URL)
	b := openStream(t, srv.URL)
	a.next()
	b.next()
	a.resp.Body.Close()
	streams := func() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.streams) }
	testutil.WaitFor(t, "the closed stream removed", 10*time.Second, func() bool { return streams() == 1 })
	cancel()
	<-done
	// b's stream ends: reading reaches EOF.
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, b.r); ended <- err }()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open after Run returned")
	}
	testutil.WaitFor(t, "no streams", 10*time.Second, func() bool { return streams() == 0 })
}

// TestAssets: the vendored uPlot is the version VERSION names, with its
// licence, and the page's script cannot be cut short by it.
func TestAssets(t *testing.T) {
	t.Parallel()
	version := strings.TrimSpace(asset("VERSION"))
	if version != "1.6.32" {
		t.Errorf("VERSION %q", version)
	}
	if js := asset("uPlot.iife.min.js"); !strings.HasPrefix(js, "/*! https://github.com/leeoniya/uPlot (v"+version+") */") {
		t.Errorf("uPlot.iife.min.js starts %q", js[:80])
	}
	lic, err := os.ReadFile("assets/LICENSE")
	if err != nil || !strings.Contains(string(lic), "The MIT License (MIT)") || !strings.Contains(string(lic), "Leon Sorokin") {
		t.Errorf("assets/LICENSE: %v\n%s", err, lic)
	}
	for _, f := range []string{"uPlot.iife.min.js", "uPlot.min.css", "page.js", "page.css"} {
		if strings.Contains(strings.ToLower(asset(f)), "</script") || strings.Contains(strings.ToLower(asset(f)), "</style") {
			t.Errorf("%s would end its element", f)
		}
	}
}
