"""Builds the Dom0 image (Xen 4.17 + a Debian PV Dom0) from Debian packages.

`python -m e2e.dom0image` (PYTHONPATH=tests) builds or reuses it and prints the
time taken. The result is cached under a key that hashes the recipe: this
file, the Dom0 init script and the suite. A warm run finds it and builds nothing.

Needs root (mmdebstrap, chroot, file ownership in `mkfs.ext4 -d`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.aptsource import configured_source
from e2e.cache import cache_root, digest, locked, publish
from vxn.core import cpio

HERE = Path(__file__).resolve().parent
CPIO = Path(cpio.__file__)  # in the cache key: it writes the Dom0 initramfs
INIT_SCRIPT = HERE / "dom0" / "init.sh"
INITRD_INIT = HERE / "dom0" / "initrd-init.sh"
# What the Dom0's initramfs loads to mount its root (dependencies come from modules.dep).
INITRD_MODULES = ["crc32c_generic", "ext4", "virtio_pci", "virtio_blk"]

# The hypervisor comes from the same mmdebstrap run as the toolstack, so the
# two are always the same suite and version (checked after the build).
XEN_PACKAGES = ["xen-hypervisor-4.17-amd64", "xen-utils-4.17", "xenstore-utils"]
PACKAGES = [
    *XEN_PACKAGES,
    "linux-image-amd64",
    "python3",
    "busybox-static",
    "e2fsprogs",
    "kmod",
    "iproute2",
    "procps",
    "mount",
    "usr-is-merged",  # else apt picks usrmerge, which pulls in perl
]
EXTRA_MB = 400  # free space in the image for Dom0's own writes (snapshot=on drops them)
BOOTSTRAP_TIMEOUT = 600  # 70 s on a busy host; the mirror may be slow


@dataclass(frozen=True)
class Dom0Image:
    dir: Path
    xen: Path  # gunzipped multiboot ELF: QEMU's -kernel does not take the .gz
    kernel: Path  # uncompressed: Xen's xz decompression of a bzImage costs 5-13 s under TCG
    initrd: Path
    disk: Path
    manifest: dict[str, object]

    @classmethod
    def load(cls, d: Path) -> Dom0Image:
        manifest = json.loads((d / "manifest.json").read_text())
        return cls(d, d / "xen", d / "vmlinux", d / "initrd.img", d / "dom0.img", manifest)


def recipe_key() -> str:
    src = configured_source()
    parts = [p.read_bytes() for p in (Path(__file__), INIT_SCRIPT, INITRD_INIT, CPIO)]
    return digest(*parts, src.suite, " ".join(PACKAGES))[:16]


def _run(cmd: list[str], timeout: float, quiet: bool = False) -> None:
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(cmd, check=True, timeout=timeout, stdout=out)


def _dpkg_versions(root: Path) -> dict[str, str]:
    versions: dict[str, str] = {}
    for block in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        name = re.search(r"^Package: (\S+)", block, re.M)
        ver = re.search(r"^Version: (\S+)", block, re.M)
        if name and ver and "Status: install ok installed" in block:
            versions[name.group(1)] = ver.group(1)
    return versions


def _extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Debian's bzImage payload is xz; an uncompressed ELF halves `xl create` under TCG."""
    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RuntimeError(f"{bzimage}: no xz payload")
    out.write_bytes(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:]))


