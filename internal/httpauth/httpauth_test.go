package httpauth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("pw", "  s3cret\n", 0o600)
	empty := write("empty", " \n\t", 0o600)
	big := write("big", strings.Repeat("x", maxPasswordFile+1), 0o600)
	for _, tc := range []struct {
		name, path string
		is         error
		text       string
	}{
		{"trimmed", good, nil, ""},
		{"missing", filepath.Join(dir, "none"), syscall.ENOENT, "no such file or directory"},
		{"directory", dir, syscall.EISDIR, "is a directory"},
		{"empty", empty, ErrEmptyPassword, "empty password"},
		{"too large", big, nil, "larger than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Load("r", "gokrazy", tc.path)
			if tc.is == nil && tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest("GET", "/", nil)
				r.SetBasicAuth("gokrazy", "s3cret")
				if !b.Check(r) {
					t.Fatal("the trimmed password is refused")
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q lacks %q", err, tc.text)
			}
		})
	}
}

func TestWrap(t *testing.T) {
	b := New("tickbox", "gokrazy", "pw")
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inside") })
	jsonDeny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{ "result": 401, "text": "Unauthorized" }`)
	})
	plain := httptest.NewServer(b.Wrap(inner, nil))
	defer plain.Close()
	js := httptest.NewServer(b.Wrap(inner, jsonDeny))
	defer js.Close()
	for _, tc := range []struct {
		name   string
		url    string
		auth   func(r *http.Request)
		code   int
		body   string
		ctype  string
		challe bool
	}{
		{"good", plain.URL, func(r *http.Request) { r.SetBasicAuth("gokrazy", "pw") }, 200, "inside", "", false},
		{"none", plain.URL, func(r *http.Request) {}, 401, "401 Unauthorized\n", "text/plain; charset=utf-8", true},
		{"wrong password", plain.URL, func(r *http.Request) { r.SetBasicAuth("gokrazy", "pW") }, 401, "401 Unauthorized\n", "text/plain; charset=utf-8", true},
		{"password prefix", plain.URL, func(r *http.Request) { r.SetBasicAuth("gokrazy", "p") }, 401, "401 Unauthorized\n", "", true},
		{"password longer", plain.URL, func(r *http.Request) { r.SetBasicAuth("gokrazy", "pw2") }, 401, "401 Unauthorized\n", "", true},
		{"wrong user", plain.URL, func(r *http.Request) { r.SetBasicAuth("root", "pw") }, 401, "401 Unauthorized\n", "", true},
		{"bearer", plain.URL, func(r *http.Request) { r.Header.Set("Authorization", "Bearer pw") }, 401, "401 Unauthorized\n", "", true},
		{"bad base64", plain.URL, func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, 401, "401 Unauthorized\n", "", true},
		{"json deny", js.URL, func(r *http.Request) {}, 401, `{ "result": 401, "text": "Unauthorized" }`, "application/json", true},
		{"json good", js.URL, func(r *http.Request) { r.SetBasicAuth("gokrazy", "pw") }, 200, "inside", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tc.url, strings.NewReader("{}"))
			tc.auth(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || string(body) != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.code, tc.body)
			}
			if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			ch := resp.Header.Get("WWW-Authenticate")
			if tc.challe && ch != `Basic realm="tickbox"` || !tc.challe && ch != "" {
				t.Errorf("WWW-Authenticate %q", ch)
			}
		})
	}
}
