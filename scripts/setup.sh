#!/bin/sh
# Sets up a fresh Debian 12 machine for vxn (run as root from the checkout), then
# runs the main job: load a small image built here (there is no internet) and run it
# in a guest. The guest kernel is Debian's, unpacked into .cache/guest-kernel.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="python3-venv skopeo umoci docker-registry busybox-static e2fsprogs pigz zstd"
APT_PACKAGES="$APT_PACKAGES qemu-system-x86 gcc libc6-dev"  # guests: QEMU, the static helper
APT_PACKAGES="$APT_PACKAGES apache2-utils openssl"  # registry tests: htpasswd, TLS certs
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# compat: a plain path in a .pth, as cheap at start as a real install; the default
# editable finder costs every vxn call ~12 ms of imports before main() runs.
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
# An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set every vxn
# start would compile its modules again (~15 ms per CLI call): compile them as a real
# install does.
.venv/bin/python -m compileall -q vxn

# The guest kernel: Debian's linux-image-amd64, unpacked (apt-get download + dpkg -x);
# nothing in the host's /boot or /lib/modules changes. Tests and the demo share it.
kernel="$PWD/.cache/guest-kernel"
if [ ! -f "$kernel/vmlinux" ]; then
    apt-get update -qq
    .venv/bin/python -m vxn.engine.guest provision "$kernel"
fi

# The main job, on throwaway state so it never touches a real Dom0's /var/lib/vxn.
demo="${VXN_DEMO_DIR:-$PWD/.cache/demo}"
rm -rf "$demo" && mkdir -p "$demo"
export VXN_STATE_DIR="$demo/state" VXN_RUN_DIR="$demo/run" VXN_CONFIG="$demo/vxn.toml"
printf '[guest]\nkernel_dir = "%s"\n' "$kernel" > "$VXN_CONFIG"
.venv/bin/python tests/data/imagebuild.py demo "$demo/demo-image.tar"
.venv/bin/vxn load "$demo/demo-image.tar"
.venv/bin/vxn images
.venv/bin/vxn run --rm localhost/vxn-demo:latest echo hello
kill "$(cat "$VXN_RUN_DIR/vxnd.lock")"  # the demo daemon; a real Dom0 keeps its vxnd
