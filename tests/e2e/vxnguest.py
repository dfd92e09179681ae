"""vxn's own guest artefacts, built on the host for the tests in `xen/` that boot vxn's guest.

The same pieces the QEMU backend boots, made by the same engine code: the provisioned
kernel and the cached base initramfs (`GuestArtefacts`), one run's spec appended to it
(`encode_spec`, `with_spec`), the image's read-only base disk (`ImageService.rootfs`)
and a sparse writable disk (the one `vxn run` makes per container). The image is the
busybox `app` image of the QEMU tests, built here from files (nothing downloaded).

Everything goes to `<rundir>/vxnguest/`, which the Dom0 sees at /srv/run/vxnguest
(the writable 9p share, in fresh and in kept Dom0s alike). 9p knows no holes, so
`manifest.json` lists each disk's data extents: the Dom0 copies only those and
an 8 GiB sparse disk costs a few MB to pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from data.guestimages import APP_NAME, app_image

from e2e.cache import REPO, cache_root
from vxn.adapters import process
from vxn.adapters.statedir import StateDir
from vxn.core import protocol
from vxn.core.guestboot import CMDLINE_QEMU
from vxn.core.guestspec import RunOptions, build_spec
from vxn.core.platform import Platform
from vxn.engine.containers import image_config, writable_disk
from vxn.engine.guest import GuestArtefacts
from vxn.engine.guestrun import write_ramdisk
from vxn.engine.images import ImageService

DIR = "vxnguest"  # under the run directory
KERNEL_DIR = Path(os.environ.get("VXN_TEST_KERNEL_DIR", REPO / ".cache" / "guest-kernel"))
# One guest proves it all: the hypervisor it sees, exact stdout, and an exit code
# that must come back through both channels.
SCRIPT = "cat /sys/hypervisor/type >&2; echo hello; exit 42"
COMMAND = ("sh", "-c", SCRIPT)
# A guest that idles until signalled (the backend tests: no CPU while waiting; SIGNAL).
IDLE_COMMAND = ("sleep", "600")


def extents(path: Path) -> list[tuple[int, int]]:
    """The (offset, length) runs of data in a sparse file (SEEK_DATA/SEEK_HOLE)."""
    out: list[tuple[int, int]] = []
    with path.open("rb") as f:
        fd, size, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end - start))
            pos = end
    return out


async def _build(dest: Path, state: Path) -> dict[str, object]:
    artefacts = GuestArtefacts(state / "guest", KERNEL_DIR)
    kernel = await artefacts.kernel()
    base = await artefacts.initramfs(kernel)

    # For vxnd inside the Dom0 (xen/test_vxn_cli.py): the image archive to `vxn load`,
    # the kernel dir without its vmlinux (copied once, below), and the helper, as
    # GuestArtefacts caches it by the hash of its source (the Dom0 has no gcc).
    helper = await artefacts._helper()
    await asyncio.to_thread(shutil.copyfile, helper, dest / helper.name)
    (dest / "kernel").mkdir()
    await asyncio.to_thread(_copy_kernel_dir, kernel.dir, dest / "kernel")

    images = ImageService(StateDir(state / "images"), Platform.parse("linux/amd64"))
    images.state.ensure()
    archive = app_image(dest / "app.tar")
    with archive.open("rb") as f:
        await images.load(f)
    rootfs = await images.rootfs(APP_NAME)
    config = image_config(await images.inspect(APP_NAME), APP_NAME)
    spec = build_spec(config, RunOptions(command=COMMAND), container_id=secrets.token_hex(32))
    nonce = secrets.token_hex(16)
    ramdisk = protocol.encode_spec(spec, nonce)
    await asyncio.to_thread(write_ramdisk, base, dest / "ramdisk", ramdisk)
    idle = build_spec(config, RunOptions(command=IDLE_COMMAND), container_id=secrets.token_hex(32))
    idle_nonce = secrets.token_hex(16)
    idle_ramdisk = protocol.encode_spec(idle, idle_nonce)
    await asyncio.to_thread(write_ramdisk, base, dest / "ramdisk-idle", idle_ramdisk)
    await asyncio.to_thread(shutil.copyfile, kernel.vmlinux, dest / "vmlinux")
    cp = ["cp", "--sparse=always", str(rootfs.path), str(dest / "base.ext4")]
    await process.run(cp, limit=60.0)  # holes stay holes: the Dom0 copies only data
    record = dest / "record"
    await asyncio.to_thread(record.mkdir)
    with tempfile.TemporaryDirectory() as cache:  # what `vxn run` makes per container
        upper = await writable_disk(record, Path(cache))
    await asyncio.to_thread(upper.rename, dest / "upper.ext4")
    await asyncio.to_thread(record.rmdir)
    return {
        "helper": helper.name,
        "image": APP_NAME,
        "nonce": nonce,
        "idle_nonce": idle_nonce,
        "cmdline": CMDLINE_QEMU,  # the QEMU backend's, unchanged
        "argv": list(spec.argv),
        "writable": not spec.read_only,
        "kernel_release": kernel.release,
    }


def _copy_kernel_dir(src: Path, dest: Path) -> None:
    for name in ("release", "modules.order"):
        shutil.copyfile(src / name, dest / name)
    shutil.copytree(src / "modules", dest / "modules")


def stage(rundir: Path) -> Path:
    """Build the artefacts into `<rundir>/vxnguest/`; returns that directory."""
    if not (KERNEL_DIR / "vmlinux").exists():
        argv = [sys.executable, "-m", "vxn.engine.guest", "provision", str(KERNEL_DIR)]
        subprocess.run(argv, check=True, cwd=REPO)
    dest = rundir / DIR
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    state = cache_root() / "vxnguest-state"  # the helper and base initramfs stay cached
    shutil.rmtree(state / "images", ignore_errors=True)  # a fresh store: cheap, tiny image
    manifest = asyncio.run(_build(dest, state))
    manifest["sizes"] = {p.name: p.stat().st_size for p in dest.iterdir()}
    manifest["extents"] = {name: extents(dest / name) for name in ("base.ext4", "upper.ext4")}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dest
