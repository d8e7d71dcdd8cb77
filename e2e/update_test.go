package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// updateTimeout bounds one flash.sh --update: the image build, the push,
// the reboot and the wait for the new build.
const updateTimeout = 10 * time.Minute

// controlSockets are the Kea sockets of every daemon on the image.
var controlSockets = []string{
	"/run/ctl/control.sock", "/run/ptpd/control.sock", "/run/mctpd/control.sock",
	"/run/mdiod/control.sock", "/run/appliance/control.sock",
}

// runUpdate runs flash.sh --update against the VM with a password file
// holding password, and returns its exit status and output.
func runUpdate(t *testing.T, ctx context.Context, v *vm, addr, password, version string) (code int, stdout, stderr string) {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, updateTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "flash.sh"), "--update", addr,
		"--build-dir", v.buildDir, "--password-file", pw, "--ssh-key", v.sshKey+".pub",
		// The reboot has taken 3 minutes on a machine shared with other VMs.
		"--boot-timeout", "480")
	cmd.Env = append(os.Environ(), "TICKBOX_VERSION="+version)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	code = cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("flash.sh --update %s: %v\n%s%s", addr, err, out.String(), errb.String())
	}
	return code, out.String(), errb.String()
}

// servicePids are the pids of the tickbox services, for telling that a
// refused update left the box alone.
func servicePids(t *testing.T, ctx context.Context, v *vm) map[string]int {
	t.Helper()
	svcs, err := v.web.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, name := range tickboxServices(t) {
		pids[name] = svcs[name].Pid
	}
	return pids
}

// sshCheck runs a command over ssh until check accepts its output, for
// at most a minute: under load breakglass has been seen to end a session
// before all of the output arrived.
func sshCheck(ctx context.Context, v *vm, check func(string) error, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var out string
	err := waitFor(ctx, strings.Join(args, " "), 2*time.Second, func() error {
		o, err := v.ssh(ctx, args...)
		if err != nil {
			return fmt.Errorf("%v: %q", err, o)
		}
		if err := check(o); err != nil {
			return fmt.Errorf("%w: %q", err, o)
		}
		out = o
		return nil
	})
	return out, err
}

// mctpdUUID is mctpd's UUID from endpoints-get, checked against the
// file it keeps on /perm.
func mctpdUUID(t *testing.T, ctx context.Context, v *vm) string {
	t.Helper()
	var reply struct{ Arguments struct{ UUID string } }
	_, err := sshCheck(ctx, v, func(out string) error {
		if err := json.Unmarshal([]byte(out), &reply); err != nil || reply.Arguments.UUID == "" {
			return fmt.Errorf("no UUID (%v)", err)
		}
		return nil
	}, "/user/ctl", "kea", "/run/mctpd/control.sock", "endpoints-get")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sshCheck(ctx, v, func(out string) error {
		if strings.TrimSpace(out) != reply.Arguments.UUID {
			return fmt.Errorf("endpoints-get says %s", reply.Arguments.UUID)
		}
		return nil
	}, "cat", "/perm/mctpd/uuid")
	if err != nil {
		t.Fatal(err)
	}
	return reply.Arguments.UUID
}

var rootPartRe = regexp.MustCompile(`root=\S*PARTNROFF=(\d+)`)

