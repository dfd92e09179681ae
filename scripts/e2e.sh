#!/bin/sh
# The real-Xen test tier (tests/e2e/README.md): builds or reuses the Dom0 image,
# boots Xen 4.17 + a Debian Dom0 under QEMU (TCG) and runs tests/e2e/xen inside it.
#   scripts/e2e.sh                    the whole tier, fresh Dom0 (what CI runs)
#   scripts/e2e.sh FILE...            only these files of tests/e2e/xen, fresh Dom0
#   scripts/e2e.sh --keep [FILE...]   run FILEs (default tests/e2e/xen) in a Dom0 that
#                                     stays booted for the next --keep call (development)
#   scripts/e2e.sh --sh 'CMD'         run a shell command in that kept Dom0
#   scripts/e2e.sh --stop             power off the Dom0 that --keep left running
#   scripts/e2e.sh --bench [--keep]   the Xen benchmark (tests/e2e/xen/bench_xen.py):
#                                     vxn run vs bare xl, vxn's spans, smallest memory
# Needs root. Network: only the Debian mirror apt uses and the index pip uses; QEMU has no NIC.
set -eu
cd "$(dirname "$0")/.."

keep=0
bench=0
if [ "${1:-}" = --bench ]; then bench=1; shift; fi
case "${1:-}" in
    --keep) keep=1; shift ;;
    --stop) mode=stop ;;
    --sh) mode=sh; shift; [ $# -eq 1 ] || { echo "e2e.sh: --sh takes one argument" >&2; exit 2; } ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "e2e.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "e2e.sh: must run as root (mmdebstrap, chroot)" >&2; exit 2; }

case "${mode:-}" in
    stop) PYTHONPATH=tests exec .venv/bin/python -c \
        'from e2e.tier import stop_kept; print("stopped" if stop_kept() else "no kept Dom0")' ;;
    sh) PYTHONPATH=tests exec .venv/bin/python -c \
        'import sys; from e2e.tier import shell_in_kept; sys.exit(shell_in_kept(sys.argv[1]))' "$1" ;;
esac

APT_PACKAGES="qemu-system-x86 mmdebstrap debian-archive-keyring e2fsprogs git python3-venv"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "e2e: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import pytest, pytest_asyncio' 2>/dev/null \
    || .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

start=$(date +%s)
# Separately first, so the build (or cache hit) and its time are printed uncaptured.
PYTHONPATH=tests .venv/bin/python -m e2e.dom0image >/dev/null
tests="$*"
if [ $bench = 1 ]; then
    tests=tests/e2e/xen/bench_xen.py
    export VXN_E2E_JOB_TIMEOUT="${VXN_E2E_JOB_TIMEOUT:-1500}"  # ~20 guest boots
fi
rc=0
VXN_E2E=1 VXN_E2E_KEEP=$keep VXN_E2E_TESTS="$tests" .venv/bin/pytest -p no:cacheprovider tests/e2e \
    || rc=$?
if [ $bench = 1 ]; then  # the table the bench wrote into the run dir it was given
    PYTHONPATH=tests .venv/bin/python -c 'from e2e.cache import cache_root
found = sorted(cache_root().glob("*/bench_xen.txt"), key=lambda p: p.stat().st_mtime)
found += sorted(cache_root().glob("runs/*/bench_xen.txt"), key=lambda p: p.stat().st_mtime)
print(max(found, key=lambda p: p.stat().st_mtime).read_text() if found else "no bench table")'
fi
echo "e2e: tier done in $(( $(date +%s) - start )) s"
exit $rc
