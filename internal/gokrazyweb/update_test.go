package gokrazyweb

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// updateBox answers the update protocol's requests by gokrazy's rules
// (see update.go), keeping what each PUT wrote; its fields make it
// answer the ways a box can go wrong.
type updateBox struct {
	password  string
	features  string // "" for a box without /update/features
	textOnly  bool   // an older box: features as text/plain only
	noMBR     bool   // no /update/mbr handler: the HTML page
	wrongHash bool

	mu      sync.Mutex
	written map[string][]byte
	hashes  map[string]string // the X-Gokrazy-Update-Hash each PUT asked for
	posts   []string
}

func (b *updateBox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, pw, ok := r.BasicAuth(); !ok || u != User || pw != b.password {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch p := r.URL.Path; {
	case p == "/update/features" && b.features != "":
		if b.textOnly || r.Header.Get("Accept") != "application/json" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, b.features)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"features":%q,"EEPROM":null}`, b.features)
	case p == "/update/mbr" && b.noMBR:
		io.WriteString(w, "<!DOCTYPE html>\n<html>status</html>")
	case strings.HasPrefix(p, "/update/") && r.Method == http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if b.wrongHash {
			body = append(body, 0)
		}
		b.written[p] = body
		b.hashes[p] = r.Header.Get("X-Gokrazy-Update-Hash")
		if b.hashes[p] == "crc32" {
			fmt.Fprintf(w, "%08x", crc32.ChecksumIEEE(body))
		} else {
			fmt.Fprintf(w, "%x", sha256.Sum256(body))
		}
	case (p == "/update/switch" || p == "/reboot") && r.Method == http.MethodPost:
		b.posts = append(b.posts, p)
	case p == "/update/switch" || p == "/reboot":
		http.Error(w, "expected a POST request", http.StatusBadRequest)
	default:
		http.NotFound(w, r)
	}
}

func TestUpdateProtocol(t *testing.T) {
	for _, tc := range []struct {
		name     string
		box      *updateBox
		password string
		features []string
		hash     string // the hash the PUTs ask for
		stream   error  // errors.Is target, or nil
		mbr      error
		post     error
		errText  string // a part of the first error, when not an errors.Is target
	}{
		{name: "current box", box: &updateBox{features: "partuuid,updatehash,gpt,"},
			features: []string{"partuuid", "updatehash", "gpt"}, hash: "crc32"},
		{name: "text features", box: &updateBox{features: "partuuid,updatehash,", textOnly: true},
			features: []string{"partuuid", "updatehash"}, hash: "crc32"},
		{name: "no updatehash: SHA-256", box: &updateBox{features: "partuuid,"}, features: []string{"partuuid"}, hash: ""},
		{name: "no features handler", box: &updateBox{}, features: nil, hash: ""},
		{name: "no MBR handler", box: &updateBox{features: "updatehash,", noMBR: true},
			features: []string{"updatehash"}, hash: "crc32", mbr: ErrNotImplemented},
		{name: "wrong hash", box: &updateBox{features: "updatehash,", wrongHash: true},
			features: []string{"updatehash"}, hash: "crc32", errText: "the box wrote data with hash"},
		{name: "wrong password", box: &updateBox{features: "updatehash,"}, password: "x",
			stream: ErrUnauthorized, mbr: ErrUnauthorized, post: ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.box.password = "pw"
			tc.box.written, tc.box.hashes = map[string][]byte{}, map[string]string{}
			srv := httptest.NewServer(tc.box)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pw := "pw"
			if tc.password != "" {
				pw = tc.password
			}
			c := New(srv.URL, pw)

			features, err := c.Features(ctx)
			if tc.password != "" {
				if !errors.Is(err, ErrUnauthorized) {
					t.Errorf("Features: %v, want ErrUnauthorized", err)
				}
				features = []string{"updatehash"}
			} else if err != nil || fmt.Sprint(features) != fmt.Sprint(tc.features) {
				t.Errorf("Features = %q, %v; want %q", features, err, tc.features)
			}

			data := map[string]string{"root": strings.Repeat("squashfs", 5000), "boot": "fat", "mbr": "boot code"}
			for _, dest := range []string{"root", "boot", "mbr"} {
				err := c.Stream(ctx, features, dest, strings.NewReader(data[dest]))
				want := tc.stream
				if dest == "mbr" {
					want = tc.mbr
				}
				switch {
				case tc.errText != "":
					if err == nil || !strings.Contains(err.Error(), tc.errText) {
						t.Errorf("Stream %s: %v, want an error with %q", dest, err, tc.errText)
					}
					continue
				case want != nil:
					if !errors.Is(err, want) {
						t.Errorf("Stream %s: %v, want %v", dest, err, want)
					}
					continue
				case err != nil:
					t.Errorf("Stream %s: %v", dest, err)
					continue
				}
				tc.box.mu.Lock()
				got, hash := string(tc.box.written["/update/"+dest]), tc.box.hashes["/update/"+dest]
				tc.box.mu.Unlock()
				if got != data[dest] || hash != tc.hash {
					t.Errorf("%s: the box got %d bytes with hash %q; want %d bytes, %q", dest, len(got), hash, len(data[dest]), tc.hash)
				}
			}

			for _, f := range []func(context.Context) error{c.Switch, c.Reboot} {
				if err := f(ctx); tc.post == nil && err != nil || tc.post != nil && !errors.Is(err, tc.post) {
					t.Errorf("POST: %v, want %v", err, tc.post)
				}
			}
			tc.box.mu.Lock()
			posts := tc.box.posts
			tc.box.mu.Unlock()
			if want := "[/update/switch /reboot]"; tc.post == nil && fmt.Sprint(posts) != want {
				t.Errorf("posts %v, want %s", posts, want)
			}
		})
	}
}
