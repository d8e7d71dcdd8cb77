package msglog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixed = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.Local)

// countingWriter records each Write, to check one Write per line.
type countingWriter struct {
	mu     sync.Mutex
	writes [][]byte
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

// TestGolden: testdata/messages.golden holds what sfptpd's message
// logger (sfptpd_log_vmessage: "%s: %s: " time and priority, then the
// text) prints for the messages below.
func TestGolden(t *testing.T) {
	w := &countingWriter{}
	log := slog.New(New(w, &Options{Level: LevelDebug, Now: func() time.Time { return fixed }}))
	ctx := context.Background()
	log.Info("selected sync instance ptp1 ([none] was active for 0.000s)")
	log.Log(ctx, LevelNotice, "ptp1: alarms changed: none -> no-sync-pkts ")
	log.Warn("Sync instance 'nope' not found - can't select")
	log.Error("cannot write state files in /var/lib/sfptpd", "err", fmt.Errorf("write state: %w", fs.ErrPermission))
	log.Log(ctx, LevelCritical, "critical message")
	log.Log(ctx, LevelAlert, "alert message")
	log.Log(ctx, LevelEmergency, "emergency message")
	log.Debug("trace message", "iface", "eth0", "n", 3)
	log.With("instance", "ptp1").Info("with attributes", slog.Group("", "offset_ns", -3.25, "note", "two words"), slog.Group("g", "k", "v"))
	log.Info("multi\nline message")
	want, err := os.ReadFile(filepath.Join("testdata", "messages.golden"))
	if err != nil {
		t.Fatal(err)
	}
	wantLines := strings.SplitAfter(string(want), "\n")
	wantLines = wantLines[:len(wantLines)-1]
	if len(w.writes) != len(wantLines) {
		t.Fatalf("%d writes, want one per line (%d)", len(w.writes), len(wantLines))
	}
	for i, got := range w.writes {
		// The golden time stamp is local time, as the handler writes.
		if string(got) != wantLines[i] {
			t.Errorf("line %d\n got %q\nwant %q", i, got, wantLines[i])
		}
	}
}

func TestPriorityOf(t *testing.T) {
	tests := []struct {
		l    slog.Level
		want string
	}{
		{slog.LevelDebug - 4, "debug"}, {slog.LevelDebug, "debug"}, {-1, "debug"},
		{slog.LevelInfo, "info"}, {1, "info"}, {LevelNotice, "notice"}, {3, "notice"},
		{slog.LevelWarn, "warning"}, {slog.LevelError, "error"}, {LevelCritical, "critical"},
		{LevelAlert, "alert"}, {LevelEmergency, "emergency"}, {LevelEmergency + 10, "emergency"},
	}
	for _, tc := range tests {
		if got := PriorityOf(tc.l).String(); got != tc.want {
			t.Errorf("PriorityOf(%v) = %s, want %s", tc.l, got, tc.want)
		}
	}
}

func TestLevelFilter(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(New(&b, &Options{Now: func() time.Time { return fixed }}))
	log.Debug("hidden")
	log.Info("shown")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), ": info: shown\n") {
		t.Fatalf("%q", b.String())
	}
}

// TestConcurrent: lines from many goroutines never interleave.
func TestConcurrent(t *testing.T) {
	w := &countingWriter{}
	h := New(w, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := slog.New(h).With("g", g)
			for i := 0; i < 200; i++ {
				log.Info("message", "i", i)
			}
		}()
	}
	wg.Wait()
	if len(w.writes) != 1600 {
		t.Fatalf("%d writes", len(w.writes))
	}
	for _, l := range w.writes {
		if bytes.Count(l, []byte("\n")) != 1 || !bytes.Contains(l, []byte(": info: message (g=")) {
			t.Fatalf("bad line %q", l)
		}
	}
}

// fakeSyslog records the priority method called for each message.
type fakeSyslog struct{ got []string }

func (f *fakeSyslog) rec(p, m string) error { f.got = append(f.got, p+"|"+m); return nil }
func (f *fakeSyslog) Emerg(m string) error  { return f.rec("emerg", m) }
func (f *fakeSyslog) Alert(m string) error  { return f.rec("alert", m) }
func (f *fakeSyslog) Crit(m string) error   { return f.rec("crit", m) }
func (f *fakeSyslog) Err(m string) error    { return f.rec("err", m) }
func (f *fakeSyslog) Warning(m string) error {
	return f.rec("warning", m)
}
func (f *fakeSyslog) Notice(m string) error { return f.rec("notice", m) }
func (f *fakeSyslog) Info(m string) error   { return f.rec("info", m) }
func (f *fakeSyslog) Debug(m string) error  { return f.rec("debug", m) }

func TestSyslog(t *testing.T) {
	s := &fakeSyslog{}
	log := slog.New(NewSyslog(s, &Options{Level: LevelDebug}))
	ctx := context.Background()
	for _, l := range []slog.Level{LevelEmergency, LevelAlert, LevelCritical, LevelError, LevelWarning, LevelNotice, LevelInfo, LevelDebug} {
		log.Log(ctx, l, "m")
	}
	log.Error("failed", "err", errors.New("boom"))
	want := "emerg|m alert|m crit|m err|m warning|m notice|m info|m debug|m err|failed, boom"
	if got := strings.Join(s.got, " "); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestWithGroup(t *testing.T) {
	var b bytes.Buffer
	slog.New(New(&b, &Options{Now: func() time.Time { return fixed }})).WithGroup("port").Info("x", "state", "slave", "err", "not special inside a group")
	if !strings.HasSuffix(b.String(), `: info: x (port.state=slave, port.err="not special inside a group")`+"\n") {
		t.Fatalf("%q", b.String())
	}
}
