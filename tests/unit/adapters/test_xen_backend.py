"""XenBackend without Xen: the real xl adapter runs a fake `xl` (vxn.testing.fake_xl),
the real XenStore adapter talks to the fake xenstored, and the test plays the guest on
the console pty's master, as xenconsoled's other end."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vxn.adapters.xen import XenBackend
from vxn.adapters.xl import Xl
from vxn.core import protocol, xenstore_keys as keys
from vxn.core.vm import Disk, GuestConfig, State
from vxn.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from vxn.testing.fake_xenstored import FakeXenstored
from vxn.testing.fake_xl import FakeXen

LABELS = {"id": "3f" * 32, "image": "sha256:ab", "origin": "vxn", "created": "2025-01-01"}
NONCE = "0123456789abcdef0123456789abcdef"


@dataclass
class Host:
    tmp: Path
    xs: FakeXenstored
    xen: FakeXen
    backend: XenBackend

    async def backend_again(self) -> XenBackend:
        """A second backend on the same host: what a restarted vxnd builds."""
        return await XenBackend.open(
            self.tmp / "guests", xl=Xl(self.xen.binary), socket=str(self.xs.socket), running=_yes
        )

    def config(self, name: str, **kw: Any) -> GuestConfig:
        return GuestConfig(
            name=name,
            kernel=str(self.tmp / "vmlinux"),
            initrd=str(self.tmp / "initrd"),
            cmdline=self.backend.cmdline,
            disks=(
                Disk(path=str(self.tmp / "base.ext4"), read_only=True),
                Disk(path=str(self.tmp / "upper.ext4"), read_only=False),
            ),
            labels=kw.pop("labels", LABELS),
            **kw,
        )


def _yes(_comm: str) -> bool:
    return True


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    for name in ("vmlinux", "initrd", "base.ext4", "upper.ext4"):
        (tmp_path / name).write_bytes(b"x")
    async with FakeXenstored(tmp_path / "xs") as xs, FakeXen(tmp_path, xs) as xen:
        backend = await XenBackend.open(
            tmp_path / "guests", xl=Xl(xen.binary), socket=str(xs.socket), running=_yes
        )
        try:
            yield Host(tmp_path, xs, xen, backend)
        finally:
            await backend.close()


async def _guest_says(master: int, data: bytes) -> None:
    await asyncio.to_thread(os.write, master, data)


async def _read_all(console: Any, until: int) -> protocol.ConsoleParser:
    parser = protocol.ConsoleParser(NONCE)
    async with asyncio.timeout(10):
        while parser.exit_code is None:
            parser.feed(await console.read())
    assert parser.exit_code == until
    return parser


async def test_create_renders_a_paused_pv_domain_labelled_by_dom0(host: Host) -> None:
    info = await host.backend.create(host.config("vxn-a", memory_mib=200, cpus=2))
    assert (info.state, info.labels) == (State.PAUSED, LABELS)
    cfg = (host.tmp / "guests" / "vxn-a" / "xl.cfg").read_text()
    domain = host.xen.domain("vxn-a")
    assert domain.config["type"] == "pv"
    assert domain.config["extra"] == host.backend.cmdline
    assert (domain.config["memory"], domain.config["vcpus"]) == (200, 2)
    assert domain.config["on_poweroff"] == "preserve"
    assert domain.config["disk"] == [
        f"format=raw,vdev=xvda,access=ro,target={host.tmp}/base.ext4",
        f"format=raw,vdev=xvdb,access=rw,target={host.tmp}/upper.ext4",
    ]
    assert ["create", "-p", str(host.tmp / "guests" / "vxn-a" / "xl.cfg")] in host.xen.calls
    assert f'uuid = "{domain.uuid}"' in cfg
    labels = keys.labels_dir(keys.vm_path(domain.uuid))
    assert await host.backend.store.read(f"{labels}/id") == LABELS["id"].encode()
    assert (await host.backend.store.get_perms(f"{labels}/origin"))[0] == "n0"
    assert (await host.backend.info("vxn-a")).state == State.PAUSED


async def test_a_run_through_the_console_pty(host: Host) -> None:
    """Console opened before the unpause; output and EXIT read; the stop seen through
    @releaseDomain; the witness read; destroy leaves nothing and is idempotent."""
    b = host.backend
    await b.create(host.config("vxn-a"))
    console = await b.console("vxn-a")
    assert await b.console("vxn-a") is console  # one per guest
    await b.unpause("vxn-a")
    assert (await b.info("vxn-a")).state == State.RUNNING
    waiter = asyncio.ensure_future(b.wait("vxn-a"))
    master = host.xen.domain("vxn-a").master
    await _guest_says(
        master,
        protocol.hello_line(NONCE)
        + protocol.start_marker(NONCE)
        + protocol.frame(protocol.Frame.STDOUT, b"hello\n")
        + protocol.exit_frame(42),
    )
    parser = await _read_all(console, until=42)
    assert parser.started
    await asyncio.sleep(0.1)
    assert not waiter.done()  # still running: only a poweroff ends the wait
    host.xen.poweroff("vxn-a", witness=b"42")
    async with asyncio.timeout(10):
        stopped = await waiter
    assert stopped.state == State.SHUTDOWN
    assert await b.exit_witness("vxn-a") == 42
    await b.destroy("vxn-a")
    await b.destroy("vxn-a")
    assert (await b.info("vxn-a")).state == State.GONE
    assert not (host.tmp / "guests" / "vxn-a").exists()
    assert host.xen.domains == {}
    assert await b.store.directory("/vm") == []


async def test_creates_run_one_at_a_time(host: Host) -> None:
    host.xen.create_delay = 0.2
    names = [f"vxn-{i}" for i in range(3)]
    await asyncio.gather(*(host.backend.create(host.config(n)) for n in names))
    assert sorted(d.name for d in host.xen.domains.values()) == names
    assert host.xen.most_creating == 1


async def test_a_signal_is_a_frame_on_the_console(host: Host) -> None:
    b = host.backend
    await b.create(host.config("vxn-a"))
    with pytest.raises(NotFound, match="no console attached"):
        await b.signal("vxn-a", 15)
    await b.console("vxn-a")
    await b.signal("vxn-a", 15)
    master = host.xen.domain("vxn-a").master
    got = await asyncio.to_thread(os.read, master, 100)
    # SIGTERM is 0x0f, hvc0's SysRq prefix: doubled, so the guest's tty gets one
    assert got == bytes.fromhex("12 00000000 00000004 0000000f0f")


async def test_input_survives_the_guest_consoles_sysrq_prefix(host: Host) -> None:
    await host.backend.create(host.config("vxn-a"))
    console = await host.backend.console("vxn-a")
    await console.write(b"a\x0fb\x0f\x0f")
    got = await asyncio.to_thread(os.read, host.xen.domain("vxn-a").master, 100)
    assert got == b"a\x0f\x0fb\x0f\x0f\x0f\x0f"


@pytest.mark.parametrize("witness", [b"300", b"-1", b"4x", b""])
async def test_a_forged_witness_is_ignored(host: Host, witness: bytes) -> None:
    await host.backend.create(host.config("vxn-a"))
    host.xen.poweroff("vxn-a", witness=witness)
    assert await host.backend.exit_witness("vxn-a") is None
    assert await host.backend.exit_witness("vxn-gone") is None


async def test_wait_survives_a_dropped_watch_connection(host: Host) -> None:
    b = host.backend
    await b.create(host.config("vxn-a"))
    await b.unpause("vxn-a")
    waiter = asyncio.ensure_future(b.wait("vxn-a"))
    await asyncio.sleep(0.3)
    await host.xs.drop_connections()
    await asyncio.sleep(0.3)
    assert not waiter.done()
    host.xen.poweroff("vxn-a")
    async with asyncio.timeout(10):
        assert (await waiter).state == State.SHUTDOWN


async def test_concurrent_destroys_of_one_guest_run_one_xl_destroy(host: Host) -> None:
    """An `rm -f` and the supervisor's end destroy the same guest at once: the second
    joins the first (two xl destroys of one domain can hang in libxl)."""
    await host.backend.create(host.config("vxn-a"))
    await host.backend.unpause("vxn-a")
    await asyncio.gather(*(host.backend.destroy("vxn-a") for _ in range(3)))
    assert host.xen.calls.count(["destroy", "vxn-a"]) == 1
    assert host.xen.domains == {}
    await host.backend.destroy("vxn-a")  # and a later one finds nothing to do
    assert host.xen.calls.count(["destroy", "vxn-a"]) == 1


async def test_wait_on_a_destroyed_guest_says_gone(host: Host) -> None:
    await host.backend.create(host.config("vxn-a"))
    waiter = asyncio.ensure_future(host.backend.wait("vxn-a"))
    await asyncio.sleep(0.2)
    await host.backend.destroy("vxn-a")
    async with asyncio.timeout(10):
        assert (await waiter).state == State.GONE


async def test_preflight_memory_beyond_free_names_needed_and_free(host: Host) -> None:
    free = host.xen.free_mib
    with pytest.raises(FailedPrecondition) as e:
        await host.backend.create(host.config("vxn-big", memory_mib=free + 1))
    assert str(e.value) == (
        f"guest vxn-big: needs {free + 1} MiB but Xen has {free} MiB free; "
        "lower -m or stop other guests"
    )
    assert host.xen.domains == {}
    assert not any(c[0] == "create" for c in host.xen.calls)


async def test_a_name_collision_leaves_the_other_domain_alone(host: Host) -> None:
    await host.backend.create(host.config("vxn-a", labels={}))
    with pytest.raises(AlreadyExists, match=r"xl destroy vxn-a"):
        await host.backend.create(host.config("vxn-a"))
    assert [d.name for d in host.xen.domains.values()] == ["vxn-a"]


async def test_a_missing_kernel_is_named_before_any_xl_call(host: Host) -> None:
    (host.tmp / "vmlinux").unlink()
    with pytest.raises(FailedPrecondition, match=r"the kernel .*vmlinux is missing"):
        await host.backend.create(host.config("vxn-a"))
    assert host.xen.calls == [["info"]]  # the preflight's, at open


async def test_xl_refusing_the_create_leaves_nothing(host: Host) -> None:
    (host.tmp / "upper.ext4").unlink()
    with pytest.raises(Unavailable, match=r"xl create -p .* failed \(exit 1\): .*upper.ext4"):
        await host.backend.create(host.config("vxn-a"))
    assert host.xen.domains == {}
    assert not (host.tmp / "guests" / "vxn-a").exists()


async def test_labels_that_cannot_be_written_destroy_the_new_domain(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xl creates the domain, then XenStore answers nothing: the label write fails,
    and so does the destroy's lookup, which then lets xl destroy it anyway."""
    host.backend.store.limit = 0.5
    frozen = contextlib.ExitStack()
    create = host.xen._create

    def create_then_freeze(path: Path, *, paused: bool) -> None:
        create(path, paused=paused)
        frozen.enter_context(host.xs.freeze())

    monkeypatch.setattr(host.xen, "_create", create_then_freeze)
    with frozen, pytest.raises(Unavailable, match="no answer"):
        await host.backend.create(host.config("vxn-a"))
    assert ["destroy", "vxn-a"] in host.xen.calls
    assert host.xen.domains == {}