// rootPartition is the PARTNROFF of the running kernel's root=: 1 for
// root A, 2 for root B.
func rootPartition(t *testing.T, ctx context.Context, v *vm) string {
	t.Helper()
	out, err := sshCheck(ctx, v, func(out string) error {
		if !rootPartRe.MatchString(out) {
			return fmt.Errorf("no root=…PARTNROFF=")
		}
		return nil
	}, "cat", "/proc/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return rootPartRe.FindStringSubmatch(out)[1]
}

// checkUpdate updates the running VM over the air with flash.sh --update
// (a new build, version B), after checking that a wrong password and an
// unreachable box each fail with one line and leave the box alone. Then
// every service runs version B from the other root partition, mctpd's
// UUID and ptpd's state on /perm are unchanged, and breakglass answers.
func checkUpdate(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	base, err := url.Parse(v.web.Base())
	if err != nil {
		t.Fatal(err)
	}
	addr := base.Host
	uuid := mctpdUUID(t, ctx, v)
	rootBefore := rootPartition(t, ctx, v)

	// ptpd created its state_path on /perm; a saved frequency
	// correction there must outlive the update and be restored.
	const freq = "12.345678"
	isFreq := func(out string) error {
		if strings.TrimSpace(out) != freq {
			return fmt.Errorf("not %s", freq)
		}
		return nil
	}
	_, err = sshCheck(ctx, v, func(out string) error {
		if !strings.Contains(out, "state-freerun1") {
			return fmt.Errorf("no state-freerun1")
		}
		return nil
	}, "ls", "/perm/ptpd")
	if err != nil {
		t.Fatalf("ptpd's state on /perm: %v", err)
	}
	_, err = sshCheck(ctx, v, isFreq, "echo "+freq+" > /perm/ptpd/freq-correction-system && sync && cat /perm/ptpd/freq-correction-system")
	if err != nil {
		t.Fatalf("writing ptpd's frequency correction: %v", err)
	}

	// Refusals: one line each, nothing touched.
	pids := servicePids(t, ctx, v)
	closed := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	for _, tc := range []struct {
		name, addr, password, want string
	}{
		{"wrong password", addr, v.password + "x", "flash.sh: update of " + addr + ": the web UI refused the password (401)\n"},
		{"unreachable", closed, v.password, "flash.sh: update of " + closed + ": cannot reach " + closed + ": connection refused\n"},
	} {
		code, stdout, stderr := runUpdate(t, ctx, v, tc.addr, tc.password, v.version+"-refused")
		if code != 1 || stderr != tc.want || stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1, nothing, %q", tc.name, code, stdout, stderr, tc.want)
		}
		if strings.Contains(stdout+stderr, v.password) {
			t.Errorf("%s: the password is printed", tc.name)
		}
	}
	if now := servicePids(t, ctx, v); fmt.Sprint(now) != fmt.Sprint(pids) {
		t.Errorf("a refused update changed the services: pids %v, then %v", pids, now)
	}

	versionB := v.version + "-b"
	start := time.Now()
	code, stdout, stderr := runUpdate(t, ctx, v, addr, v.password, versionB)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("flash.sh --update: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("flash.sh --update took %.1f s (build, push, reboot, web UI back):\n%s", took.Seconds(), stdout)
	if strings.Contains(stdout+stderr, v.password) {
		t.Error("flash.sh --update printed the password")
	}
	if !regexp.MustCompile(`(?m)^flash\.sh: updated ` + regexp.QuoteMeta(addr) + ` in \d+ s: build \S+ → \S+; .*breakglass started$`).MatchString(stdout) {
		t.Errorf("flash.sh --update's summary:\n%s", stdout)
	}

	// Every service runs again, as TestVM first saw them.
	if err := waitServicesRunning(ctx, v, "all services running after the update"); err != nil {
		t.Fatal(err)
	}
	t.Logf("all tickbox services running %.1f s after flash.sh --update started", time.Since(start).Seconds())

	// flash.sh started breakglass again.
	err = waitFor(ctx, "ssh via breakglass after the update", 2*time.Second, func() error {
		out, err := v.ssh(ctx, "true")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if after := rootPartition(t, ctx, v); after == rootBefore {
		t.Errorf("the root partition did not switch: PARTNROFF=%s before and after", after)
	}
	for _, sock := range controlSockets {
		_, err := sshCheck(ctx, v, func(out string) error {
			if !strings.Contains(out, `"text": "`+versionB+`"`) {
				return fmt.Errorf("not version %s", versionB)
			}
			return nil
		}, "/user/ctl", "kea", sock, "version-get")
		if err != nil {
			t.Errorf("%s version-get after the update: %v", sock, err)
		}
	}
	if got := mctpdUUID(t, ctx, v); got != uuid {
		t.Errorf("mctpd's UUID changed with the update: %s, then %s", uuid, got)
	}
	if _, err := sshCheck(ctx, v, isFreq, "cat", "/perm/ptpd/freq-correction-system"); err != nil {
		t.Errorf("ptpd's frequency correction after the update: %v", err)
	}
	// The new ptpd read it back from /perm at its start.
	restored := "clock system: restored freq adj 12.346 from file"
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = waitFor(lctx, "ptpd restoring its frequency correction", 2*time.Second, func() error {
		if log := v.logSnapshot("/user/ptpd"); !strings.Contains(log, restored) {
			return fmt.Errorf("ptpd's log lacks %q", restored)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
