"""The XenStore contract suite (vxn.testing.xenstore_contract) against the Dom0's real
xenstored (oxenstored, Debian's default). @releaseDomain comes from a real domain,
created paused and destroyed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from e2e.xen.guest import initramfs, pv_config
from vxn.adapters import process
from vxn.adapters.xenstore import XenStore
from vxn.testing.xenstore_contract import ReleaseDomain, XenStoreContract


@pytest.fixture
async def store() -> AsyncIterator[XenStore]:
    s = XenStore()
    yield s
    await s.close()


@pytest.fixture
async def scratch(store: XenStore) -> AsyncIterator[str]:
    path = f"/local/domain/0/vxntest/{secrets.token_hex(4)}"
    yield path
    await store.rm(path)


@pytest.fixture
def release_domain(tmp_path: Path) -> ReleaseDomain:
    ramdisk = tmp_path / "initrd"
    ramdisk.write_bytes(initramfs("#!/bin/busybox sh\n/bin/busybox poweroff -f\n"))
    name = f"vxn-xs-{secrets.token_hex(3)}"
    cfg = tmp_path / "guest.cfg"
    cfg.write_text(pv_config(name, ramdisk))

    async def cycle() -> None:
        await process.run(["xl", "create", "-p", str(cfg)], limit=120)
        await asyncio.sleep(0)
        await process.run(["xl", "destroy", name], limit=60)

    return cycle


class TestRealXenstored(XenStoreContract):
    pass
