"""The guest kernel on disk: installing one into vxn's kernel dir, and reading it back.

    <kernel dir>/
        vmlinux             uncompressed: it boots ~5 s sooner under TCG
        release             e.g. 6.1.0-56-amd64
        modules/<name>.ko   the modules the initramfs needs, uncompressed
        modules.order       "GROUP NAME" lines, in load order

A kernel comes from the Dom0's own /boot and /lib/modules, or from Debian's
linux-image package fetched with `apt-get download` and unpacked with `dpkg -x` into
a scratch dir: nothing in the host's /boot or module tree changes.
"""

from __future__ import annotations

import asyncio
import gzip
import lzma
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import zstandard

from vxn.adapters import process
from vxn.core.guestboot import module_name, module_order, vmlinux_of
from vxn.errors import FailedPrecondition, InvalidArgument, Unavailable

_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")
_DEPENDS = re.compile(rb"(?:^|\0)depends=([^\0]*)")
APT_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Kernel:
    dir: Path
    release: str
    vmlinux: Path
    modules: tuple[tuple[str, str, Path], ...]  # (group, name, file) in load order


def read_kernel(kernel_dir: Path) -> Kernel | None:
    """The kernel installed in `kernel_dir`, or None when there is none."""
    try:
        release = (kernel_dir / "release").read_text().strip()
        order = (kernel_dir / "modules.order").read_text().split("\n")
    except FileNotFoundError:
        return None
    modules = []
    for line in filter(None, order):
        group, name = line.split(" ")
        modules.append((group, name, kernel_dir / "modules" / f"{name}.ko"))
    return Kernel(
        dir=kernel_dir, release=release, vmlinux=kernel_dir / "vmlinux", modules=tuple(modules)
    )


def own_kernel() -> tuple[Path, Path] | None:
    """The Dom0's own kernel image and module tree, when both are here."""
    release = os.uname().release
    image, modules = Path(f"/boot/vmlinuz-{release}"), Path(f"/lib/modules/{release}")
    return (image, modules) if image.is_file() and modules.is_dir() else None


def install_kernel(image: Path, modules: Path, dest: Path) -> Kernel:
    """Install `image` (bzImage or vmlinux) and the needed modules from `modules` into dest."""
    index = {module_name(_stem(p.name)): p for p in _module_files(modules)}
    order = module_order(_Depends(index))
    scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=dest.parent))
    try:
        (scratch / "modules").mkdir()
        for _, name in order:
            (scratch / "modules" / f"{name}.ko").write_bytes(_module_bytes(index[name]))
        (scratch / "vmlinux").write_bytes(vmlinux_of(image.read_bytes()))
        (scratch / "modules.order").write_text("".join(f"{g} {n}\n" for g, n in order))
        (scratch / "release").write_text(modules.name + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        scratch.rename(dest)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    kernel = read_kernel(dest)
    assert kernel is not None
    return kernel


async def provision_debian(dest: Path, package: str = "linux-image-amd64") -> Kernel:
    """Fetch Debian's kernel package and install it into `dest`; the host is untouched."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".provision-", dir=dest.parent) as tmp:
        work = Path(tmp)
        real = await _real_package(package)
        os.chmod(work, 0o755)  # apt's download runs as _apt where it can
        await process.run(["apt-get", "download", "-q", real], cwd=work, limit=APT_TIMEOUT)
        debs = sorted(await asyncio.to_thread(lambda: list(work.glob("*.deb"))))
        if not debs:
            raise Unavailable(f"apt-get download {real}: no .deb came back")
        await process.run(["dpkg", "-x", str(debs[0]), str(work / "root")], limit=APT_TIMEOUT)
        images = sorted((work / "root" / "boot").glob("vmlinuz-*"))
        trees = sorted((work / "root" / "lib" / "modules").glob("*"))
        if not images or not trees:
            raise Unavailable(f"{debs[0].name}: no /boot/vmlinuz-* or /lib/modules/* inside")
        return install_kernel(images[0], trees[0], dest)


async def _real_package(package: str) -> str:
    """linux-image-amd64 is a metapackage: the versioned image it depends on."""
    done = await process.run(["apt-cache", "depends", package], limit=60.0)
    for line in done.stdout.decode().splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Depends" and value.startswith("linux-image-"):
            return value
    return package


def _module_files(modules: Path) -> Iterator[Path]:
    for root, _, files in os.walk(modules / "kernel"):
        for name in files:
            if name.endswith(_SUFFIXES):
                yield Path(root) / name


def _stem(filename: str) -> str:
    for suffix in (".xz", ".gz", ".zst"):
        filename = filename.removesuffix(suffix)
    return filename


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


class _Depends(Mapping[str, tuple[str, ...]]):
    """Module name -> its `depends=`, read from a module's .modinfo only when asked."""

    def __init__(self, index: dict[str, Path]) -> None:
        self._index = index

    def __getitem__(self, name: str) -> tuple[str, ...]:
        match = _DEPENDS.search(_module_bytes(self._index[name]))
        if match is None:
            raise InvalidArgument(f"kernel module {self._index[name]}: no depends= in modinfo")
        return tuple(module_name(d) for d in match[1].decode().split(",") if d)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def missing_kernel(kernel_dir: Path) -> FailedPrecondition:
    return FailedPrecondition(
        f"guest kernel: none in {kernel_dir}, and the Dom0's own is not in /boot; "
        "run scripts/setup.sh, or `python -m vxn.engine.guest provision`"
    )
