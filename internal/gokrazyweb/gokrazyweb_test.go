package gokrazyweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUI is a gokrazy web UI reduced to what the client uses, with the
// real one's rules: basic auth on every request, the status page sets the
// gokrazy_xsrf cookie and renders the same token in its form, and
// POST /restart needs cookie and form token to agree.
type fakeUI struct {
	password string
	// What the status page does wrong, if anything.
	noToken, noCookie, badToken bool

	mu      sync.Mutex
	started []string // services POST /restart started
}

const fakeToken = "-1234567"

func (f *fakeUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pw, ok := r.BasicAuth()
	if !ok || user != "gokrazy" || pw != f.password {
		w.Header().Set("WWW-Authenticate", `Basic realm="gokrazy"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/":
		if r.Header.Get("Accept") == "application/json" {
			fmt.Fprint(w, `{"Services":[{"Path":"/user/ptpd","Pid":42,"StartTime":"2026-01-02T03:04:05Z","Args":["-f","/etc/ptpd.conf"]},{"Path":"/user/breakglass","Stopped":true}],"Hostname":"tickbox","Model":"QEMU","Kernel":"Linux 6.12.8 (x86_64)","BuildTimestamp":"2026-01-02T03:04:05Z","PermUUID":"60c24cc1-f3f9-427a-8199-e6a8da4d0004"}`)
			return
		}
		fmt.Fprint(w, "<html>status</html>")
	case "/status":
		if !f.noCookie {
			http.SetCookie(w, &http.Cookie{Name: "gokrazy_xsrf", Value: fakeToken, HttpOnly: true})
		}
		token := fakeToken
		if f.badToken {
			token = "99"
		}
		if !f.noToken {
			fmt.Fprintf(w, `<form method="POST" action="/restart"><input type="hidden" name="xsrftoken" value="%s"><input type="hidden" name="path" value="%s">`, token, r.FormValue("path"))
		}
	case "/restart":
		if r.Method != http.MethodPost {
			http.Error(w, "expected a POST request", http.StatusBadRequest)
			return
		}
		ck, err := r.Cookie("gokrazy_xsrf")
		if err != nil {
			http.Error(w, "XSRF cookie missing", http.StatusBadRequest)
			return
		}
		if r.FormValue("xsrftoken") != ck.Value {
			http.Error(w, "XSRF token mismatch", http.StatusForbidden)
			return
		}
		if r.FormValue("supervise") != "loop" {
			http.Error(w, "want supervise=loop", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.started = append(f.started, r.FormValue("path"))
		f.mu.Unlock()
		http.Redirect(w, r, "/status?path="+r.FormValue("path"), http.StatusSeeOther)
	case "/log":
		if r.FormValue("path") != "/user/ptpd" || r.FormValue("stream") != "stderr" {
			http.Error(w, "no such service", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, "line one\nline two\n")
	default:
		http.NotFound(w, r)
	}
}

func TestClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ui       *fakeUI
		password string // the client's
		up       string // "" or a substring of Up's error
		start    error  // errors.Is target for Start, nil for success
	}{
		{name: "ok", ui: &fakeUI{password: "pw"}, password: "pw"},
		{name: "wrong password", ui: &fakeUI{password: "pw"}, password: "nope", up: "401", start: ErrNoXSRFToken},
		{name: "page without token", ui: &fakeUI{password: "pw", noToken: true}, password: "pw", start: ErrNoXSRFToken},
		{name: "page without cookie", ui: &fakeUI{password: "pw", noCookie: true}, password: "pw", start: ErrNoXSRFToken},
		{name: "token differs from cookie", ui: &fakeUI{password: "pw", badToken: true}, password: "pw", start: ErrRestart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.ui)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := New(srv.URL+"/", tc.password)
			if c.Base() != srv.URL {
				t.Errorf("Base() = %q, want %q", c.Base(), srv.URL)
			}

			err := c.Up(ctx)
			switch {
			case tc.up == "" && err != nil:
				t.Errorf("Up: %v", err)
			case tc.up != "" && (err == nil || !strings.Contains(err.Error(), tc.up)):
				t.Errorf("Up: %v, want an error with %q", err, tc.up)
			}

			err = c.StartBreakglass(ctx)
			if tc.start == nil && err != nil || tc.start != nil && !errors.Is(err, tc.start) {
				t.Errorf("StartBreakglass: %v, want %v", err, tc.start)
			}
			tc.ui.mu.Lock()
			started := tc.ui.started
			tc.ui.mu.Unlock()
			if want := tc.start == nil; want != (len(started) == 1 && started[0] == BreakglassPath) {
				t.Errorf("services started: %q (start should succeed: %v)", started, want)
			}
		})
	}
}

func TestServicesAndLog(t *testing.T) {
	srv := httptest.NewServer(&fakeUI{password: "pw"})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := New(srv.URL, "pw")

	svcs, err := c.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := svcs["/user/ptpd"]
	if p.Pid != 42 || p.Stopped || !p.StartTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || len(p.Args) != 2 {
		t.Errorf("ptpd: %+v", p)
	}
	if !svcs["/user/breakglass"].Stopped {
		t.Errorf("breakglass: %+v, want stopped", svcs["/user/breakglass"])
	}

	for _, tc := range []struct {
		svc, want, err string
	}{
		{"/user/ptpd", "line one\nline two\n", ""},
		{"/user/nosuch", "", "404"},
	} {
		rc, err := c.Log(ctx, tc.svc)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Log(%s): %v, want an error with %q", tc.svc, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Log(%s): %v", tc.svc, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != tc.want {
			t.Errorf("Log(%s) = %q, %v; want %q", tc.svc, b, err, tc.want)
		}
	}

	// A wrong password is an error for the service list too.
	if _, err := New(srv.URL, "x").Services(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Services with a wrong password: %v", err)
	}
}

func TestStatus(t *testing.T) {
	srv := httptest.NewServer(&fakeUI{password: "pw"})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := New(srv.URL, "pw").Status(ctx)
	want := Status{Hostname: "tickbox", Model: "QEMU", Kernel: "Linux 6.12.8 (x86_64)", BuildTimestamp: "2026-01-02T03:04:05Z",
		PermUUID: "60c24cc1-f3f9-427a-8199-e6a8da4d0004"}
	if err != nil || st != want {
		t.Errorf("Status = %+v, %v; want %+v", st, err, want)
	}
	if _, err := New(srv.URL, "x").Status(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Status with a wrong password: %v, want ErrUnauthorized", err)
	}
}

func TestXSRFToken(t *testing.T) {
	for _, tc := range []struct{ page, want string }{
		{`<input type="hidden" name="xsrftoken" value="12345">`, "12345"},
		{`<input type="hidden" name="xsrftoken" value="-77">`, "-77"},
		{`<input name="xsrftoken" value="abc">`, ""},
		{`no form`, ""},
	} {
		if got := XSRFToken([]byte(tc.page)); got != tc.want {
			t.Errorf("XSRFToken(%q) = %q, want %q", tc.page, got, tc.want)
		}
	}
}
