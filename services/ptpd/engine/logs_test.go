package engine

import (
	"errors"
	"log/slog"
	"log/syslog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
)

// TestMessageLogSyslog: message_log syslog writes to the syslog daemon
// at each message's priority; with no syslog daemon it falls back to
// stderr, says so once, and never fails the start.
func TestMessageLogSyslog(t *testing.T) {
	dir := testutil.ShortDir(t)
	sock := filepath.Join(dir, "log")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dialSock := func() (*syslog.Writer, error) {
		return syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_INFO, "ptpd")
	}
	noDaemon := func() (*syslog.Writer, error) {
		return nil, errors.New("Unix syslog delivery error")
	}
	for _, tc := range []struct {
		name     string
		dial     SyslogDialer
		fallback bool
	}{
		{"syslog daemon present", dialSock, false},
		{"no syslog daemon", noDaemon, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr testutil.LockedBuffer
			g := config.Default("t.cfg").General
			g.MessageLog = "syslog"
			logs, err := OpenLogsWith(g, &stdout, &stderr, tc.dial)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer logs.Close()
			if (logs.Fallback != "") != tc.fallback {
				t.Fatalf("fallback %q", logs.Fallback)
			}
			log := slog.New(logs.Handler(nil))
			if logs.Fallback != "" {
				log.Warn(logs.Fallback)
			}
			log.Error("cannot write state files")
			if tc.fallback {
				out := stderr.String()
				if !strings.Contains(out, ": warning: message_log syslog: no syslog daemon (Unix syslog delivery error); logging to stderr\n") ||
					!strings.Contains(out, ": error: cannot write state files\n") {
					t.Fatalf("stderr:\n%s", out)
				}
				return
			}
			if stderr.String() != "" {
				t.Fatalf("stderr written: %q", stderr.String())
			}
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, 512)
			n, _, err := srv.ReadFrom(b)
			if err != nil {
				t.Fatal(err)
			}
			// <27> is facility daemon (3) * 8 + priority err (3).
			if got := string(b[:n]); !strings.HasPrefix(got, "<27>") || !strings.Contains(got, "cannot write state files") {
				t.Fatalf("syslog datagram %q", got)
			}
		})
	}
}
