"""Guest artefacts: the kernel, the cached base initramfs, and the QEMU accelerator.

    <state dir>/guest/
        kernel/                     the default kernel dir (vxn.adapters.guestkernel)
        initramfs-<key>.cpio        base archives, by a key over everything inside
        helper-<key>                the helper, built from guest-init/vxn-helper.c by gcc
        accel.json                  the KVM probe's verdict, per kernel and qemu
        lock                        flock while any of these is built

The key covers the kernel release and modules, busybox, guest-init, the helper's
source and the protocol version, so a change to any rebuilds the archive once.

    python -m vxn.engine.guest provision DIR    install Debian's kernel into DIR
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vxn.adapters import guestkernel, process, qemu
from vxn.adapters.guestkernel import Kernel
from vxn.adapters.statedir import atomic_write
from vxn.core import protocol
from vxn.core.guestboot import base_initramfs, cache_key, probe_initramfs
from vxn.errors import FailedPrecondition

INSTALLED_GUEST_INIT = Path(sys.prefix) / "share" / "vxn" / "guest-init"


def _guest_init() -> Path:
    """guest-init's sources: in a checkout, next to the package; installed from a wheel,
    where it put them as data files (pyproject.toml: <prefix>/share/vxn/guest-init)."""
    checkout = Path(__file__).resolve().parents[2] / "guest-init"
    return checkout if (checkout / "init").is_file() else INSTALLED_GUEST_INIT


GUEST_INIT = _guest_init()
BUSYBOX = Path("/bin/busybox")
PROBE_TIMEOUT = 10.0  # a working KVM boots this kernel in about a second


class GuestArtefacts:
    def __init__(self, root: Path, kernel_dir: Path | None = None) -> None:
        self.root = root
        self.kernel_dir = kernel_dir or root / "kernel"
        self._keys: dict[tuple[tuple[str, int, int], ...], str] = {}

    async def kernel(self) -> Kernel:
        return await asyncio.to_thread(self._kernel)

    def _kernel(self) -> Kernel:
        kernel = guestkernel.read_kernel(self.kernel_dir)
        if kernel is not None:
            return kernel
        own = guestkernel.own_kernel()
        if own is None:
            raise guestkernel.missing_kernel(self.kernel_dir)
        with self._locked():
            return guestkernel.read_kernel(self.kernel_dir) or guestkernel.install_kernel(
                *own, self.kernel_dir
            )

    async def initramfs(self, kernel: Kernel) -> Path:
        """The base initramfs for `kernel`, built once per key."""
        inputs = self._inputs(kernel)
        key = await asyncio.to_thread(self._key, inputs)
        path = self.root / f"initramfs-{key[:20]}.cpio"
        if path.exists():
            return path
        helper = await self._helper()
        await asyncio.to_thread(self._build, path, kernel, helper)
        return path

    async def accel(self, setting: str, kernel: Kernel) -> str:
        """ "kvm" or "tcg"; "auto" uses KVM only once a probe boot proved it works here."""
        if setting != "auto":
            return setting
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "tcg"
        cache = self.root / "accel.json"
        st = kernel.vmlinux.stat()
        which = f"{kernel.vmlinux}:{st.st_size}:{st.st_mtime_ns}:{_qemu_identity()}"
        known = await asyncio.to_thread(_read_json, cache)
        if known.get("key") == which:
            return str(known["accel"])
        accel = "kvm" if await self._probe(kernel) else "tcg"
        data = json.dumps({"key": which, "accel": accel}).encode()
        await asyncio.to_thread(atomic_write, cache, data)
        return accel

    async def _probe(self, kernel: Kernel) -> bool:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="probe-", dir=self.root) as tmp:
            initrd, log = Path(tmp) / "probe.cpio", Path(tmp) / "probe.log"
            data = probe_initramfs(await asyncio.to_thread(BUSYBOX.read_bytes))
            await asyncio.to_thread(initrd.write_bytes, data)
            return await qemu.probe_kvm(kernel.vmlinux, initrd, log, limit=PROBE_TIMEOUT)

    def _inputs(self, kernel: Kernel) -> list[Path]:
        sources = [GUEST_INIT / "init", GUEST_INIT / "vxn-helper.c", BUSYBOX]
        for path in sources:
            if not path.is_file():
                raise FailedPrecondition(
                    f"guest artefacts: {path} is missing; in a checkout run "
                    "scripts/setup.sh, else reinstall vxn"
                )
        return [*sources, kernel.dir / "modules.order", *(p for _, _, p in kernel.modules)]

    def _key(self, inputs: list[Path]) -> str:
        # Hashing ~6 MB per run costs ~10 ms: remember the key while the files stay the same.
        stats = tuple((str(p), (s := p.stat()).st_size, s.st_mtime_ns) for p in inputs)
        if stats not in self._keys:
            parts = {str(p): p.read_bytes() for p in inputs}
            parts["protocol"] = str(protocol.VERSION).encode()
            self._keys[stats] = cache_key(parts)
        return self._keys[stats]

    async def _helper(self) -> Path:
        source = GUEST_INIT / "vxn-helper.c"
        key = cache_key({"source": source.read_bytes()})
        path = self.root / f"helper-{key[:20]}"
        if not path.exists():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            argv = ["gcc", "-static", "-Os", "-s", "-o", str(tmp), str(source)]
            await process.run(argv, limit=120.0)
            tmp.rename(path)
        return path

    def _build(self, path: Path, kernel: Kernel, helper: Path) -> None:
        with self._locked():
            if path.exists():
                return
            data = base_initramfs(
                busybox=BUSYBOX.read_bytes(),
                init=(GUEST_INIT / "init").read_bytes(),
                helper=helper.read_bytes(),
                modules=[(g, n, p.read_bytes()) for g, n, p in kernel.modules],
            )
            atomic_write(path, data, 0o644)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


def _qemu_identity() -> str:
    import shutil

    path = shutil.which(qemu.BINARY) or qemu.BINARY
    try:
        return f"{path}:{os.stat(path).st_mtime_ns}"
    except OSError:
        return path


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "provision":
        sys.exit("usage: python -m vxn.engine.guest provision KERNEL_DIR")
    kernel = asyncio.run(guestkernel.provision_debian(Path(argv[1]).absolute()))
    print(f"guest kernel {kernel.release}: {kernel.dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
