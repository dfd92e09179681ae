"""A ContainerService whose guests are FakeHypervisor `Service`s, for tests and bench.

vxnd uses it when started with VXN_TESTING_FAKE_BACKEND=1 (never in production: the
guests live only in that vxnd's memory), so the daemon's own overhead can be measured
with many containers and no QEMU.
"""

from __future__ import annotations

from pathlib import Path

from vxn.adapters.hypervisor import Hypervisor
from vxn.adapters.statedir import RunDir, StateDir
from vxn.config import Settings
from vxn.engine.containers import ContainerService, Images
from vxn.errors import InvalidArgument
from vxn.testing.fake_hypervisor import FakeHypervisor, Service

ENV = "VXN_TESTING_FAKE_BACKEND"


class FakeBackends:
    """Every backend name is the one fake."""

    def __init__(self, hv: FakeHypervisor) -> None:
        self.hv = hv

    def resolve(self, name: str | None) -> str:
        if name not in (None, "auto", "qemu", "xen", "fake"):
            raise InvalidArgument(f"backend {name!r}: want auto, qemu or xen")
        return "fake"

    async def get(self, name: str | None = None) -> Hypervisor:
        self.resolve(name)
        return self.hv


class FakeFiles:
    """A kernel and base initramfs the fake never boots: a few bytes each."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def files(self) -> tuple[Path, Path]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        kernel, initramfs = self.root / "vmlinux", self.root / "initramfs.cpio"
        for path in (kernel, initramfs):
            if not path.exists():
                path.write_bytes(b"fake")
        return kernel, initramfs


def fake_containers(
    settings: Settings, images: Images, hv: FakeHypervisor | None = None
) -> ContainerService:
    state = StateDir(settings.state_dir)
    return ContainerService(
        settings,
        state,
        RunDir(settings.run_dir),
        images,
        backends=FakeBackends(hv or FakeHypervisor(Service())),
        files=FakeFiles(state.guest / "fake"),
    )
