#!/usr/bin/env bash
# test.sh: install missing test dependencies, then run every check and test.
# Usage: ./test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v socat >/dev/null || need+=(socat)
command -v kea-dhcp4 >/dev/null || [ -x /usr/sbin/kea-dhcp4 ] || need+=(kea-dhcp4-server)
# e2e/keaagent drives the daemons through Kea's Control Agent and
# kea-shell (shipped in kea-ctrl-agent; it needs python3-kea-connector).
command -v kea-ctrl-agent >/dev/null || [ -x /usr/sbin/kea-ctrl-agent ] || need+=(kea-ctrl-agent)
[ -f /usr/lib/python3/dist-packages/kea/kea_connector3.py ] || need+=(python3-kea-connector)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
# The PTP interop tests (services/ptpd/ptp) run ptp4l and pmc.
command -v ptp4l >/dev/null || [ -x /usr/sbin/ptp4l ] || need+=(linuxptp)
# ptpd's NTP instance and its sfptpd-style fallback test query a real
# chronyd, which the tests run with -x (it never touches the clock).
[ -x /usr/sbin/chronyd ] || need+=(chrony)
# The hub's metrics test (services/ctl/metrics) has a real Prometheus
# scrape the hub and reads the series back through its query API.
command -v prometheus >/dev/null || need+=(prometheus)
# The image tests (e2e/): qemu boots the image, ssh reaches breakglass,
# mkfs.ext4 makes /perm, losetup backs the device-refusal tests.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# The arm64 image boots on qemu's virt machine with Debian's UEFI firmware.
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
[ -f /usr/share/qemu-efi-aarch64/QEMU_EFI.fd ] || need+=(qemu-efi-aarch64)
# services/mctpd/serial runs its arm64 FCS tests (PMULL) under qemu-aarch64.
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || need+=(e2fsprogs)
# services/ctl/web drives the status page in a headless chromium.
command -v chromium >/dev/null || need+=(chromium)
command -v losetup >/dev/null || [ -x /usr/sbin/losetup ] || [ -x /sbin/losetup ] || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "test.sh: installing ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
		# Where systemd runs, the chrony package starts a chronyd that
		# steers the host clock; the tests want only their own.
		if [[ " ${need[*]} " == *" chrony "* ]] && [ -d /run/systemd/system ]; then
			systemctl disable --now chrony >/dev/null 2>&1 || true
		fi
		# Likewise the prometheus package starts a server of its own
		# (on :9090); the test starts one per run on a port it picks.
		if [[ " ${need[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
			systemctl disable --now prometheus >/dev/null 2>&1 || true
		fi
	else
		echo "test.sh: missing ${need[*]}; install with: sudo apt-get install -y ${need[*]}" >&2
		exit 1
	fi
fi

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== build (CGO_ENABLED=0, linux/amd64 and linux/arm64)"
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -o /dev/null ./...
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -o /dev/null ./...

echo "== go test -race"
# One package at a time (-p 1): the qemu end-to-end test keeps both cores
# of a CI machine busy, and the linuxptp interop tests measure clock
# offsets to the microsecond; run side by side, each skews the other.
# The bound is a safety net: the e2e package boots its VMs one at a
# time (amd64 with the update over the air, then arm64).
go test -race -p 1 -count=1 -timeout 40m "$@" ./...

# bench/soak: every daemon at once under mixed load and faults, for 60 s
# (network namespaces: root, which CI has). A run given go test
# arguments (a filter) leaves it out.
if [ $# -eq 0 ]; then
	echo "== soak (60 s)"
	if [ "$(id -u)" -eq 0 ] || [ "${CI:-}" = true ]; then
		go run ./bench/soak -d 60s
	else
		echo "test.sh: SKIPPED the soak: bench/soak needs root (network namespaces)" >&2
	fi
fi
