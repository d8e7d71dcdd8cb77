#!/usr/bin/env bash
# test.sh: install missing test dependencies, then run every check and test.
# Usage: ./test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v socat >/dev/null || need+=(socat)
command -v kea-dhcp4 >/dev/null || [ -x /usr/sbin/kea-dhcp4 ] || need+=(kea-dhcp4-server)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "test.sh: installing ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
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
go test -race -count=1 -timeout 20m "$@" ./...
