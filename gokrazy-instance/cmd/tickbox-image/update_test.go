package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/gokrazyweb"
)

// recordingBox answers the web UI's JSON status with basic auth, as a
// gokrazy box does, and records every request, so that a test can tell
// that an update that must be refused wrote nothing (no PUT, no POST).
type recordingBox struct {
	password string
	status   gokrazyweb.Status

	mu   sync.Mutex
	reqs []string // "METHOD PATH"
}

func (b *recordingBox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.reqs = append(b.reqs, r.Method+" "+r.URL.Path)
	b.mu.Unlock()
	if u, pw, ok := r.BasicAuth(); !ok || u != "gokrazy" || pw != b.password {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/" && r.Header.Get("Accept") == "application/json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(b.status)
		return
	}
	// Anything else would write to the box.
	http.Error(w, "the test's box takes no updates", http.StatusForbidden)
}

func (b *recordingBox) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.reqs...)
}

// TestUpdateRefused: each refusal is one line, exit status 1, and leaves
// the box without a single write; a bad image is refused before the box
// is asked anything.
func TestUpdateRefused(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.img")
	testImage(imageParts, true, nil).writeFile(t, good)
	corrupt := filepath.Join(dir, "corrupt.img")
	testImage(imageParts, true, func(_, _, _, _, sq []byte) { copy(sq, "sqsh") }).writeFile(t, corrupt)
	truncated := filepath.Join(dir, "truncated.img")
	testImage(imageParts, true, nil).writeFile(t, truncated)
	if err := os.Truncate(truncated, 600*mib); err != nil {
		t.Fatal(err)
	}
	noFAT := filepath.Join(dir, "nofat.img")
	testImage(imageParts, true, func(_, _, _, fat, _ []byte) { fat[510] = 0 }).writeFile(t, noFAT)
	const password = "S3CRETPW"
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongPW := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrongPW, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	qemu := gokrazyweb.Status{Hostname: "tickbox", Model: "QEMU", Kernel: "Linux 6.12.8 (x86_64)",
		BuildTimestamp: "2026-01-02T03:04:05Z", PermUUID: "60c24cc1-f3f9-427a-8199-e6a8da4d0004"}
	pi := qemu
	pi.Model, pi.Kernel = "Raspberry Pi 4 Model B Rev 1.4", "Linux 6.12.8 (aarch64)"
	arm := qemu
	arm.Model, arm.Kernel = "QEMU", "Linux 6.12.8 (aarch64)"
	otherHost := qemu
	otherHost.PermUUID = "60c24cc1-f3f9-427a-8199-0123456f0004"
	odd := qemu
	odd.Kernel = "Linux 6.12.8"

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	for _, tc := range []struct {
		name   string
		image  string
		target string
		status gokrazyweb.Status
		pw     string
		addr   string // "" for the test's box
		want   string
		asked  bool // whether the box was asked (GET) at all
	}{
		{name: "corrupt image", image: corrupt, want: "corrupt.img: not a gokrazy image: root A holds no SquashFS"},
		{name: "truncated image", image: truncated, want: "truncated.img: not a gokrazy image: the root A partition (2, bytes 109051904 to 633339904) ends beyond the end of the file (629145600 bytes): a truncated image?"},
		{name: "no FAT", image: noFAT, want: "no FAT boot sector signature"},
		{name: "missing image", image: filepath.Join(dir, "none.img"), want: "none.img: open "},
		{name: "wrong password", image: good, pw: wrongPW, status: qemu, want: "the web UI refused the password (401)", asked: true},
		{name: "unreachable", image: good, addr: closed, want: "cannot reach " + closed + ": connection refused"},
		{name: "amd64 image to a Raspberry Pi", image: good, status: pi, asked: true,
			want: `the box is rpi4 (aarch64, model "Raspberry Pi 4 Model B Rev 1.4"), the image is for amd64; nothing was written`},
		{name: "amd64 image to an arm64 box", image: good, status: arm, asked: true,
			want: `the box is arm64 (aarch64, model "QEMU"), the image is for amd64; nothing was written`},
		{name: "rpi4 image to a PC", image: good, target: "rpi4", status: qemu, asked: true,
			want: `the box is amd64 (x86_64, model "QEMU"), the image is for rpi4; nothing was written`},
		{name: "unknown machine", image: good, status: odd, asked: true, want: `cannot tell the box's machine from its kernel "Linux 6.12.8"`},
		{name: "another hostname's partitions", image: good, status: otherHost, asked: true,
			want: "the box's /perm is partition 60c24cc1-f3f9-427a-8199-0123456f0004, the image's 60c24cc1-f3f9-427a-8199-e6a8da4d0004"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			box := &recordingBox{password: password, status: tc.status}
			srv := httptest.NewServer(box)
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			if tc.addr != "" {
				addr = tc.addr
			}
			pw := pwFile
			if tc.pw != "" {
				pw = tc.pw
			}
			args := []string{"update", "--build-dir", dir, "--password-file", pw, "--image", tc.image, addr}
			if tc.target != "" {
				args = append(args, "--target", tc.target)
			}
			e, stdout, stderr := testEnv("tickbox-image", nil, "")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := e.run(ctx, args)
			want := "update of " + addr + ": "
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q…%q", err, want, tc.want)
			}
			if cli.Code(err, 0) != 1 {
				t.Errorf("exit status %d, want 1", cli.Code(err, 0))
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the refusal is more than one line: %q", err)
			}
			for _, s := range []string{err.Error(), stdout.String(), stderr.String()} {
				if strings.Contains(s, password) {
					t.Errorf("the password is printed: %q", s)
				}
			}
			reqs := box.requests()
			for _, r := range reqs {
				if !strings.HasPrefix(r, "GET ") {
					t.Errorf("the box got %s", r)
				}
			}
			if asked := len(reqs) > 0; asked != tc.asked {
				t.Errorf("requests %q; the box should be asked: %v", reqs, tc.asked)
			}
		})
	}
}

