"""Tiny PV guests for tests inside the Dom0: a busybox initramfs and `xl` helpers.

The initramfs is built from the Dom0's own files (static busybox,
xenstore-write and its libraries) with vxn's cpio writer, so a test can
give every guest its own /init. The guest kernel is the Dom0's, uncompressed
at image build time (/boot/vmlinux-*: `xl create` takes half as long).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from vxn.core.cpio import Member, archive, parents

T = TypeVar("T")
BUSYBOX = Path("/bin/busybox")
XENSTORE_WRITE = Path("/usr/bin/xenstore-write")  # multi-call: keep its name


def _libraries(binary: Path) -> list[Path]:
    """The shared objects `binary` loads, as ldd names them."""
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    return [Path(p) for p in re.findall(r"(/\S+) \(0x", out)]


def initramfs(init: str) -> bytes:
    """busybox, xenstore-write (+ libraries) and `init` as /init."""
    files = {"bin/busybox": BUSYBOX, "bin/xenstore-write": XENSTORE_WRITE}
    files |= {str(lib).lstrip("/"): lib for lib in _libraries(XENSTORE_WRITE)}
    dirs = {"dev", "proc", "sys", "tmp", *parents(list(files))}
    members = [Member.directory(d) for d in sorted(dirs, key=lambda d: (d.count("/"), d))]
    members += [Member.file(p, src.read_bytes(), 0o755) for p, src in sorted(files.items())]
    members.append(Member.file("init", init.encode(), 0o755))
    return archive(members)


def guest_kernel() -> Path:
    return Path(f"/boot/vmlinux-{os.uname().release}")


def pv_config(name: str, ramdisk: Path, memory: int = 128, on_poweroff: str = "preserve") -> str:
    """An xl config for a PV guest (PVH/HVM do not work under TCG: XEN-IN-QEMU.md 3.5)."""
    return "\n".join(
        [
            f'name = "{name}"',
            'type = "pv"',
            f'kernel = "{guest_kernel()}"',
            f'ramdisk = "{ramdisk}"',
            f"memory = {memory}",  # >= 96: 64 fails in the domain builder
            "vcpus = 1",
            'extra = "console=hvc0 quiet"',
            f'on_poweroff = "{on_poweroff}"',  # preserve: data/ stays readable after exit
            'on_crash = "preserve"',
            "",
        ]
    )


def xl(*args: str, timeout: float = 60) -> str:
    return subprocess.run(
        ["xl", *args], check=True, capture_output=True, text=True, timeout=timeout
    ).stdout


def domain_state(name: str) -> str | None:
    """The state column of `xl list` (e.g. "-b----", "---s--"), None if no such domain."""
    r = subprocess.run(["xl", "list", name], capture_output=True, text=True, timeout=30)
    if r.returncode:
        return None
    return r.stdout.splitlines()[-1].split()[4]


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def bounded(what: str, fn: Callable[[], T], timeout: float) -> T:
    """Run `fn` in a thread and give up after `timeout`: pyxs calls have no timeouts."""
    box: list[T] = []
    err: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=target, daemon=True, name=f"bounded:{what}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{what}: no answer within {timeout:.0f} s")
    if err:
        raise err[0]
    return box[0]


def staged_dir(job_path: str) -> Path:
    return Path(job_path).parents[1] / "vxnguest"  # <run dir>/jobs/<id>.json


def copy_sparse(src: Path, dst: Path, extents: list[list[int]], size: int) -> None:
    """Copy only the data runs the host listed: 9p has no holes, the disk is 8 GiB."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        fout.truncate(size)
        for offset, length in extents:
            fin.seek(offset)
            fout.seek(offset)
            left = length
            while left:
                chunk = fin.read(min(left, 1 << 20))
                if not chunk:
                    raise OSError(f"{src}: short read at {offset + length - left}")
                fout.write(chunk)
                left -= len(chunk)
