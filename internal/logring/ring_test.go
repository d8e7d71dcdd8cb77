package logring

import (
	"bytes"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func fill(r *Ring, n int, width int) {
	for i := 1; i <= n; i++ {
		s := fmt.Sprintf("line %d", i)
		if width > len(s) {
			s += strings.Repeat("x", width-len(s))
		}
		r.Append(s)
	}
}

func TestSince(t *testing.T) {
	tests := []struct {
		name               string
		maxLines, maxBytes int
		add, width         int
		since              uint64
		limit              int
		want               []uint64 // sequence numbers returned
		next, missed       uint64
	}{
		{name: "empty", maxLines: 4, maxBytes: 1000, want: nil},
		{name: "all", maxLines: 4, maxBytes: 1000, add: 3, want: []uint64{1, 2, 3}, next: 3},
		{name: "cursor", maxLines: 4, maxBytes: 1000, add: 3, since: 1, want: []uint64{2, 3}, next: 3},
		{name: "up to date", maxLines: 4, maxBytes: 1000, add: 3, since: 3, next: 3},
		{name: "cursor ahead of a new ring", maxLines: 4, maxBytes: 1000, add: 3, since: 9, next: 3},
		{name: "count bound", maxLines: 4, maxBytes: 1000, add: 10, want: []uint64{7, 8, 9, 10}, next: 10, missed: 6},
		{name: "count bound from cursor", maxLines: 4, maxBytes: 1000, add: 10, since: 5, want: []uint64{7, 8, 9, 10}, next: 10, missed: 1},
		{name: "limit", maxLines: 4, maxBytes: 1000, add: 10, since: 7, limit: 2, want: []uint64{9, 10}, next: 10, missed: 1},
		{name: "byte bound", maxLines: 100, maxBytes: 100, add: 10, width: 30, want: []uint64{8, 9, 10}, next: 10, missed: 7},
		{name: "line longer than the byte bound", maxLines: 100, maxBytes: 50, add: 3, width: 80, want: []uint64{3}, next: 3, missed: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.maxLines, tt.maxBytes)
			fill(r, tt.add, tt.width)
			lines, next, missed := r.Since(tt.since, tt.limit)
			var got []uint64
			for _, l := range lines {
				got = append(got, l.Seq)
				if want := fmt.Sprintf("line %d", l.Seq); !strings.HasPrefix(l.Line, want) {
					t.Errorf("line %d = %q, want it to start with %q", l.Seq, l.Line, want)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || next != tt.next || missed != tt.missed {
				t.Errorf("Since(%d, %d) = %v next %d missed %d; want %v next %d missed %d", tt.since, tt.limit, got, next, missed, tt.want, tt.next, tt.missed)
			}
			n, b, _ := r.Stats()
			if n > tt.maxLines || b > tt.maxBytes {
				t.Errorf("ring holds %d lines, %d bytes; bounds %d, %d", n, b, tt.maxLines, tt.maxBytes)
			}
		})
	}
}

func TestAppendCutsLongLines(t *testing.T) {
	r := New(10, 1<<20)
	r.Append(strings.Repeat("é", MaxLine) + "\n")
	lines, _, _ := r.Since(0, 0)
	l := lines[0].Line
	if len(l) > MaxLine || !strings.HasSuffix(l, "...") || !strings.HasPrefix(l, "é") {
		t.Fatalf("long line kept as %d bytes ending %q", len(l), l[len(l)-8:])
	}
	if strings.ContainsRune(l, '\uFFFD') || !utf8Valid(l) {
		t.Fatal("cut line is not valid UTF-8")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }

// TestMemoryBounded writes far more than the bounds allow and checks
// that the heap does not grow with what was written.
func TestMemoryBounded(t *testing.T) {
	r := New(1000, 64<<10)
	var ms runtime.MemStats
	line := strings.Repeat("y", 200)
	fill(r, 5000, 0)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for i := 0; i < 200000; i++ { // 40 MB of text
		r.Append(line)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapAlloc) - int64(before); grew > 4<<20 {
		t.Fatalf("heap grew by %d bytes after 40 MB of log text into a 64 KiB ring", grew)
	}
	n, b, seq := r.Stats()
	if b > 64<<10 || n > 1000 || seq != 205000 {
		t.Fatalf("ring: %d lines, %d bytes, seq %d", n, b, seq)
	}
}

// TestConcurrent has writers append while readers follow with cursors:
// every reader sees strictly increasing sequence numbers, and one that
// keeps up with limit 0 misses nothing it did not get reported missed.
func TestConcurrent(t *testing.T) {
	r := New(64, 1<<20)
	const writers, each = 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r.Append(fmt.Sprintf("w%d %d", w, i))
			}
		}()
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			var cursor, seen, missed uint64
			for {
				lines, next, m := r.Since(cursor, 0)
				missed += m
				for _, l := range lines {
					if l.Seq <= cursor {
						errs <- fmt.Errorf("seq %d after cursor %d", l.Seq, cursor)
						return
					}
					cursor = l.Seq
					seen++
				}
				if next != cursor && len(lines) > 0 {
					errs <- fmt.Errorf("next %d, last line %d", next, cursor)
					return
				}
				cursor = next
				if cursor == writers*each {
					if seen+missed != cursor {
						errs <- fmt.Errorf("saw %d + missed %d, want %d", seen, missed, cursor)
						return
					}
					errs <- nil
					return
				}
			}
		}()
	}
	wg.Wait()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestTee(t *testing.T) {
	tests := []struct {
		name      string
		ringLevel slog.Level
		mainLevel slog.Level
		wantRing  []string
		wantMain  []string
	}{
		{name: "same level", ringLevel: slog.LevelInfo, mainLevel: slog.LevelInfo,
			wantRing: []string{"level=INFO msg=hello k=v n=1", "level=WARN msg=careful k=v g.x=2"},
			wantMain: []string{"level=INFO msg=hello k=v n=1", "level=WARN msg=careful k=v g.x=2"}},
		{name: "ring at warn", ringLevel: slog.LevelWarn, mainLevel: slog.LevelDebug,
			wantRing: []string{"level=WARN msg=careful k=v g.x=2"},
			wantMain: []string{"level=DEBUG msg=detail k=v", "level=INFO msg=hello k=v n=1", "level=WARN msg=careful k=v g.x=2"}},
		{name: "ring at debug", ringLevel: slog.LevelDebug, mainLevel: slog.LevelWarn,
			wantRing: []string{"level=DEBUG msg=detail k=v", "level=INFO msg=hello k=v n=1", "level=WARN msg=careful k=v g.x=2"},
			wantMain: []string{"level=WARN msg=careful k=v g.x=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var main bytes.Buffer
			r := New(10, 1000)
			noTime := func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}
			log := slog.New(Tee(slog.NewTextHandler(&main, &slog.HandlerOptions{Level: tt.mainLevel, ReplaceAttr: noTime}), r, tt.ringLevel)).With("k", "v")
			log.Debug("detail")
			log.Info("hello", "n", 1)
			log.WithGroup("g").Warn("careful", "x", 2)
			lines, _, _ := r.Since(0, 0)
			var got []string
			for _, l := range lines {
				// The ring's lines carry the time; the rest must match.
				_, rest, ok := strings.Cut(l.Line, " ")
				if !ok || !strings.HasPrefix(l.Line, "time=") {
					t.Fatalf("ring line %q has no time", l.Line)
				}
				got = append(got, rest)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantRing) {
				t.Errorf("ring:\n%q\nwant\n%q", got, tt.wantRing)
			}
			if g := strings.Split(strings.TrimSpace(main.String()), "\n"); fmt.Sprint(g) != fmt.Sprint(tt.wantMain) {
				t.Errorf("main handler:\n%q\nwant\n%q", g, tt.wantMain)
			}
		})
	}
}
