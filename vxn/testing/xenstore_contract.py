"""The contract vxn's XenStore adapter keeps, against the fake xenstored (unit tier)
and the real one in a Dom0 (e2e tier). Subclass `XenStoreContract` and provide:

    store           a connected `vxn.adapters.xenstore.XenStore`
    scratch         a fresh path only this test uses (removed afterwards)
    release_domain  an async callable that makes xenstored fire @releaseDomain
                    (the fake: its hook; real Xen: a domain created and destroyed)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from vxn.adapters.xenstore import XenStore
from vxn.errors import InvalidArgument

ReleaseDomain = Callable[[], Awaitable[None]]
EVENT_LIMIT = 60.0  # a real domain's create + destroy under TCG


async def next_event(watch: object, limit: float = 10.0) -> str:
    async with asyncio.timeout(limit):
        return await watch.next()  # type: ignore[attr-defined, no-any-return]


class XenStoreContract:
    async def test_write_then_read(self, store: XenStore, scratch: str) -> None:
        await store.write(f"{scratch}/a", b"hello world: 1/2")
        assert await store.read(f"{scratch}/a") == b"hello world: 1/2"

    async def test_a_missing_node_reads_none(self, store: XenStore, scratch: str) -> None:
        assert await store.read(f"{scratch}/nope") is None
        assert await store.directory(f"{scratch}/nope") == []

    async def test_an_empty_value_is_written(self, store: XenStore, scratch: str) -> None:
        # pyxs 0.4.1 refuses b"" itself: the adapter's workaround must reach xenstored
        await store.write(f"{scratch}/empty", b"")
        assert await store.read(f"{scratch}/empty") == b""
        assert "empty" in await store.directory(scratch)

    async def test_directory_and_rm(self, store: XenStore, scratch: str) -> None:
        await store.write(f"{scratch}/d/x", b"1")
        await store.write(f"{scratch}/d/y/z", b"2")
        assert sorted(await store.directory(f"{scratch}/d")) == ["x", "y"]
        await store.rm(f"{scratch}/d")
        assert await store.read(f"{scratch}/d/y/z") is None
        await store.rm(f"{scratch}/d")  # idempotent

    async def test_write_all_is_one_transaction(self, store: XenStore, scratch: str) -> None:
        values = {f"{scratch}/l/{k}": v.encode() for k, v in {"id": "3f", "origin": "vxn"}.items()}
        async with store.watch(f"{scratch}/l") as watch:
            assert await next_event(watch) == f"{scratch}/l"  # the initial event
            await store.write_all(values)
            seen = await next_event(watch)
            # whichever event comes first, every value is already there
            assert seen.startswith(f"{scratch}/l")
            assert await store.read(f"{scratch}/l/id") == b"3f"
            assert await store.read(f"{scratch}/l/origin") == b"vxn"

    async def test_perms_round_trip(self, store: XenStore, scratch: str) -> None:
        await store.write(f"{scratch}/p", b"x")
        await store.set_perms(f"{scratch}/p", ["n0", "r5"])
        assert await store.get_perms(f"{scratch}/p") == ["n0", "r5"]
        await store.write(f"{scratch}/p/child", b"y")  # created by domain 0: inherits
        assert await store.get_perms(f"{scratch}/p/child") == ["n0", "r5"]

    async def test_a_watch_sees_changes_below_it(self, store: XenStore, scratch: str) -> None:
        await store.mkdir(f"{scratch}/w")
        async with store.watch(f"{scratch}/w") as watch:
            assert await next_event(watch) == f"{scratch}/w"
            await store.write(f"{scratch}/w/k", b"v")
            assert await next_event(watch) == f"{scratch}/w/k"

    async def test_release_domain_is_seen(
        self, store: XenStore, release_domain: ReleaseDomain
    ) -> None:
        async with store.watch("@releaseDomain") as watch:
            assert await next_event(watch) == "@releaseDomain"
            await release_domain()
            assert await next_event(watch, EVENT_LIMIT) == "@releaseDomain"

    async def test_bad_paths_and_values_are_refused(self, store: XenStore, scratch: str) -> None:
        with pytest.raises(InvalidArgument, match="no dots"):
            await store.read(f"{scratch}/a.b")
        with pytest.raises(InvalidArgument, match="printable ASCII"):
            await store.write(f"{scratch}/a", b"\n")