async def test_a_cancelled_create_leaves_no_domain(host: Host) -> None:
    task = asyncio.ensure_future(host.backend.create(host.config("vxn-a")))
    async with asyncio.timeout(10):
        await host.xen.created.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert host.xen.domains == {}


async def test_list_and_adopt_find_only_labelled_domains(host: Host) -> None:
    await host.backend.create(host.config("vxn-a"))
    await host.backend.unpause("vxn-a")
    await host.backend.create(host.config("foreign", labels={}))
    second = await host.backend_again()
    try:
        listed = {g.name: dict(g.labels) for g in await second.list()}
        assert listed == {"vxn-a": LABELS}
        with pytest.raises(NotFound, match="no Xen domain of vxn's"):
            await second.adopt("foreign")
        with pytest.raises(NotFound):
            await second.adopt("vxn-nope")
        adopted = await second.adopt("vxn-a")
        assert (adopted.state, adopted.labels) == (State.RUNNING, LABELS)
        master = host.xen.domain("vxn-a").master
        await _guest_says(master, protocol.hello_line(NONCE) + protocol.start_marker(NONCE))
        await _guest_says(master, protocol.exit_frame(7))
        await _read_all(await second.console("vxn-a"), until=7)  # attached by adopt
    finally:
        await second.close()


