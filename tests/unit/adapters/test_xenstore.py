"""The XenStore adapter against the fake xenstored: the shared contract, plus the
failures only a fake can stage (a stuck daemon, a dropped connection)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vxn.adapters.xenstore import XenStore
from vxn.errors import Unavailable
from vxn.testing.fake_xenstored import FakeXenstored
from vxn.testing.xenstore_contract import ReleaseDomain, XenStoreContract, next_event


@pytest.fixture
async def xenstored(tmp_path: Path) -> AsyncIterator[FakeXenstored]:
    async with FakeXenstored(tmp_path / "socket") as xs:
        yield xs


@pytest.fixture
async def store(xenstored: FakeXenstored) -> AsyncIterator[XenStore]:
    s = XenStore(str(xenstored.socket), limit=2.0)
    yield s
    await s.close()


@pytest.fixture
def scratch() -> str:
    return f"/local/domain/0/vxntest/{secrets.token_hex(4)}"


@pytest.fixture
def release_domain(xenstored: FakeXenstored) -> ReleaseDomain:
    async def fire() -> None:
        xenstored.release_domain()

    return fire


class TestFakeXenstored(XenStoreContract):
    pass


async def test_a_stuck_xenstored_misses_the_deadline(
    xenstored: FakeXenstored, store: XenStore
) -> None:
    await store.write("/a", b"1")
    threads = threading.active_count()
    stuck = r"read /a: no answer in 2 s; is xenstored running"
    with xenstored.freeze(), pytest.raises(Unavailable, match=stuck):
        await store.read("/a")
    assert await store.read("/a") == b"1"  # a new client
    await asyncio.sleep(0.1)
    assert threading.active_count() <= threads + 1  # the stuck worker was released


async def test_the_client_is_recreated_after_the_connection_breaks(
    xenstored: FakeXenstored, store: XenStore
) -> None:
    await store.write("/a", b"1")
    await xenstored.drop_connections()
    with pytest.raises(Unavailable):
        await store.read("/a")
    assert await store.read("/a") == b"1"


async def test_a_watch_fails_when_its_connection_ends_and_can_be_rearmed(
    xenstored: FakeXenstored, store: XenStore
) -> None:
    async with store.watch("@releaseDomain") as watch:
        await next_event(watch)
        await xenstored.drop_connections()
        with pytest.raises(Unavailable, match="watch connection ended"):
            await next_event(watch)
    async with store.watch("@releaseDomain") as watch:
        await next_event(watch)
        xenstored.release_domain()
        assert await next_event(watch) == "@releaseDomain"


async def test_no_xenstored_names_the_fix(tmp_path: Path) -> None:
    s = XenStore(str(tmp_path / "absent"))
    with pytest.raises(Unavailable, match=r"cannot connect to .*absent.*start xenstored"):
        await s.read("/a")
