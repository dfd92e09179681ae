"""The contract vxn's xl adapter keeps, against the fake `xl` (unit tier, vxn.testing.fake_xl)
and the real one in a Dom0 (e2e tier). Subclass `XlContract` and provide:

    xl          a `vxn.adapters.xl.Xl`
    guest       (kernel, ramdisk) of a PV guest that idles once unpaused
    name        a fresh domain name only this test uses (destroyed afterwards)

The configs are vxn's own renderer's (`vxn.core.xlconfig.render`), so the real run
also proves that xl's parser takes what vxn writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vxn.adapters.xl import Xl
from vxn.core.vm import State
from vxn.core.xlconfig import XlConfig, render
from vxn.errors import Unavailable

MEMORY = 128  # a PV guest needs 96 (XEN-IN-QEMU.md 3.3)


def config(tmp: Path, name: str, guest: tuple[Path, Path]) -> Path:
    kernel, ramdisk = guest
    text = render(
        XlConfig(
            name=name,
            kernel=str(kernel),
            ramdisk=str(ramdisk),
            extra="console=hvc0 quiet",
            memory_mib=MEMORY,
        )
    )
    path = tmp / f"{name}.cfg"
    path.write_text(text)
    return path


class XlContract:
    async def test_a_domain_from_create_to_destroy(
        self, xl: Xl, guest: tuple[Path, Path], name: str, tmp_path: Path
    ) -> None:
        cfg = config(tmp_path, name, guest)
        free = (await xl.info()).free_memory_mib
        await xl.create(cfg, paused=True)
        domain = await xl.domain(name)
        assert domain is not None
        assert (domain.name, domain.memory_mib, domain.state) == (name, MEMORY, State.PAUSED)
        assert await xl.domid(name) == domain.domid
        assert domain in await xl.list()
        assert free - (await xl.info()).free_memory_mib >= MEMORY

        with pytest.raises(Unavailable, match=r"xl create -p .*already exists"):
            await xl.create(cfg, paused=True)
        assert [d.name for d in await xl.list()].count(name) == 1

        await xl.unpause(name)
        assert (await xl.domain(name)).state == State.RUNNING  # type: ignore[union-attr]
        await xl.pause(name)
        assert (await xl.domain(name)).state == State.PAUSED  # type: ignore[union-attr]
        await xl.destroy(name)
        assert await xl.domain(name) is None
        assert name not in [d.name for d in await xl.list()]

    async def test_a_missing_domain(self, xl: Xl, name: str) -> None:
        assert await xl.domain(name) is None
        assert await xl.domid(name) is None
        with pytest.raises(Unavailable, match=rf"^xl destroy {name} failed \(exit \d+\): \S"):
            await xl.destroy(name)

    async def test_info(self, xl: Xl) -> None:
        info = await xl.info()
        assert info.free_memory_mib > 0
        assert re.match(r"\d+\.\d+", info.xen_version), info
