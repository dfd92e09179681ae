"""What a guest boots, pure: the kernel image, the module order, the initramfs layout.

The base initramfs holds static busybox, guest-init, the helper and the modules for
virtio and Xen block and console, ext4 and overlay. The per-run archive holds only
the spec, mode 0600, and is appended (4-byte aligned) to the cached base.
"""

from __future__ import annotations

import hashlib
import lzma
import zlib
from collections.abc import Iterable, Mapping, Sequence

from vxn.core.cpio import Member, archive, pad4, parents
from vxn.errors import InvalidArgument

# (group, module): guest-init loads "fs" always, and "virtio" or "xen" by hypervisor.
WANTED = (
    ("virtio", "virtio_pci"),
    ("virtio", "virtio_blk"),
    ("virtio", "virtio_console"),
    ("xen", "xen_blkfront"),
    ("fs", "crc32c_generic"),  # before ext4: metadata_csum needs crc32c (XEN-IN-QEMU.md 5)
    ("fs", "ext4"),
    ("fs", "overlay"),
)
SOFTDEPS = {"ext4": ("crc32c_generic",), "jbd2": ("crc32c_generic",)}
SPEC_PATH = "vxn/spec"
HELPER_PATH = "guest-init/vxn-helper"
CMDLINE_QEMU = "console=ttyS0 quiet panic=1 rdinit=/init"
_XZ = b"\xfd7zXZ\x00"
_GZIP = b"\x1f\x8b\x08\x00"


def module_name(filename: str) -> str:
    """The kernel's name for a module file: `xen-blkfront.ko` -> `xen_blkfront`."""
    return filename.removesuffix(".ko").replace("-", "_")


def module_order(depends: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """WANTED and everything it needs, each after its dependencies (soft ones too)."""
    order: list[tuple[str, str]] = []
    placed: set[str] = set()

    def visit(group: str, name: str, path: tuple[str, ...]) -> None:
        if name in placed:
            return
        if name in path:
            raise InvalidArgument(f"kernel modules: dependency cycle {' -> '.join(path)}")
        if name not in depends:
            raise InvalidArgument(f"kernel module {name}: not in the guest kernel's modules")
        for dep in (*SOFTDEPS.get(name, ()), *depends[name]):
            visit(group, dep, (*path, name))
        placed.add(name)
        order.append((group, name))

    for group, name in WANTED:
        visit(group, name, ())
    return order


def base_initramfs(
    *, busybox: bytes, init: bytes, helper: bytes, modules: Iterable[tuple[str, str, bytes]]
) -> bytes:
    """The base archive; `modules` is (group, name, .ko bytes) in load order."""
    modules = list(modules)
    files = [
        Member.file("bin/busybox", busybox, 0o755),
        Member.file("init", init, 0o755),
        Member.file(HELPER_PATH, helper, 0o755),
        Member.file("guest-init/modules", "".join(f"{g} {n}\n" for g, n, _ in modules).encode()),
        *(Member.file(f"lib/modules/{n}.ko", ko) for _, n, ko in modules),
    ]
    dirs = {"dev", "proc", "sys", "mnt", "tmp", "vxn", *parents([f.name for f in files])}
    members = [Member.directory(d) for d in sorted(dirs, key=lambda d: (d.count("/"), d))]
    members.append(Member.chardev("dev/console", 5, 1))  # init's stdio before devtmpfs
    return archive([*members, *files])


def spec_initramfs(spec: bytes) -> bytes:
    """The per-run archive: the spec alone, readable by root only."""
    return archive([Member.directory("vxn", 0o700), Member.file(SPEC_PATH, spec, 0o600)])


def with_spec(base: bytes, spec: bytes) -> bytes:
    """The ramdisk for one run: the base, padded to 4 bytes, then the spec archive."""
    return pad4(base) + spec_initramfs(spec)


def cache_key(parts: Mapping[str, bytes]) -> str:
    """A digest over named inputs (order-independent by name)."""
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(b"%d:%s\0%d:" % (len(name), name.encode(), len(parts[name])))
        h.update(parts[name])
    return h.hexdigest()


def vmlinux_of(image: bytes) -> bytes:
    """An uncompressed ELF kernel from a bzImage (xz or gzip payload), or the ELF itself.

    It boots about 5 s sooner under TCG: nothing to decompress (XEN-IN-QEMU.md 4.2).
    """
    if image.startswith(b"\x7fELF"):
        return image
    at = image.find(_XZ)
    if at >= 0:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[at:])
    at = image.find(_GZIP)
    if at >= 0:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(image[at:])
    raise InvalidArgument("kernel image: neither an ELF nor a bzImage with an xz or gzip payload")


PROBE_OK = b"vxn-probe-ok"


def probe_initramfs(busybox: bytes) -> bytes:
    """A guest that only proves it booted: it prints PROBE_OK on its console, powers off."""
    init = b"#!/bin/busybox sh\necho " + PROBE_OK + b"\n/bin/busybox poweroff -f\n"
    return archive(
        [
            Member.directory("bin"),
            Member.directory("dev"),
            Member.chardev("dev/console", 5, 1),
            Member.file("bin/busybox", busybox, 0o755),
            Member.file("init", init, 0o755),
        ]
    )
