package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

func TestPermPartition(t *testing.T) {
	for _, tc := range []struct {
		name, log      string
		offset, blocks string
		ok             bool
	}{
		{name: "gok's hint", log: "Creating partitions\n2026/12/07 10:00:00 If your applications need to store persistent data, create a file system using e.g.:\n2026/12/07 10:00:00 \t/sbin/mkfs.ext4 -F -E offset=1157627904 /tmp/x.img 24576\n",
			offset: "1157627904", blocks: "24576", ok: true},
		{name: "the last one wins, CRLF", log: "mkfs.ext4 -F -E offset=1 a 2\r\nmkfs.ext4 -F -E offset=3 /b c 4\r\n", offset: "3", blocks: "4", ok: true},
		{name: "no hint", log: "built\n"},
		{name: "no numbers", log: "mkfs.ext4 -F -E offset= x \n"},
	} {
		off, blocks, ok := permPartition([]byte(tc.log))
		if off != tc.offset || blocks != tc.blocks || ok != tc.ok {
			t.Errorf("%s: %q %q %v, want %q %q %v", tc.name, off, blocks, ok, tc.offset, tc.blocks, tc.ok)
		}
	}
}

func TestTailLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc\n"},
		{"a\nb\n", 25, "a\nb\n"},
		{"only", 1, "only\n"},
		{"", 3, "\n"},
	} {
		if got := string(tailLines([]byte(tc.in), tc.n)); got != tc.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	for _, tc := range []struct {
		name     string
		file     string // --password-file, "" for the default
		generate bool
		want     string // the password, or a regexp of it when generated
		err      string
	}{
		{name: "given", file: write("pw1", "s3cret\nignored\n"), want: "^s3cret$"},
		{name: "no newline", file: write("pw2", "s3cret"), want: "^s3cret$"},
		{name: "empty", file: write("pw3", ""), err: ": missing or empty password file"},
		{name: "missing", file: filepath.Join(dir, "none"), err: ": missing or empty password file"},
		{name: "with a colon", file: write("pw4", "a:b\n"), err: "the password must be one word without ':', '@' or '/'"},
		{name: "with a space", file: write("pw5", "a b\n"), err: "the password must be one word"},
		{name: "with a slash", file: write("pw6", "a/b\n"), err: "the password must be one word"},
		{name: "default, not generated", err: "http-password.txt: missing or empty password file"},
		{name: "default, generated", generate: true, want: "^[A-Z2-7]{20}$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := t.TempDir()
			e, out, _ := testEnv("flash.sh", nil, "")
			pw, file, err := e.password(&options{passwordFile: tc.file, buildDir: build}, tc.generate)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(tc.want).MatchString(pw) {
				t.Errorf("password %q, want %s", pw, tc.want)
			}
			if tc.generate {
				if file != filepath.Join(build, "http-password.txt") {
					t.Errorf("file %s", file)
				}
				want := "flash.sh: generated the web UI password " + pw + " (user gokrazy), saved in " + file + "\n"
				if out.String() != want {
					t.Errorf("output %q, want %q", out, want)
				}
				// The second build keeps it.
				e2, out2, _ := testEnv("flash.sh", nil, "")
				if pw2, _, err := e2.password(&options{buildDir: build}, true); err != nil || pw2 != pw || out2.Len() != 0 {
					t.Errorf("second read: %q %v %q", pw2, err, out2)
				}
			}
		})
	}
}

func TestSSHKeys(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "id_test.pub")
	os.WriteFile(pub, []byte("ssh-ed25519 AAAA test\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "id_test"), []byte("private"), 0o600)
	lonePub := filepath.Join(dir, "lone.pub")
	os.WriteFile(lonePub, []byte("ssh-ed25519 AAAA lone\n"), 0o644)
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_rsa.pub"), []byte("ssh-rsa AAAA me\n"), 0o644)
	emptyHome := t.TempDir()
	build := t.TempDir()
	os.WriteFile(filepath.Join(build, "id_ed25519.pub"), []byte("ssh-ed25519 AAAA built\n"), 0o644)

	for _, tc := range []struct {
		name     string
		key      string
		home     string
		build    string
		keys     []string
		identity string
		err      string
	}{
		{name: "--ssh-key with its private key", key: pub, keys: []string{pub}, identity: filepath.Join(dir, "id_test")},
		{name: "--ssh-key alone", key: lonePub, keys: []string{lonePub}},
		{name: "--ssh-key missing", key: filepath.Join(dir, "none.pub"), err: "none.pub: no such key file"},
		{name: "the user's keys", home: home, build: build, keys: []string{filepath.Join(home, ".ssh", "id_rsa.pub")}},
		{name: "the build's key", home: emptyHome, build: build, keys: []string{filepath.Join(build, "id_ed25519.pub")}, identity: filepath.Join(build, "id_ed25519")},
		{name: "none at boot", home: emptyHome, build: t.TempDir()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := testEnv("flash.sh", map[string]string{"HOME": tc.home}, "")
			keys, identity, err := e.sshKeys(context.Background(), &options{sshKey: tc.key, buildDir: tc.build}, false)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(keys, ",") != strings.Join(tc.keys, ",") || identity != tc.identity {
				t.Errorf("got %q %q %v, want %q %q", keys, identity, err, tc.keys, tc.identity)
			}
		})
	}
}

func TestPseudoVersion(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		{"0123456789abcdef0123456789abcdef01234567 1796661780", "v0.0.0-20261207164300-0123456789ab"},
		{"0123456789abcdef0123456789abcdef01234567 0", "v0.0.0-19700101000000-0123456789ab"},
		{"0123456789ab 1796661780", "v0.0.0-20261207164300-0123456789ab"},
		{"0123456789a 1796661780", ""},     // too short
		{"0123456789AB 1796661780", ""},    // git prints lower case
		{"0123456789abcdef 17966605x", ""}, // not a time
		{"0123456789abcdef", ""},
		{"", ""},
	} {
		if got := pseudoVersion(tc.log); got != tc.want {
			t.Errorf("pseudoVersion(%q) = %q, want %q", tc.log, got, tc.want)
		}
	}
}

// TestGitModuleVersion reads the pseudo-version of a real git checkout.
func TestGitModuleVersion(t *testing.T) {
	git := testutil.NeedTool(t, "git", "git")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q"},
		{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", "x"},
	} {
		cmd := exec.Command(git, append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_COMMITTER_DATE=2026-12-07T16:43:00Z", "GIT_AUTHOR_DATE=2026-12-07T16:43:00Z")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	rev, err := exec.Command(git, "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "v0.0.0-20261207164300-" + string(rev[:12])
	if got := gitModuleVersion(context.Background(), dir); got != want {
		t.Errorf("gitModuleVersion = %q, want %q", got, want)
	}
	if got := gitModuleVersion(context.Background(), t.TempDir()); got != "" {
		t.Errorf("gitModuleVersion outside a checkout = %q, want \"\"", got)
	}
}
