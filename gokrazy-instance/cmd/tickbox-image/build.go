package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostname is the image's hostname in the committed config.json; gok reads
// the web UI password from its per-host config directory.
const hostname = "tickbox"

// creds are the web UI password and the ssh identity that reaches
// breakglass, as printed when the VM is up.
type creds struct {
	password     string
	passwordFile string
	sshIdentity  string   // private key for the printed ssh command, "" when the user's own
	keys         []string // public key files given to breakglass
	// buildTimestamp is gok's build timestamp, which the web UI's status
	// reports once the image runs.
	buildTimestamp string
}

// nonEmpty reports whether path is a file with something in it (test -s).
func nonEmpty(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 0
}

var passwordRe = regexp.MustCompile(`^[^\s:@/]+$`)

// password reads the web UI password: the first line of o.passwordFile,
// or of BUILD/http-password.txt, which is generated when generate is set
// and it is missing. It is one word, since it goes into a URL's userinfo.
func (e *env) password(o *options, generate bool) (pw, file string, err error) {
	file = o.passwordFile
	if file == "" {
		file = filepath.Join(o.buildDir, "http-password.txt")
		if generate && !nonEmpty(file) {
			pw := rand.Text()[:20] // base32: letters and digits only
			if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
				return "", "", fail("writing %s: %w", file, err)
			}
			e.sayf("generated the web UI password %s (user gokrazy), saved in %s", pw, file)
		}
	}
	if !nonEmpty(file) {
		return "", "", fail("%s: missing or empty password file", file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fail("%s: %w", file, err)
	}
	pw, _, _ = strings.Cut(string(b), "\n")
	if !passwordRe.MatchString(pw) {
		return "", "", fail("%s: the password must be one word without ':', '@' or '/'", file)
	}
	return pw, file, nil
}

// sshKeys picks breakglass's keys: --ssh-key, else the user's
// ~/.ssh/id_*.pub, else BUILD/id_ed25519.pub, generated once when generate
// is set. It also returns the private key to name in the ssh command when
// it is not one ssh finds by itself.
func (e *env) sshKeys(ctx context.Context, o *options, generate bool) (keys []string, identity string, err error) {
	if o.sshKey != "" {
		if !nonEmpty(o.sshKey) {
			return nil, "", fail("%s: no such key file", o.sshKey)
		}
		if priv := strings.TrimSuffix(o.sshKey, ".pub"); priv != o.sshKey {
			if fi, err := os.Stat(priv); err == nil && fi.Mode().IsRegular() {
				identity = priv
			}
		}
		return []string{o.sshKey}, identity, nil
	}
	if home := e.getenv("HOME"); home != "" {
		keys, _ = filepath.Glob(filepath.Join(home, ".ssh", "id_*.pub"))
		if len(keys) > 0 {
			return keys, "", nil
		}
	}
	priv := filepath.Join(o.buildDir, "id_ed25519")
	if !nonEmpty(priv+".pub") && generate {
		keygen, err := exec.LookPath("ssh-keygen")
		if err != nil {
			return nil, "", fail("ssh-keygen not found; install it with: sudo apt-get install -y openssh-client")
		}
		os.Remove(priv)
		os.Remove(priv + ".pub")
		out, err := exec.CommandContext(ctx, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "tickbox-flash", "-f", priv).CombinedOutput()
		if err != nil {
			e.stderr.Write(out)
			return nil, "", fail("ssh-keygen failed: %w", err)
		}
		e.sayf("generated the ssh key %s", priv)
	}
	if !nonEmpty(priv + ".pub") {
		return nil, "", nil // boot only: nothing to name
	}
	return []string{priv + ".pub"}, priv, nil
}

// permRe finds, in gok's log, the mkfs.ext4 command gok would have run for
// the /perm partition: its byte offset in the image and its size in blocks.
var permRe = regexp.MustCompile(`mkfs\.ext4 -F -E offset=([0-9]*) .* ([0-9]*)$`)

// buildTimestampRe finds gok's build timestamp in its log.
var buildTimestampRe = regexp.MustCompile(`(?m)Build timestamp: (\S+)\r?$`)

// permPartition returns the last /perm offset and block count in log.
func permPartition(log []byte) (offset, blocks string, ok bool) {
	for _, l := range bytes.Split(log, []byte("\n")) {
		if m := permRe.FindSubmatch(bytes.TrimRight(l, "\r")); m != nil && len(m[1]) > 0 && len(m[2]) > 0 {
			offset, blocks, ok = string(m[1]), string(m[2]), true
		}
	}
	return offset, blocks, ok
}

// tailLines is the last n lines of b.
func tailLines(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\n")
	i := len(b)
	for ; n > 0 && i > 0; n-- {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			i = 0
		}
	}
	if i > 0 {
		i++
	}
	return append(b[i:len(b):len(b)], '\n')
}

