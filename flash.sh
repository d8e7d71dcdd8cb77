#!/usr/bin/env bash
# flash.sh: build the tickbox gokrazy image, then boot it in qemu (default),
# leave it in a file (--image), or write it to a card or disk (DEVICE).
# Run ./flash.sh --help for every option.
set -euo pipefail

prog=flash.sh

usage() {
	cat <<'EOF'
Usage:
  ./flash.sh [options]                         build build/tickbox-amd64.img and boot it in qemu
  ./flash.sh --image FILE [--target T]         build the image into FILE only
  ./flash.sh [--target T] [--yes] DEVICE       build the image and write it to DEVICE (e.g. /dev/sdX)

Options:
  --target amd64|rpi4   image target (default amd64). amd64: kernel.amd64, no firmware;
                        rpi4: arm64, kernel.rpi, firmware and rpi-eeprom. Only amd64 boots in qemu.
  --image FILE          build only: write the image to FILE (replaced only once complete)
  --yes, -y             write DEVICE without asking for confirmation
  --http-port N         host port forwarded to the web UI (default 8080, env TICKBOX_HTTP_PORT)
  --ssh-port N          host port forwarded to breakglass ssh (default 2222, env TICKBOX_SSH_PORT)
  --ssh-key FILE        public key(s) for breakglass (default: ~/.ssh/id_*.pub, or a key
                        generated once as BUILD/id_ed25519)
  --password-file FILE  web UI password file (default BUILD/http-password.txt, generated at
                        the first build when missing; never committed)
  --build-dir DIR       working directory for generated files (default ./build, env TICKBOX_BUILD_DIR)
  --size BYTES          image size (default 1258299392); /perm fills what the system
                        partitions leave
  --accel auto|kvm|tcg  qemu accelerator (default auto: KVM only if a boot probe shows it works,
                        else TCG with -cpu max)
  --boot-timeout SECS   how long to wait for the web UI (default 300)
  -h, --help            this help

Environment:
  TICKBOX_EXTRA_PACKAGES  space-separated Go packages added to the image. This is also the test
                          hook for a failed build: point it at a package that does not compile.
  TICKBOX_QEMU            qemu binary (default qemu-system-x86_64)

In qemu, the web UI is at http://127.0.0.1:8080/ (user gokrazy) and breakglass at
ssh -p 2222 root@127.0.0.1; flash.sh starts breakglass through the web UI form.
The VM's second serial port (ttyS1, where mctpd runs as EID 8) is the unix socket
BUILD/mctp-serial.sock. Attach a host mctpd (EID 9) to it through a pty:
  socat pty,raw,echo=0,link=/tmp/tb-mctp unix-connect:build/mctp-serial.sock &
  mctpd -e 9 -demux mctp-host -kea '' serial /tmp/tb-mctp &
  mctp -demux mctp-host ctrl get-eid -eid 8
Ctrl-C shuts the VM down. Writing a device refuses a device that is mounted, holds /,
or is not a block device.
EOF
}

# die prints one clear line and exits non-zero; the EXIT trap removes any
# partial output.
die() {
	echo "$prog: $*" >&2
	exit 1
}

abspath() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/$1" ;;
	esac
}

repo=$(cd "$(dirname "$0")" && pwd)
target=amd64
image=""
device=""
yes=0
http_port=${TICKBOX_HTTP_PORT:-8080}
ssh_port=${TICKBOX_SSH_PORT:-2222}
build_dir=${TICKBOX_BUILD_DIR:-$repo/build}
ssh_key=""
password_file=""
size=1258299392
accel=auto
boot_timeout=300
qemu=${TICKBOX_QEMU:-qemu-system-x86_64}
extra_packages=${TICKBOX_EXTRA_PACKAGES:-}