async def test_a_domain_whose_vm_node_is_not_libxls_has_no_labels(host: Host) -> None:
    await host.backend.create(host.config("vxn-a"))
    domid = host.xen.domain("vxn-a").domid
    await host.backend.store.write(keys.vm_key(domid), b"/local/domain/0/forged")
    assert await host.backend.list() == []


async def test_a_console_path_that_is_not_a_pty_is_not_opened(host: Host) -> None:
    """console/ is guest-writable: a forged path is ignored until xenconsoled's is back."""
    await host.backend.create(host.config("vxn-a"))
    domid = host.xen.domain("vxn-a").domid
    key = keys.console_tty_key(domid)
    pty = await host.backend.store.read(key)
    assert pty is not None
    await host.backend.store.write(key, b"/etc/shadow")
    opening = asyncio.ensure_future(host.backend.console("vxn-a"))
    await asyncio.sleep(0.5)
    assert not opening.done()
    await host.backend.store.write(key, pty)
    async with asyncio.timeout(5):
        console = await opening
    await console.write(b"x")
    assert await asyncio.to_thread(os.read, host.xen.domain("vxn-a").master, 10) == b"x"


async def test_pause_and_unpause(host: Host) -> None:
    await host.backend.create(host.config("vxn-a"))
    await host.backend.unpause("vxn-a")
    await host.backend.pause("vxn-a")
    assert (await host.backend.info("vxn-a")).state == State.PAUSED


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-xl", r"xl-missing not found; install the Xen tools"),
        ("no-xenconsoled", r"xenconsoled is not running; start it"),
        ("no-xenstored", r"xenstored is not answering .*; start it"),
        ("not-root", r"needs root .*; run vxnd as root"),
    ],
)
async def test_open_names_what_is_missing_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, message: str
) -> None:
    async with FakeXenstored(tmp_path / "xs") as xs, FakeXen(tmp_path, xs) as xen:
        xl = Xl(xen.binary if setup != "no-xl" else "xl-missing")
        socket = str(xs.socket if setup != "no-xenstored" else tmp_path / "none")
        if setup == "not-root":
            monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(FailedPrecondition, match=message):
            await XenBackend.open(
                tmp_path, xl=xl, socket=socket, running=lambda comm: setup != "no-xenconsoled"
            )