// build builds the image for o into out: derive the instance config, run
// gok into a temporary file beside out, give it an ext4 /perm, and rename
// it to out only once complete, so that a failure leaves nothing behind.
func (e *env) build(ctx context.Context, o *options, out string) (*creds, error) {
	if o.repo == "" {
		return nil, fail("no tickbox checkout above the working directory; give --repo DIR")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fail("go not found in PATH (Go >= 1.26 is needed to build the image)")
	}
	mkfs, err := findTool("mkfs.ext4")
	if err != nil {
		return nil, fail("mkfs.ext4 not found; install it with: sudo apt-get install -y e2fsprogs")
	}
	if err := os.MkdirAll(o.buildDir, 0o755); err != nil {
		return nil, fail("cannot create %s: %w", o.buildDir, err)
	}
	c := &creds{}
	if c.password, c.passwordFile, err = e.password(o, true); err != nil {
		return nil, err
	}
	if c.keys, c.sshIdentity, err = e.sshKeys(ctx, o, true); err != nil {
		return nil, err
	}
	var keys []byte
	for _, k := range c.keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, fail("%s: %w", k, err)
		}
		keys = append(keys, b...)
	}
	authorized := filepath.Join(o.buildDir, "authorized_keys")
	if err := os.WriteFile(authorized, keys, 0o644); err != nil {
		return nil, fail("writing %s: %w", authorized, err)
	}

	// gok reads the password from $XDG_CONFIG_HOME/gokrazy/hosts/<hostname>/.
	// GOENV keeps the user's go env settings, which live under
	// XDG_CONFIG_HOME too.
	goenv, err := exec.CommandContext(ctx, goBin, "env", "GOENV").Output()
	if err != nil {
		return nil, fail("go env GOENV: %w", err)
	}
	xdg := filepath.Join(o.buildDir, "gokrazy-config")
	hostDir := filepath.Join(xdg, "gokrazy", "hosts", hostname)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return nil, fail("cannot create %s: %w", hostDir, err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "http-password.txt"), []byte(c.password), 0o600); err != nil {
		return nil, fail("writing the password for gok: %w", err)
	}
	goEnv := append(os.Environ(), "GOENV="+strings.TrimSpace(string(goenv)), "XDG_CONFIG_HOME="+xdg)

	instance := "tickbox-" + o.target
	derive := []string{"run", "./gokrazy-instance/derive",
		"-src", filepath.Join(o.repo, "gokrazy-instance"), "-out", filepath.Join(o.buildDir, "instance", instance),
		"-target", o.target, "-authorized-keys", authorized}
	for _, p := range o.extra {
		derive = append(derive, "-extra-package", p)
	}
	version := o.version
	if version == "" {
		version = gitVersion(ctx, o.repo)
	}
	if version != "" {
		derive = append(derive, "-version", version)
	}
	derive = append(derive, "-build-time", time.Now().UTC().Format(time.RFC3339))
	if mv := gitModuleVersion(ctx, o.repo); mv != "" {
		derive = append(derive, "-module-version", mv)
	}
	cmd := exec.CommandContext(ctx, goBin, derive...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = o.repo, goEnv, e.stderr, e.stderr
	if err := cmd.Run(); err != nil {
		return nil, e.stopped(ctx, fail("deriving the %s instance config failed: %w", o.target, err))
	}
	derived, err := os.ReadFile(filepath.Join(o.buildDir, "instance", instance, "config.json"))
	if err != nil {
		return nil, fail("reading the derived config: %w", err)
	}
	pkgs, err := targetPackages(derived)
	if err != nil {
		return nil, fail("%w", err)
	}
	if err := e.checkTargetPackages(ctx, goBin, goEnv, o.repo, o.target, pkgs); err != nil {
		return nil, err
	}

	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fail("cannot create %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(out)+".partial."+strconv.Itoa(os.Getpid()))
	defer os.Remove(tmp) // gone after the rename; a partial image otherwise
	logPath := filepath.Join(o.buildDir, "gok-"+o.target+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fail("creating %s: %w", logPath, err)
	}
	defer logFile.Close()
	e.sayf("building the %s image (log: %s)", o.target, logPath)
	start := time.Now()
	cmd = exec.CommandContext(ctx, goBin, "tool", "gok", "--parent_dir", filepath.Join(o.buildDir, "instance"),
		"-i", instance, "overwrite", "--sudo", "never", "--full", tmp,
		"--target_storage_bytes", strconv.FormatInt(o.size, 10))
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = o.repo, goEnv, logFile, logFile
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		log, _ := os.ReadFile(logPath)
		e.stderr.Write(tailLines(log, 25))
		return nil, fail("image build failed (full log: %s)", logPath)
	}

	// gok leaves the /perm partition empty and logs where it is;
	// breakglass needs /perm for its host key.
	log, err := os.ReadFile(logPath)
	if err != nil {
		return nil, fail("reading %s: %w", logPath, err)
	}
	if m := buildTimestampRe.FindSubmatch(log); m != nil {
		c.buildTimestamp = string(m[1])
	}
	offset, blocks, ok := permPartition(log)
	if !ok {
		return nil, fail("image build log has no /perm partition offset (full log: %s)", logPath)
	}
	cmd = exec.CommandContext(ctx, mkfs, "-q", "-F", "-E", "offset="+offset, "-L", "perm", tmp, blocks)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		return nil, e.stopped(ctx, fail("mkfs.ext4 for /perm failed (full log: %s)", logPath))
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fail("%w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out, &st); err != nil {
		return nil, fail("%w", err)
	}
	e.sayf("built %s in %d s: %d bytes, %d MiB allocated", out, int(time.Since(start).Seconds()), st.Size, st.Blocks*512/1024/1024)
	return c, nil
}

