"""What the guest boots: module order, the base and per-run archives, the kernel image."""

from __future__ import annotations

import lzma
import zlib

import pytest
from unit.core.test_cpio import read_newc

from vxn.core.guestboot import (
    CMDLINE_QEMU,
    SPEC_PATH,
    base_initramfs,
    cache_key,
    module_name,
    module_order,
    vmlinux_of,
    with_spec,
)
from vxn.core.vm import Disk, GuestConfig, QemuPaths, check_resources, qemu_argv
from vxn.errors import InvalidArgument

# depends= of Debian 6.1's modules (XEN-IN-QEMU.md 5)
DEPENDS = {
    "virtio_ring": (),
    "virtio": ("virtio_ring",),
    "virtio_pci_modern_dev": (),
    "virtio_pci_legacy_dev": (),
    "virtio_pci": ("virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"),
    "virtio_blk": ("virtio", "virtio_ring"),
    "virtio_console": ("virtio", "virtio_ring"),
    "xen_blkfront": (),
    "crc16": (),
    "mbcache": (),
    "jbd2": (),
    "crc32c_generic": (),
    "ext4": ("jbd2", "mbcache", "crc16"),
    "overlay": (),
}


def test_modules_load_after_their_dependencies_and_crc32c_before_ext4() -> None:
    order = module_order(DEPENDS)
    names = [n for _, n in order]
    assert sorted(names) == sorted(DEPENDS)
    for name, deps in DEPENDS.items():
        assert all(names.index(d) < names.index(name) for d in deps)
    assert names.index("crc32c_generic") < names.index("jbd2") < names.index("ext4")
    assert dict((n, g) for g, n in order)["xen_blkfront"] == "xen"


def test_a_missing_module_is_named() -> None:
    with pytest.raises(InvalidArgument, match="kernel module overlay"):
        module_order({k: v for k, v in DEPENDS.items() if k != "overlay"})


def test_module_names() -> None:
    assert module_name("xen-blkfront.ko") == "xen_blkfront"


def test_the_spec_is_appended_private_and_seen() -> None:
    base = base_initramfs(busybox=b"bb", init=b"#!", helper=b"h", modules=[("fs", "ext4", b"ko")])
    ramdisk = with_spec(base + b"odd", b"vxn-spec=1\0")
    members = {name: (mode, data) for name, mode, data, _ in read_newc(ramdisk[len(base) + 4 :])}
    assert members[SPEC_PATH] == (0o100600, b"vxn-spec=1\0")
    listed = {name: data for name, _, data, _ in read_newc(base)}
    assert listed["guest-init/modules"] == b"fs ext4\n"
    assert listed["lib/modules/ext4.ko"] == b"ko"
    assert "dev/console" in listed


def test_vmlinux_from_xz_and_gzip_bzimages() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 4
    assert vmlinux_of(elf) == elf
    assert vmlinux_of(b"setup" + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"tail") == elf
    gz = zlib.compressobj(wbits=31)
    assert vmlinux_of(b"setup" + gz.compress(elf) + gz.flush() + b"tail") == elf
    with pytest.raises(InvalidArgument, match="kernel image"):
        vmlinux_of(b"nothing")


def test_cache_key_covers_names_and_contents() -> None:
    assert cache_key({"a": b"1"}) != cache_key({"a": b"2"}) != cache_key({"b": b"1"})
    assert cache_key({"a": b"1", "b": b""}) == cache_key({"b": b"", "a": b"1"})


def test_qemu_command_line() -> None:
    config = GuestConfig(
        name="c1",
        kernel="/k",
        initrd="/i",
        cmdline=CMDLINE_QEMU,
        disks=(Disk(path="/r,o", read_only=True), Disk(path="/w", read_only=False)),
    )
    paths = QemuPaths(qmp="/q", console="/c", console_log="/l", kernel_log="/kl", pidfile="/p")
    argv = qemu_argv("qemu", config, paths, "tcg")
    line = " ".join(argv)
    assert "-nic none" in line
    assert "-S -no-reboot -no-shutdown" in line
    assert "file=/r,,o,if=none,id=d0,format=raw,readonly=on" in argv
    assert "file=/w,if=none,id=d1,format=raw" in argv
    assert "virtconsole,chardev=hvc0,bus=vs.0" in argv
    assert "console=ttyS0" in CMDLINE_QEMU
    assert "hvc0" not in CMDLINE_QEMU


def test_resources() -> None:
    check_resources(256, 1, 64, 2)
    with pytest.raises(InvalidArgument, match="at least 64 MiB; raise -m"):
        check_resources(32, 1, 64, 2)
    with pytest.raises(InvalidArgument, match="cpus 3"):
        check_resources(256, 3, 64, 2)


def test_guest_names() -> None:
    with pytest.raises(InvalidArgument, match="guest name"):
        GuestConfig(name="../x", kernel="", initrd="", cmdline="")