// TestBoxTarget: the targets a box's status names.
func TestBoxTarget(t *testing.T) {
	for _, tc := range []struct {
		kernel, model, want string
		ok                  bool
	}{
		{"Linux 6.12.8 (x86_64)", "QEMU", "amd64", true},
		{"Linux 7.1.2 (x86_64)", "PC Engines apu2", "amd64", true},
		{"Linux 6.12.8 (aarch64)", "Raspberry Pi 4 Model B Rev 1.4", "rpi4", true},
		{"Linux 6.12.8 (aarch64)", "Raspberry Pi 5 Model B Rev 1.0", "rpi4", true},
		{"Linux 6.12.8 (aarch64)", "QEMU", "arm64", true},
		{"Linux 6.12.8 (riscv64)", "QEMU", "riscv64", true},
		{"Linux 6.12.8", "QEMU", "", false},
		{"", "", "", false},
	} {
		got, _, ok := boxTarget(gokrazyweb.Status{Kernel: tc.kernel, Model: tc.model})
		if got != tc.want || ok != tc.ok {
			t.Errorf("boxTarget(%q, %q) = %q, %v; want %q, %v", tc.kernel, tc.model, got, ok, tc.want, tc.ok)
		}
		for _, target := range []string{"amd64", "arm64", "rpi4"} {
			err := checkBox(gokrazyweb.Status{Kernel: tc.kernel, Model: tc.model}, target)
			if (err == nil) != (tc.ok && target == tc.want) {
				t.Errorf("checkBox(%q, %q, %s): %v", tc.kernel, tc.model, target, err)
			}
		}
	}
}

// TestUpdateDefaultImage: an update builds beside, not over, the image a
// local VM boots.
func TestUpdateDefaultImage(t *testing.T) {
	o := &options{buildDir: "/b", target: "amd64", httpPort: 8080}
	if got := defaultUpdateImage(o); got != "/b/tickbox-amd64-update.img" {
		t.Errorf("defaultUpdateImage = %s", got)
	}
	if got := defaultImage(o); got == defaultUpdateImage(o) {
		t.Errorf("the update image is the boot image %s", got)
	}
}
