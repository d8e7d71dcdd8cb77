#!/usr/bin/env bash
# refresh.sh: fetch uPlot from the npm registry with npm pack and copy the
# three files the status page embeds (uPlot.iife.min.js, uPlot.min.css,
# LICENSE) next to this script. The version is pinned; to move to another
# one, run ./refresh.sh VERSION, check the page (go test ./services/ctl/web)
# and commit the files together with the new VERSION below.
# Usage: services/ctl/web/assets/refresh.sh [VERSION]
set -euo pipefail
VERSION=${1:-1.6.32}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
tgz=$(npm pack --silent "uplot@$VERSION")
tar -xzf "$tgz"
got=$(node -p 'require("./package/package.json").version')
if [ "$got" != "$VERSION" ]; then
	echo "refresh.sh: npm pack gave uplot $got, want $VERSION" >&2
	exit 1
fi
for f in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE; do
	[ -s "package/$f" ] || { echo "refresh.sh: package lacks $f" >&2; exit 1; }
done
cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE "$here/"
echo "$VERSION" >"$here/VERSION"
echo "refresh.sh: uplot $VERSION copied to $here"