// stopped is err, unless a signal stopped the program, which is then the
// reason (and main exits quietly with 128+signal).
func (e *env) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// defaultImage is where build keeps the image unless told otherwise.
func defaultImage(o *options) string {
	return filepath.Join(o.buildDir, "tickbox-"+o.target+".img")
}

// buildCmd is "tickbox-image build".
func (e *env) buildCmd(ctx context.Context, o *options) error {
	out := o.image
	if out == "" {
		out = defaultImage(o)
	}
	_, err := e.build(ctx, o, out)
	return err
}

// writeCmd is "tickbox-image write": a built image onto a device.
func (e *env) writeCmd(ctx context.Context, o *options) error {
	img := o.image
	if img == "" {
		img = defaultImage(o)
	}
	fi, err := os.Stat(img)
	if errors.Is(err, fs.ErrNotExist) {
		return fail("%s: no image there (build one with tickbox-image build)", img)
	}
	if err != nil {
		return fail("%w", err)
	}
	if err := e.host.checkDevice(o.device, fi.Size()); err != nil {
		return err
	}
	if !o.yes {
		if err := e.confirm(ctx, o.target, o.device); err != nil {
			return err
		}
	}
	return e.write(ctx, img, o.device)
}

func (e *env) write(ctx context.Context, img, device string) error {
	e.sayf("writing %s to %s", img, device)
	n, err := writeImage(ctx, img, device)
	if err != nil {
		return e.stopped(ctx, fail("writing %s failed: %w", device, err))
	}
	e.sayf("wrote %d bytes to %s and synced", n, device)
	return nil
}

// flash is what flash.sh does: every check first, then build, then keep
// the image, write it to the device or boot it.
func (e *env) flash(ctx context.Context, o *options) error {
	if o.update {
		return e.updateCmd(ctx, o) // --update
	}
	if _, err := exec.LookPath("go"); err != nil {
		return fail("go not found in PATH (Go >= 1.26 is needed to build the image)")
	}
	if _, err := findTool("mkfs.ext4"); err != nil {
		return fail("mkfs.ext4 not found; install it with: sudo apt-get install -y e2fsprogs")
	}
	out := o.image
	switch {
	case o.device != "":
		if err := e.host.checkDevice(o.device, o.size); err != nil {
			return err
		}
		if !o.yes {
			if err := e.confirm(ctx, o.target, o.device); err != nil {
				return err
			}
		}
		out = defaultImage(o)
	case o.image == "":
		if err := e.checkBootHost(ctx, o); err != nil {
			return err
		}
		out = defaultImage(o)
	}
	c, err := e.build(ctx, o, out)
	if err != nil {
		return err
	}
	switch {
	case o.device != "":
		return e.write(ctx, out, o.device)
	case o.image != "":
		return nil
	}
	return e.boot(ctx, o, out, c)
}

// gitVersion describes the checkout at repo as version-get will report
// it (git describe: the nearest tag, commits since, the revision, and
// -dirty for local changes), or "" when it is not a git checkout; the
// programs then report their build information's version. A checkout
// owned by another user is described too: only describe runs in it.
func gitVersion(ctx context.Context, repo string) string {
	cmd := exec.CommandContext(ctx, "git", "-c", "safe.directory=*", "-C", repo, "describe", "--tags", "--always", "--dirty")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// gitModuleVersion is the Go pseudo-version of the checkout's HEAD
// commit (v0.0.0-TIME-REVISION, the commit time in UTC and the first 12
// hex digits of the revision), which the image's tickbox programs record
// as their module's version, so that gokrazy's web UI shows it; "" when
// repo is not a git checkout. Local changes are not in it (module
// versions carry no "-dirty"); version-get's version (gitVersion) says so.
func gitModuleVersion(ctx context.Context, repo string) string {
	out, err := exec.CommandContext(ctx, "git", "-c", "safe.directory=*", "-C", repo, "log", "-1", "--format=%H %ct").Output()
	if err != nil {
		return ""
	}
	return pseudoVersion(strings.TrimSpace(string(out)))
}

// pseudoVersion makes the pseudo-version from git's "REVISION UNIXTIME".
func pseudoVersion(log string) string {
	rev, ct, ok := strings.Cut(log, " ")
	secs, err := strconv.ParseInt(ct, 10, 64)
	if !ok || err != nil || len(rev) < 12 || strings.Trim(rev, "0123456789abcdef") != "" {
		return ""
	}
	return "v0.0.0-" + time.Unix(secs, 0).UTC().Format("20060102150405") + "-" + rev[:12]
}
