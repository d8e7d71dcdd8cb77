package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
)

// testEnv is an env with the given environment variables and stdin and
// buffers for its output, talking about flash.sh or tickbox-image.
func testEnv(prog string, vars map[string]string, stdin string) (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &env{
		getenv: func(k string) string { return vars[k] },
		stdin:  strings.NewReader(stdin),
		stdout: &out, stderr: &errb,
		prog: prog,
		host: realHost(),
	}, &out, &errb
}

// repoRoot is this checkout: three levels above the package.
func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../../..")
	if err != nil || !isTickboxRoot(r) {
		t.Fatalf("no checkout at %s: %v", r, err)
	}
	return r
}

func TestParse(t *testing.T) {
	repo := repoRoot(t)
	wd, _ := os.Getwd()
	for _, tc := range []struct {
		name string
		cmd  string
		args []string
		vars map[string]string
		// Either an error (its text and exit status) ...
		err  string
		code int
		// ... or a check of the options.
		check func(*options) string
	}{
		{name: "defaults", cmd: "flash", check: func(o *options) string {
			if o.target != "amd64" || o.httpPort != 8080 || o.sshPort != 2222 || o.statusPort != 8081 || o.size != 1258299392 ||
				o.accel != "auto" || o.bootTimeout != 300*time.Second || o.qemu != "qemu-system-x86_64" ||
				o.buildDir != filepath.Join(repo, "build") || o.repo != repo || o.yes || o.device != "" || o.image != "" {
				return "wrong defaults"
			}
			return ""
		}},
		{name: "environment", cmd: "flash", vars: map[string]string{
			"TICKBOX_HTTP_PORT": "8081", "TICKBOX_SSH_PORT": "2223", "TICKBOX_STATUS_PORT": "8082", "TICKBOX_BUILD_DIR": "b",
			"TICKBOX_QEMU": "/opt/qemu", "TICKBOX_EXTRA_PACKAGES": " a/b  c/d ",
		}, check: func(o *options) string {
			if o.httpPort != 8081 || o.sshPort != 2223 || o.statusPort != 8082 || o.buildDir != filepath.Join(wd, "b") || o.qemu != "/opt/qemu" ||
				strings.Join(o.extra, ",") != "a/b,c/d" {
				return "environment not applied"
			}
			return ""
		}},
		{name: "flags beat the environment", cmd: "flash", vars: map[string]string{"TICKBOX_HTTP_PORT": "8081"},
			args: []string{"--http-port=9000", "--ssh-port", "9001", "--status-port=9002", "--accel", "tcg", "--boot-timeout", "5", "--size=1073741824"},
			check: func(o *options) string {
				if o.httpPort != 9000 || o.sshPort != 9001 || o.statusPort != 9002 || o.accel != "tcg" || o.bootTimeout != 5*time.Second || o.size != 1073741824 {
					return "flags not applied"
				}
				return ""
			}},
		{name: "device anywhere, relative paths made absolute", cmd: "flash",
			args: []string{"--target", "rpi4", "/dev/sdz", "-y", "--ssh-key", "k.pub", "--password-file=pw", "--build-dir", "bd"},
			check: func(o *options) string {
				if o.device != "/dev/sdz" || !o.yes || o.target != "rpi4" || o.sshKey != filepath.Join(wd, "k.pub") ||
					o.passwordFile != filepath.Join(wd, "pw") || o.buildDir != filepath.Join(wd, "bd") {
					return "wrong options"
				}
				return ""
			}},
		{name: "arm64 boots in qemu-system-aarch64", cmd: "flash", args: []string{"--target", "arm64"}, check: func(o *options) string {
			if o.target != "arm64" || o.qemu != "qemu-system-aarch64" || o.image != "" || o.device != "" {
				return "wrong options"
			}
			return ""
		}},
		{name: "TICKBOX_QEMU beats the target's qemu", cmd: "boot", args: []string{"--target=arm64"}, vars: map[string]string{"TICKBOX_QEMU": "/opt/q"},
			check: func(o *options) string {
				if o.target != "arm64" || o.qemu != "/opt/q" {
					return "wrong options"
				}
				return ""
			}},
		{name: "device after --", cmd: "flash", args: []string{"--yes", "--", "-weird"}, check: func(o *options) string {
			if o.device != "-weird" {
				return "device " + o.device
			}
			return ""
		}},
		{name: "image only", cmd: "flash", args: []string{"--image", "x.img", "--target", "rpi4"}, check: func(o *options) string {
			if o.image != filepath.Join(wd, "x.img") {
				return "image " + o.image
			}
			return ""
		}},
		{name: "write with a device", cmd: "write", args: []string{"--image", "a.img", "/dev/sdz"}, check: func(o *options) string {
			if o.device != "/dev/sdz" || o.image != filepath.Join(wd, "a.img") {
				return "wrong options"
			}
			return ""
		}},
		{name: "--update with the default address", cmd: "flash", args: []string{"--update", "--http-port", "9000"},
			check: func(o *options) string {
				if !o.update || o.addr != "127.0.0.1:9000" || o.device != "" {
					return "wrong update address"
				}
				return ""
			}},
		{name: "--update HOST:PORT", cmd: "flash", args: []string{"--update", "box.lan:8080", "--target", "rpi4"},
			check: func(o *options) string {
				if !o.update || o.addr != "box.lan:8080" || o.target != "rpi4" {
					return "wrong update address"
				}
				return ""
			}},
		{name: "--update=HOST", cmd: "flash", args: []string{"--update=tickbox"}, check: func(o *options) string {
			if !o.update || o.addr != "tickbox" {
				return "wrong update address"
			}
			return ""
		}},
		{name: "update command", cmd: "update", args: []string{"--image", "u.img", "10.0.0.2:80"}, check: func(o *options) string {
			if !o.update || o.addr != "10.0.0.2:80" || o.image != filepath.Join(wd, "u.img") {
				return "wrong update options"
			}
			return ""
		}},
		{name: "update command, default address from the environment", cmd: "update", vars: map[string]string{"TICKBOX_HTTP_PORT": "8090"},
			check: func(o *options) string {
				if !o.update || o.addr != "127.0.0.1:8090" {
					return "wrong update address"
				}
				return ""
			}},
		{name: "--update and a device", cmd: "flash", args: []string{"--update", "127.0.0.1:8080", "/dev/sdz"},
			err: "give either --update or a DEVICE, not both", code: 2},
		{name: "--update with a path", cmd: "flash", args: []string{"--update", "/dev/sdz"}, err: "invalid address '/dev/sdz'", code: 2},
		{name: "update address with a bad port", cmd: "update", args: []string{"box:99999"}, err: "invalid address 'box:99999'", code: 2},
		{name: "update address with a password", cmd: "update", args: []string{"gokrazy:pw@box:80"}, err: "invalid address", code: 2},
		{name: "two update addresses", cmd: "update", args: []string{"a:1", "b:2"}, err: "more than one address given: a:1 and b:2", code: 2},
		{name: "--update is flash's", cmd: "build", args: []string{"--update"}, err: "unknown option --update", code: 2},

		{name: "no PTP tap by default", cmd: "boot", check: func(o *options) string {
			if o.ptpTap != "" {
				return "ptp tap " + o.ptpTap
			}
			return ""
		}},
		{name: "PTP tap on boot", cmd: "boot", args: []string{"--ptp-tap", "tbptp0"}, check: func(o *options) string {
			if o.ptpTap != "tbptp0" {
				return "ptp tap " + o.ptpTap
			}
			return ""
		}},
		{name: "PTP tap on flash, longest name", cmd: "flash", args: []string{"--ptp-tap=ptp.tap-name_15"}, check: func(o *options) string {
			if o.ptpTap != "ptp.tap-name_15" {
				return "ptp tap " + o.ptpTap
			}
			return ""
		}},

		{name: "unknown option", cmd: "flash", args: []string{"--frobnicate"}, err: "unknown option --frobnicate (see --help)", code: 2},
		{name: "unknown option with a value", cmd: "flash", args: []string{"--frob=1"}, err: "unknown option --frob (see --help)", code: 2},
		{name: "unknown short option", cmd: "flash", args: []string{"-x"}, err: "unknown option -x (see --help)", code: 2},
		{name: "option of another command", cmd: "build", args: []string{"--http-port", "1"}, err: "unknown option --http-port", code: 2},
		{name: "missing value", cmd: "flash", args: []string{"--target"}, err: "--target needs a value (see --help)", code: 2},
		{name: "switch with a value", cmd: "flash", args: []string{"--yes=1"}, err: "--yes takes no value", code: 2},
		{name: "two devices", cmd: "flash", args: []string{"/dev/a", "/dev/b"}, err: "more than one device given: /dev/a and /dev/b", code: 2},
		{name: "extra arguments after --", cmd: "flash", args: []string{"/dev/a", "--", "/dev/b"}, err: "unexpected arguments: /dev/b", code: 2},
		{name: "argument to build", cmd: "build", args: []string{"/dev/a"}, err: "unexpected arguments: /dev/a", code: 2},
		{name: "unknown target", cmd: "flash", args: []string{"--target", "mips", "--image", "x"}, err: "unknown target 'mips' (want amd64, arm64 or rpi4)", code: 2},
		{name: "unknown accelerator", cmd: "boot", args: []string{"--accel", "hvf"}, err: "unknown accelerator 'hvf' (want auto, kvm or tcg)", code: 2},
		{name: "port too big", cmd: "flash", args: []string{"--http-port", "99999"}, err: "invalid port '99999' for --http-port", code: 2},
		{name: "port zero", cmd: "flash", args: []string{"--ssh-port", "0"}, err: "invalid port '0' for --ssh-port", code: 2},
		{name: "port not a number", cmd: "boot", args: []string{"--ssh-port", "+22"}, err: "invalid port '+22' for --ssh-port", code: 2},
		{name: "bad port from the environment", cmd: "flash", vars: map[string]string{"TICKBOX_HTTP_PORT": "web"}, err: "invalid port 'web' for --http-port", code: 2},
		{name: "size too small", cmd: "build", args: []string{"--size", "1073741823"}, err: "invalid --size '1073741823' (bytes, at least 1073741824)", code: 2},
		{name: "size not a number", cmd: "build", args: []string{"--size", "1G"}, err: "invalid --size '1G'", code: 2},
		{name: "bad boot timeout", cmd: "flash", args: []string{"--boot-timeout", "-1"}, err: "invalid --boot-timeout '-1'", code: 2},
		{name: "status port not a number", cmd: "boot", args: []string{"--status-port=x"}, err: "invalid port 'x' for --status-port", code: 2},
		{name: "status port of another command", cmd: "write", args: []string{"--status-port", "1"}, err: "unknown option --status-port", code: 2},
		{name: "PTP tap name too long", cmd: "boot", args: []string{"--ptp-tap", "ptp.tap-name_16x"}, err: "invalid --ptp-tap 'ptp.tap-name_16x'", code: 2},
		{name: "PTP tap name empty", cmd: "flash", args: []string{"--ptp-tap="}, err: "invalid --ptp-tap ''", code: 2},
		{name: "PTP tap name with a comma", cmd: "boot", args: []string{"--ptp-tap", "a,b"}, err: "invalid --ptp-tap 'a,b'", code: 2},
		{name: "PTP tap name with a slash", cmd: "boot", args: []string{"--ptp-tap", "a/b"}, err: "invalid --ptp-tap 'a/b'", code: 2},
		{name: "PTP tap of build", cmd: "build", args: []string{"--ptp-tap", "tbptp0"}, err: "unknown option --ptp-tap", code: 2},
		{name: "PTP tap of write", cmd: "write", args: []string{"--ptp-tap", "tbptp0", "/dev/sdz"}, err: "unknown option --ptp-tap", code: 2},
		{name: "image and device", cmd: "flash", args: []string{"--image", "x", "/dev/null"}, err: "give either --image FILE or a DEVICE, not both", code: 2},
		{name: "rpi4 in qemu", cmd: "flash", args: []string{"--target", "rpi4"}, err: "the rpi4 image does not boot in qemu (amd64 and arm64 do); use --image FILE or a DEVICE for --target rpi4", code: 2},
		{name: "boot rpi4", cmd: "boot", args: []string{"--target", "rpi4"}, err: "the rpi4 image does not boot in qemu", code: 2},
		{name: "arm64 with KVM", cmd: "boot", args: []string{"--target", "arm64", "--accel", "kvm"}, err: "--accel kvm: the arm64 image boots with TCG only", code: 2},
		{name: "write without a device", cmd: "write", err: "write needs a DEVICE", code: 2},
		{name: "not a checkout", cmd: "build", args: []string{"--repo", "/"}, err: "/: not a tickbox checkout", code: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := testEnv("tickbox-image", tc.vars, "")
			o, err := e.parse(tc.cmd, tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || cli.Code(err, 1) != tc.code {
					t.Fatalf("error %v (status %d), want %q (status %d)", err, cli.Code(err, 1), tc.err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(o); msg != "" {
				t.Errorf("%s: %+v", msg, o)
			}
		})
	}
}

// TestRunStatus: the exit statuses and where the messages go, flash
// keeping flash.sh's status 1 for usage errors.
func TestRunStatus(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // substring, "" for empty
		stderr     string
		wantErrMsg string
	}{
		{args: nil, code: 2, stderr: "tickbox-image build", wantErrMsg: "no command given"},
		{args: []string{"mkimage"}, code: 2, stderr: "Usage:", wantErrMsg: `unknown command "mkimage"`},
		{args: []string{"--help"}, code: 0, stdout: "tickbox-image boot"},
		{args: []string{"flash", "--help"}, code: 0, stdout: "./flash.sh --image FILE"},
		{args: []string{"flash", "-h"}, code: 0, stdout: "TICKBOX_EXTRA_PACKAGES"},
		{args: []string{"build", "-h"}, code: 0, stdout: "tickbox-image build [options]"},
		{args: []string{"write", "--help"}, code: 0, stdout: "tickbox-image write [options] DEVICE"},
		{args: []string{"boot", "--help"}, code: 0, stdout: "tickbox-image boot [options]"},
		{args: []string{"update", "--help"}, code: 0, stdout: "tickbox-image update [options] [HOST:PORT]"},
		{args: []string{"flash", "--help"}, code: 0, stdout: "./flash.sh --update [HOST:PORT]"},
		{args: []string{"update", "a:1", "b:2"}, code: 2, wantErrMsg: "more than one address given"},
		{args: []string{"flash", "--frobnicate"}, code: 1, wantErrMsg: "unknown option --frobnicate"},
		{args: []string{"build", "--frobnicate"}, code: 2, wantErrMsg: "unknown option --frobnicate"},
		{args: []string{"flash", "--yes", "/dev/tickbox-no-such-disk", "--target", "rpi4"}, code: 1, wantErrMsg: "/dev/tickbox-no-such-disk: no such device"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			e, out, errb := testEnv(progName(tc.args), nil, "")
			err := e.run(context.Background(), tc.args)
			code := 0
			if err != nil {
				code = cli.Code(err, 1)
			}
			if code != tc.code {
				t.Errorf("status %d (%v), want %d", code, err, tc.code)
			}
			if tc.wantErrMsg != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErrMsg)) {
				t.Errorf("error %v, want %q", err, tc.wantErrMsg)
			}
			if tc.stdout == "" && out.Len() > 0 || !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			if tc.stderr == "" && errb.Len() > 0 || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", errb, tc.stderr)
			}
		})
	}
	if progName([]string{"flash"}) != "flash.sh" || progName([]string{"boot"}) != "tickbox-image" || progName(nil) != "tickbox-image" {
		t.Error("progName")
	}
}

func TestConfirm(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		newline bool // a newline is printed after the prompt when none was typed
	}{
		{"y\n", true, false}, {"Y\n", true, false}, {"yes\n", true, false}, {"YES\n", true, false},
		{"y", true, true}, {"n\n", false, false}, {"\n", false, false}, {"", false, true},
		{"yes please\n", false, false}, {"Yes\n", false, false},
	} {
		e, _, errb := testEnv("flash.sh", nil, tc.in)
		err := e.confirm(context.Background(), "rpi4", "/dev/sdz")
		if (err == nil) != tc.ok {
			t.Errorf("answer %q: %v, want ok=%v", tc.in, err, tc.ok)
		}
		if !tc.ok && (cli.Code(err, 0) != 1 || err.Error() != "not confirmed; nothing written") {
			t.Errorf("answer %q: %v (status %d)", tc.in, err, cli.Code(err, 0))
		}
		prompt := "flash.sh: write the rpi4 image to /dev/sdz, erasing everything on it? [y/N] "
		if tc.newline {
			prompt += "\n"
		}
		if errb.String() != prompt {
			t.Errorf("answer %q: stderr %q, want %q", tc.in, errb, prompt)
		}
	}
}
