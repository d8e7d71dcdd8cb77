#!/usr/bin/env bash
# flash.sh: build the tickbox gokrazy image, then boot it in qemu (default),
# leave it in a file (--image), write it to a card or disk (DEVICE), or
# push it to a running box over the air (--update [HOST:PORT]).
# Run ./flash.sh --help for every option.
#
# The work is done by the Go program gokrazy-instance/cmd/tickbox-image
# ("tickbox-image flash"): this script builds it into the user's cache
# directory and replaces itself with it, so that the program gets the
# terminal's signals (Ctrl-C shuts the VM down) and sets the exit status.
set -euo pipefail

die() {
	echo "flash.sh: $*" >&2
	exit 1
}

repo=$(cd "$(dirname "$0")" && pwd)
command -v go >/dev/null || die "go not found in PATH (Go >= 1.26 is needed to build the image)"

# One binary per checkout; built under a temporary name and renamed, so
# that runs side by side never execute a half-written file. No VCS stamp:
# the tool's own version does not matter, and git refuses to describe a
# checkout owned by another user.
cache=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/tickbox/$(printf '%s' "$repo" | cksum | cut -d' ' -f1)
mkdir -p "$cache" || die "cannot create $cache"
bin=$cache/tickbox-image
(cd "$repo" && go build -buildvcs=false -o "$bin.$$" ./gokrazy-instance/cmd/tickbox-image) || {
	rm -f "$bin.$$"
	die "building gokrazy-instance/cmd/tickbox-image failed"
}
mv -f "$bin.$$" "$bin"
exec "$bin" flash --repo "$repo" "$@"