def _module_order(moddir: Path, wanted: list[str]) -> list[str]:
    """`wanted` and their dependencies from modules.dep, each after what it needs."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, needs = line.partition(":")
        deps[mod] = needs.split()
    by_name = {Path(m).name.removesuffix(".ko"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod not in order:
            for dep in reversed(deps[mod]):  # modules.dep lists the deepest last
                visit(dep)
            order.append(mod)

    for name in wanted:
        visit(by_name[name])
    return order


def _dom0_initrd(root: Path, kver: str) -> bytes:
    moddir = root / "lib/modules" / kver
    mods = _module_order(moddir, INITRD_MODULES)
    paths = [f"lib/modules/{kver}/{m}" for m in mods]
    members = [cpio.Member.directory(d) for d in cpio.parents(paths)]
    for path, module in zip(paths, mods, strict=True):
        members.append(cpio.Member.file(path, (moddir / module).read_bytes()))
    members += [
        cpio.Member.directory("bin"),
        cpio.Member.file("bin/busybox", (root / "bin/busybox").read_bytes(), 0o755),
        cpio.Member.file("modules.order", "".join(f"{p}\n" for p in paths).encode()),
        cpio.Member.file("init", INITRD_INIT.read_bytes(), 0o755),
    ]
    return cpio.archive(members)


def _customise(root: Path, kver: str) -> None:
    _extract_vmlinux(root / f"boot/vmlinuz-{kver}", root / f"boot/vmlinux-{kver}")
    shutil.copyfile(INIT_SCRIPT, root / "sbin/vxn-dom0-init")
    (root / "sbin/vxn-dom0-init").chmod(0o755)
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("dom0\n")
    # /etc/default/xen stays as packaged: xenconsoled and xenstored at Debian defaults.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()


def _build(out: Path, log: list[str]) -> dict[str, object]:
    src = configured_source()
    root = out / "root"
    t0 = time.monotonic()
    # mmdebstrap: about 2x faster than debootstrap here (apt, unsafe dpkg io).
    # INITRD=No: Debian's kernel hook skips its 37 MB initramfs; we build a small one.
    cmd = ["mmdebstrap", "--variant=minbase", "--dpkgopt=force-unsafe-io", "--quiet"]
    if src.keyring:
        cmd.append(f"--keyring={src.keyring}")
    cmd += ["--include=" + ",".join(PACKAGES), src.suite, str(root)]
    cmd.append(f"deb {src.uri} {src.suite} main")
    env = {**os.environ, "INITRD": "No"}
    subprocess.run(cmd, check=True, timeout=BOOTSTRAP_TIMEOUT, env=env, stdout=subprocess.DEVNULL)
    t_bootstrap = time.monotonic() - t0

    versions = _dpkg_versions(root)
    xen = {p: versions.get(p) for p in XEN_PACKAGES}
    if None in xen.values() or len(set(xen.values())) != 1:
        raise RuntimeError(f"Xen hypervisor and tools differ: {xen}")
    kvers = [p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*")]
    if len(kvers) != 1:
        raise RuntimeError(f"expected one kernel in the Dom0, found {kvers}")
    kver = kvers[0]

    t1 = time.monotonic()
    (out / "xen").write_bytes(gzip.decompress((root / "boot/xen-4.17-amd64.gz").read_bytes()))
    _customise(root, kver)
    shutil.copyfile(root / f"boot/vmlinux-{kver}", out / "vmlinux")
    (out / "initrd.img").write_bytes(_dom0_initrd(root, kver))
    du = subprocess.run(["du", "-sm", str(root)], check=True, capture_output=True, text=True)
    size_mb = int(du.stdout.split()[0]) + EXTRA_MB
    _run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "dom0root",
            "-d",
            str(root),
            str(out / "dom0.img"),
            f"{size_mb}M",
        ],
        300,
    )
    shutil.rmtree(root)
    t_image = time.monotonic() - t1
    log.append(f"mmdebstrap {t_bootstrap:.1f} s, image {t_image:.1f} s")
    return {
        "suite": src.suite,
        "xen": xen["xen-hypervisor-4.17-amd64"],
        "kernel": kver,
        "python3": versions.get("python3"),
        "bootstrap_s": round(t_bootstrap, 1),
        "image_s": round(t_image, 1),
    }


def ensure_image(rebuild: bool = False, echo: bool = True) -> Dom0Image:
    """The cached image for the current recipe, building it first if needed."""
    t0 = time.monotonic()
    key = recipe_key()
    root = cache_root()
    final = root / f"dom0-{key}"
    with locked("dom0", timeout=1800):
        if rebuild and final.exists():
            shutil.rmtree(final)
        if (final / "manifest.json").is_file():
            img = Dom0Image.load(final)
            _say(echo, f"dom0 image {key}: cached, {time.monotonic() - t0:.2f} s ({final})")
            return img
        _say(echo, f"dom0 image {key}: building from {configured_source().uri} (about 1 min)")
        partial = root / f"dom0-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        log: list[str] = []
        manifest = _build(partial, log)
        manifest |= {"key": key, "build_s": round(time.monotonic() - t0, 1)}
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        publish(partial, final, "dom0-")
    _say(echo, f"dom0 image {key}: built in {time.monotonic() - t0:.1f} s ({log[0]})")
    return Dom0Image.load(final)


def _say(echo: bool, msg: str) -> None:
    if echo:
        print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rebuild", action="store_true", help="discard the cached image first")
    img = ensure_image(rebuild=ap.parse_args().rebuild)
    print(json.dumps(img.manifest))


if __name__ == "__main__":
    main()
