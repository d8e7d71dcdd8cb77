package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// fullPage is a page after ten minutes of rounds: a full history and
// the most events kept.
func fullPage(b *testing.B) *Page {
	f := healthy()
	var evs []any
	for i := 1; i <= 20; i++ {
		evs = append(evs, map[string]any{"seq": i, "time": "2026-01-02T03:04:05Z", "port": "A", "link": i%2 == 1, "msg": fmt.Sprintf("link up 1000MBit (master) %d", i)})
	}
	f.set("mdiod", "events-get", map[string]any{"events": evs, "last-seq": 20})
	f.set("appliance", "events-get", map[string]any{"events": evs})
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	p := New(f, Options{Logger: quiet(), Now: clk.Now})
	p.Poll(context.Background())
	for i := 0; i < 600; i++ {
		off, freq := float64(i%50)-25, 1200+float64(i%7)
		p.hist.add(sample{t: float64(clk.Now().UnixMicro()) / 1e6, offset: &off, freq: &freq})
		clk.Add(time.Second)
	}
	if n := len(p.Snapshot(0).History.T); n < 600 {
		b.Fatalf("history of %d", n)
	}
	return p
}

func BenchmarkPage(b *testing.B) {
	p := fullPage(b)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := p.writePage(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

func BenchmarkSnapshot(b *testing.B) {
	p := fullPage(b)
	var n int
	b.ReportAllocs()
	for b.Loop() {
		out, err := json.Marshal(p.Snapshot(0))
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
}
