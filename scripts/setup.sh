#!/bin/sh
# Sets up a fresh Debian 12 machine for vxn (run as root from the checkout), then
# runs the main job: load a small image built here (there is no internet) and list it.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="python3-venv skopeo umoci docker-registry busybox-static e2fsprogs pigz zstd"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# The main job, on throwaway state so it never touches a real Dom0's /var/lib/vxn.
demo="${VXN_DEMO_DIR:-$PWD/.cache/demo}"
rm -rf "$demo" && mkdir -p "$demo"
export VXN_STATE_DIR="$demo/state" VXN_RUN_DIR="$demo/run"
.venv/bin/python tests/data/imagebuild.py demo "$demo/demo-image.tar"
.venv/bin/vxn load "$demo/demo-image.tar"
.venv/bin/vxn images
kill "$(cat "$VXN_RUN_DIR/vxnd.lock")"  # the demo daemon; a real Dom0 keeps its vxnd