while [ $# -gt 0 ]; do
	# Accept --opt=value as well as --opt value.
	case $1 in
	--*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
	esac
	opt=$1
	case $opt in
	-h | --help)
		usage
		exit 0
		;;
	-y | --yes)
		yes=1
		shift
		continue
		;;
	--target | --image | --http-port | --ssh-port | --ssh-key | --password-file | --build-dir | --size | --accel | --boot-timeout)
		[ $# -ge 2 ] || die "$opt needs a value (see --help)"
		val=$2
		shift 2
		;;
	--)
		shift
		break
		;;
	-*) die "unknown option $opt (see --help)" ;;
	*)
		[ -z "$device" ] || die "more than one device given: $device and $opt"
		device=$opt
		shift
		continue
		;;
	esac
	case $opt in
	--target) target=$val ;;
	--image) image=$(abspath "$val") ;;
	--http-port) http_port=$val ;;
	--ssh-port) ssh_port=$val ;;
	--ssh-key) ssh_key=$(abspath "$val") ;;
	--password-file) password_file=$(abspath "$val") ;;
	--build-dir) build_dir=$(abspath "$val") ;;
	--size) size=$val ;;
	--accel) accel=$val ;;
	--boot-timeout) boot_timeout=$val ;;
	esac
done
if [ $# -gt 0 ]; then
	[ -z "$device" ] && [ $# -eq 1 ] || die "unexpected arguments: $*"
	device=$1
fi
build_dir=$(abspath "$build_dir")

case $target in
amd64 | rpi4) ;;
*) die "unknown target '$target' (want amd64 or rpi4)" ;;
esac
case $accel in
auto | kvm | tcg) ;;
*) die "unknown accelerator '$accel' (want auto, kvm or tcg)" ;;
esac
for v in http_port ssh_port; do
	p=${!v}
	[[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "invalid port '$p' for --${v/_/-}"
done
[[ $size =~ ^[0-9]+$ ]] && [ "$size" -ge 1073741824 ] || die "invalid --size '$size' (bytes, at least 1073741824)"
[[ $boot_timeout =~ ^[0-9]+$ ]] || die "invalid --boot-timeout '$boot_timeout'"
[ -z "$image" ] || [ -z "$device" ] || die "give either --image FILE or a DEVICE, not both"

mode=vm
if [ -n "$device" ]; then
	mode=device
elif [ -n "$image" ]; then
	mode=image
fi
if [ $mode = vm ] && [ "$target" != amd64 ]; then
	die "only the amd64 image boots in qemu; use --image FILE or a DEVICE for --target $target"
fi

# ---- checks that must pass before anything is built or written ----

find_tool() { # find_tool NAME: also look in the sbin directories a non-root PATH lacks
	command -v "$1" 2>/dev/null && return 0
	local d
	for d in /usr/sbin /sbin; do
		[ -x "$d/$1" ] && {
			echo "$d/$1"
			return 0
		}
	done
	return 1
}

port_busy() { # port_busy PORT: something accepts connections on 127.0.0.1:PORT
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# disk_of DEV: the whole-disk name (e.g. sda) a block device belongs to.
disk_of() {
	local sys
	sys=$(readlink -f "/sys/class/block/$(basename "$(readlink -f "$1")")" 2>/dev/null) || return 1
	if [ -e "$sys/partition" ]; then
		basename "$(dirname "$sys")"
	else
		basename "$sys"
	fi
}

check_device() {
	[ -e "$device" ] || die "$device: no such device"
	[ -b "$device" ] || die "$device: not a block device"
	local real disk name src dev mnt rootdev rootdisk
	real=$(readlink -f "$device")
	disk=$(disk_of "$real") || die "$device: cannot find it in /sys/class/block"
	name=$(basename "$real")
	# The root file system's device, from its device number.
	rootdev=$(stat -c '%Hd:%Ld' / 2>/dev/null || true)
	if [ -n "$rootdev" ] && [ -e "/sys/dev/block/$rootdev" ]; then
		rootdisk=$(disk_of "/dev/$(basename "$(readlink -f "/sys/dev/block/$rootdev")")" || true)
		if [ "$rootdisk" = "$disk" ] || [ "$(basename "$(readlink -f "/sys/dev/block/$rootdev")")" = "$name" ]; then
			die "$device holds the root file system /; refusing to overwrite it"
		fi
	fi
	while read -r src mnt _; do
		case $src in /dev/*) ;; *) continue ;; esac
		dev=$(readlink -f "$src")
		[ -b "$dev" ] || continue
		if [ "$dev" = "$real" ] || [ "$(disk_of "$dev" || true)" = "$name" ]; then
			mnt=$(printf '%b' "$mnt")
			[ "$mnt" = / ] && die "$device holds the root file system /; refusing to overwrite it"
			die "$device is mounted ($src on $mnt); unmount it first"
		fi
	done </proc/mounts
	while read -r src _; do
		case $src in /dev/*) ;; *) continue ;; esac
		dev=$(readlink -f "$src")
		if [ "$dev" = "$real" ] || [ "$(disk_of "$dev" || true)" = "$name" ]; then
			die "$device is in use as swap ($src); refusing to overwrite it"
		fi
	done < <(tail -n +2 /proc/swaps 2>/dev/null || true)
	[ -w "$device" ] || die "$device: not writable (run as root)"
	local bytes
	bytes=$(($(cat "/sys/class/block/$name/size") * 512))
	[ "$bytes" -ge "$size" ] || die "$device holds $bytes bytes, the image needs $size (see --size)"
}

command -v go >/dev/null || die "go not found in PATH (Go >= 1.26 is needed to build the image)"
mkfs=$(find_tool mkfs.ext4) || die "mkfs.ext4 not found; install it with: sudo apt-get install -y e2fsprogs"

if [ $mode = vm ]; then
	port_busy "$http_port" && die "port 127.0.0.1:$http_port is busy (web UI); pick another with --http-port"
	port_busy "$ssh_port" && die "port 127.0.0.1:$ssh_port is busy (ssh); pick another with --ssh-port"
	[ "$http_port" != "$ssh_port" ] || die "--http-port and --ssh-port are both $http_port"
	# The VM's ttyS1, mctpd's serial binding, is a unix socket that a host
	# mctpd reaches through socat. A unix socket path holds at most 107
	# bytes; qemu's option syntax needs each ',' in it doubled.
	mctp_sock=$build_dir/mctp-serial.sock
	[ ${#mctp_sock} -le 107 ] ||
		die "$mctp_sock: longer than a unix socket path may be (107 bytes); use a shorter --build-dir"
	if ! command -v "$qemu" >/dev/null; then
		if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && [ "$qemu" = qemu-system-x86_64 ]; then
			echo "$prog: installing qemu-system-x86"
			apt-get update -qq || die "apt-get update failed"
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null ||
				die "installing qemu-system-x86 failed"
		else
			die "$qemu not found; install it with: sudo apt-get install -y qemu-system-x86"
		fi
	fi
fi
if [ $mode = device ]; then
	check_device
	if [ $yes -ne 1 ]; then
		printf '%s: write the %s image to %s, erasing everything on it? [y/N] ' "$prog" "$target" "$device" >&2
		answer=""
		read -r answer || echo >&2
		case $answer in
		y | Y | yes | YES) ;;
		*) die "not confirmed; nothing written" ;;
		esac
	fi
fi

# ---- build ----

# Files to remove if the script does not finish; the EXIT trap also stops the VM.
partial=()
qemu_pid=""
cleanup() {
	local rc=$?
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	if [ ${#partial[@]} -gt 0 ]; then
		rm -f -- "${partial[@]}"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$build_dir" || die "cannot create $build_dir"
cd "$repo"

# The web UI password: read from a file that is never committed, generated at
# the first build.
if [ -z "$password_file" ]; then
	password_file=$build_dir/http-password.txt
	if [ ! -s "$password_file" ]; then
		pw=$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
		(umask 077 && printf '%s\n' "${pw:0:20}" >"$password_file")
		echo "$prog: generated the web UI password ${pw:0:20} (user gokrazy), saved in $password_file"
	fi
fi
[ -s "$password_file" ] || die "$password_file: missing or empty password file"
password=$(head -n 1 "$password_file")
[[ $password =~ ^[^[:space:]:@/]+$ ]] || die "$password_file: the password must be one word without ':', '@' or '/'"

# breakglass keys: --ssh-key, else the user's keys, else one generated here.
ssh_identity=""
keys=()
if [ -n "$ssh_key" ]; then
	[ -s "$ssh_key" ] || die "$ssh_key: no such key file"
	keys=("$ssh_key")
	[ -f "${ssh_key%.pub}" ] && [ "${ssh_key%.pub}" != "$ssh_key" ] && ssh_identity=${ssh_key%.pub}
else
	shopt -s nullglob
	keys=("$HOME"/.ssh/id_*.pub)
	shopt -u nullglob
	if [ ${#keys[@]} -eq 0 ]; then
		if [ ! -s "$build_dir/id_ed25519.pub" ]; then
			command -v ssh-keygen >/dev/null || die "ssh-keygen not found; install it with: sudo apt-get install -y openssh-client"
			rm -f "$build_dir/id_ed25519" "$build_dir/id_ed25519.pub"
			ssh-keygen -q -t ed25519 -N '' -C tickbox-flash -f "$build_dir/id_ed25519" ||
				die "ssh-keygen failed"
			echo "$prog: generated the ssh key $build_dir/id_ed25519"
		fi
		keys=("$build_dir/id_ed25519.pub")
		ssh_identity=$build_dir/id_ed25519
	fi
fi
cat "${keys[@]}" >"$build_dir/authorized_keys"

# gok reads the password from $XDG_CONFIG_HOME/gokrazy/hosts/<hostname>/.
# GOENV keeps the user's go env settings, which live under XDG_CONFIG_HOME too.
GOENV=$(go env GOENV)
export GOENV
export XDG_CONFIG_HOME=$build_dir/gokrazy-config
mkdir -p "$XDG_CONFIG_HOME/gokrazy/hosts/tickbox"
(umask 077 && printf '%s' "$password" >"$XDG_CONFIG_HOME/gokrazy/hosts/tickbox/http-password.txt")

instance=tickbox-$target
derive_args=(-src "$repo/gokrazy-instance" -out "$build_dir/instance/$instance" -target "$target"
	-authorized-keys "$build_dir/authorized_keys")
for p in $extra_packages; do
	derive_args+=(-extra-package "$p")
done
go run ./gokrazy-instance/derive "${derive_args[@]}" || die "deriving the $target instance config failed"

case $mode in
vm) out=$build_dir/tickbox-amd64.img ;;
image) out=$image ;;
device) out=$build_dir/tickbox-$target.img ;;
esac
mkdir -p "$(dirname "$out")" || die "cannot create $(dirname "$out")"
tmp=$(dirname "$out")/.$(basename "$out").partial.$$
partial+=("$tmp")
log=$build_dir/gok-$target.log
echo "$prog: building the $target image (log: $log)"
start=$(date +%s)
if ! go tool gok --parent_dir "$build_dir/instance" -i "$instance" overwrite \
	--sudo never --full "$tmp" --target_storage_bytes "$size" >"$log" 2>&1; then
	tail -n 25 "$log" >&2
	die "image build failed (full log: $log)"
fi

# gok leaves the /perm partition empty and prints where it is; breakglass
# needs /perm for its host key.
read -r offset blocks < <(sed -n 's/.*mkfs\.ext4 -F -E offset=\([0-9]*\) .* \([0-9]*\)$/\1 \2/p' "$log" | tail -n 1) ||
	die "image build log has no /perm partition offset (full log: $log)"
[ -n "${offset:-}" ] && [ -n "${blocks:-}" ] || die "image build log has no /perm partition offset (full log: $log)"
"$mkfs" -q -F -E "offset=$offset" -L perm "$tmp" "$blocks" >>"$log" 2>&1 ||
	die "mkfs.ext4 for /perm failed (full log: $log)"
mv -f "$tmp" "$out"
partial=()
used=$(du -k "$out" | cut -f1)
echo "$prog: built $out in $(($(date +%s) - start)) s: $(stat -c %s "$out") bytes, $((used / 1024)) MiB allocated"

case $mode in
image)
	exit 0
	;;
device)
	echo "$prog: writing $out to $device"
	dd if="$out" of="$device" bs=4M conv=fsync status=none || die "writing $device failed"
	sync
	echo "$prog: wrote $(stat -c %s "$out") bytes to $device and synced"
	exit 0
	;;
esac

# ---- boot in qemu ----

# kvm_works boots the image with KVM for a few seconds and checks that the
# kernel gets as far as gokrazy's init. KVM on some hosts stops with an
# emulation failure, so /dev/kvm existing proves nothing. The answer is
# cached per host kernel and qemu version.
kvm_works() {
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
	local cache=$build_dir/kvm-probe key plog
	key="$(uname -r) $("$qemu" --version | head -n 1)"
	if [ -f "$cache" ] && [ "$(head -n 1 "$cache")" = "$key" ]; then
		[ "$(sed -n 2p "$cache")" = yes ]
		return
	fi
	plog=$build_dir/kvm-probe.serial
	rm -f "$plog" "$plog.err"
	timeout 30 "$qemu" -nodefaults -accel kvm -cpu host -m 512 -smp 1 -snapshot \
		-drive "file=$out,format=raw" -nic none -serial "file:$plog" -display none \
		>"$plog.err" 2>&1 &
	local pid=$! i ok=no
	for ((i = 0; i < 50; i++)); do
		if grep -q 'gokrazy build timestamp' "$plog" 2>/dev/null; then
			ok=yes
			break
		fi
		# qemu reports a KVM failure (e.g. "emulation failure") and pauses
		# instead of exiting: stop waiting as soon as it says so.
		grep -qi 'error\|failure' "$plog.err" 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.5
	done
	kill $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	printf '%s\n%s\n' "$key" "$ok" >"$cache"
	[ $ok = yes ]
}

accel_args=(-accel tcg -cpu max)
case $accel in
kvm) accel_args=(-accel kvm -cpu host) ;;
auto)
	if kvm_works; then
		accel_args=(-accel kvm -cpu host)
	fi
	;;
esac

# http_req METHOD PATH [BODY] [COOKIE]: one HTTP/1.0 request with basic auth
# over bash's /dev/tcp (no curl needed); prints the raw response.
auth=$(printf 'gokrazy:%s' "$password" | base64 | tr -d '\n')
http_req() {
	local method=$1 path=$2 body=${3:-} cookie=${4:-}
	timeout 10 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
		{
			printf "%s %s HTTP/1.0\r\nHost: tickbox\r\nAuthorization: Basic %s\r\n" "$1" "$2" "$3"
			[ -n "$5" ] && printf "Cookie: %s\r\n" "$5"
			if [ "$1" = POST ]; then
				printf "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %s\r\n" "${#4}"
			fi
			printf "\r\n%s" "$4"
		} >&3
		cat <&3' "$http_port" "$method" "$path" "$auth" "$body" "$cookie" 2>/dev/null
}

serial=$build_dir/serial.log
qemu_log=$build_dir/qemu.log
echo "$prog: booting $out in qemu (${accel_args[*]}); serial console log: $serial"
boot_start=$(date +%s)
# -nodefaults: no empty CD-ROM drive for gokrazy's root device scan to trip on.
# restrict=on: the guest reaches nothing beyond the two forwarded loopback
# ports (its NTP and DHCP clients stay inside qemu's user network).
"$qemu" -name tickbox -nodefaults -m 1024 -smp 2 "${accel_args[@]}" \
	-drive "file=$out,format=raw" \
	-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$http_port-:80,hostfwd=tcp:127.0.0.1:$ssh_port-:22" \
	-device e1000,netdev=n0 -serial "file:$serial" \
	-serial "unix:${mctp_sock//,/,,},server=on,wait=off" -display none -monitor none \
	>"$qemu_log" 2>&1 </dev/null &
qemu_pid=$!

deadline=$((boot_start + boot_timeout))
until http_req GET / | head -n 1 | grep -q '^HTTP/1\.[01] 200'; do
	if ! kill -0 "$qemu_pid" 2>/dev/null; then
		wait "$qemu_pid" 2>/dev/null || true
		qemu_pid=""
		die "qemu exited: $(tr '\n' ' ' <"$qemu_log")"
	fi
	[ "$(date +%s)" -lt "$deadline" ] || die "the web UI did not answer within $boot_timeout s (serial log: $serial)"
	sleep 1
done
boot_secs=$(($(date +%s) - boot_start))

# breakglass does not start on boot: start it through the web UI's form,
# which needs the page's xsrf token and cookie.
breakglass=started
page=$(http_req GET '/status?path=/user/breakglass' || true)
token=$(printf '%s' "$page" | sed -n 's/.*name="xsrftoken" value="\([0-9-]*\)".*/\1/p' | head -n 1)
cookie=$(printf '%s' "$page" | sed -n 's/^Set-Cookie: \(gokrazy_xsrf=[^;]*\).*/\1/ip' | tr -d '\r' | head -n 1)
if [ -z "$token" ] || [ -z "$cookie" ]; then
	breakglass="not started (no form token on /status?path=/user/breakglass)"
elif ! http_req POST /restart "xsrftoken=$token&path=%2Fuser%2Fbreakglass&supervise=loop" "$cookie" |
	head -n 1 | grep -q '^HTTP/1\.[01] [23]0'; then
	breakglass="not started (POST /restart failed)"
fi

ssh_cmd="ssh -p $ssh_port -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
[ -n "$ssh_identity" ] && ssh_cmd+=" -i $ssh_identity"
ssh_cmd+=" root@127.0.0.1"
cat <<EOF

tickbox is up: the web UI answered $boot_secs s after qemu started.
  web UI:     http://127.0.0.1:$http_port/  (user gokrazy)
  password:   $password  (from $password_file)
  ssh:        $ssh_cmd
              breakglass $breakglass; try: $ssh_cmd /user/ctl kea /run/ctl/control.sock list-commands
  serial log: $serial
  mctp:       $mctp_sock is the VM's ttyS1 (mctpd, EID 8); attach a host mctpd with
              socat pty,raw,echo=0,link=/tmp/tb-mctp unix-connect:$mctp_sock &
              mctpd -e 9 -demux mctp-host -kea '' serial /tmp/tb-mctp &
              mctp -demux mctp-host ctrl get-eid -eid 8
Press Ctrl-C to shut the VM down.
EOF

# Ctrl-C (or SIGTERM) shuts the VM down and ends flash.sh successfully.
# qemu, a background job of a non-interactive shell, ignores SIGINT itself.
shutdown_vm() {
	echo
	echo "$prog: shutting the VM down"
	kill "$qemu_pid" 2>/dev/null || true
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=""
	echo "$prog: the VM is off"
	exit 0
}
trap shutdown_vm INT TERM

set +e
wait "$qemu_pid"
rc=$?
qemu_pid=""
set -e
[ $rc -eq 0 ] || die "qemu exited with status $rc: $(tr '\n' ' ' <"$qemu_log")"
echo "$prog: the VM has shut down"
