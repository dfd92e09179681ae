"""A minimal cpio "newc" writer: enough for Linux initramfs images."""

from __future__ import annotations


def newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An archive of (path, mode, data); for symlinks data is the target.

    Each member and the archive are padded to 4 bytes, so another archive may
    be appended (XEN-IN-QEMU.md 9: without padding the kernel ignores it).
    """
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.lstrip("/").encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def parents(paths: list[str]) -> list[str]:
    """Every directory above `paths`, parents first (cpio needs them listed)."""
    dirs: set[str] = set()
    for path in paths:
        parts = path.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(dirs, key=lambda d: (d.count("/"), d))
