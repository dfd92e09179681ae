"""One run of a container on the fake hypervisor, through ContainerService and its
supervisor (the one console loop): the ramdisk, output and exit code, the guest's
error frame, and boot failures (exit 125 with the console's tail; guest destroyed)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from unit.daemon.containers_fixtures import Images

from vxn.adapters.hypervisor import GuestInfo
from vxn.config import GuestSettings, Settings
from vxn.core import protocol
from vxn.core.guestspec import RunOptions
from vxn.core.vm import GuestConfig
from vxn.engine.containers import ContainerService, CreateRequest
from vxn.engine.supervisor import Listener
from vxn.errors import FailedPrecondition, Internal, Unavailable
from vxn.testing.fake_backend import fake_containers
from vxn.testing.fake_hypervisor import FakeHypervisor, Script, normal


def make(tmp: Path, hv: FakeHypervisor, timeout: float = 5.0) -> ContainerService:
    guest = GuestSettings(boot_timeout=timeout)
    settings = Settings(state_dir=tmp / "s", run_dir=tmp / "r", guest=guest)
    return fake_containers(settings, Images(), hv)


async def created(svc: ContainerService) -> tuple[str, str, Listener]:
    """A container for `echo hi`, attached before its start: (id, guest, listener)."""
    options = RunOptions(command=("echo", "hi"), read_only=True)
    record = await svc.create(CreateRequest(image="busybox", options=options))
    cid, listener = await svc.attach(record["id"], stdin=False, logs=False)
    return cid, record["guest"], listener


async def lines(listener: Listener) -> list[dict[str, Any]]:
    got = []
    while (line := await listener.get()) is not None:
        got.append(line)
    return got


async def test_output_and_exit_code(tmp_path: Path) -> None:
    hv = FakeHypervisor(normal(b"hi\n", 42))
    svc = make(tmp_path, hv)
    cid, guest, listener = await created(svc)
    await svc.start(cid)
    assert await lines(listener) == [{"out": base64.b64encode(b"hi\n").decode()}, {"exit": 42}]
    assert await svc.wait(cid) == 42
    assert hv.destroyed == [guest]
    assert (svc.store.dir(cid) / "initrd").stat().st_mode & 0o777 == 0o600
    await svc.close()


async def test_the_ramdisk_is_the_base_then_the_spec(tmp_path: Path) -> None:
    seen: list[dict[str, list[str]]] = []

    def script(spec: dict[str, list[str]]) -> list[bytes]:
        seen.append(spec)
        return normal()(spec)

    svc = make(tmp_path, FakeHypervisor(script))
    cid, _, _ = await created(svc)
    await svc.start(cid)
    assert await svc.wait(cid) == 0
    assert seen[0]["arg"] == ["echo", "hi"]
    assert (svc.store.dir(cid) / "initrd").read_bytes().startswith(b"fake")  # FakeFiles' base
    await svc.close()


async def test_an_error_frame_reaches_the_client_and_the_record(tmp_path: Path) -> None:
    def script(spec: dict[str, list[str]]) -> list[bytes]:
        nonce = spec["nonce"][0]
        error = protocol.frame(protocol.Frame.ERROR, b'exec: "x": not found')
        return [protocol.start_marker(nonce) + error + protocol.exit_frame(127)]

    svc = make(tmp_path, FakeHypervisor(script))
    cid, _, listener = await created(svc)
    await svc.start(cid)
    assert await lines(listener) == [{"message": 'exec: "x": not found'}, {"exit": 127}]
    doc = svc.inspect(cid)
    assert (doc["exit_code"], doc["error"]) == (127, 'exec: "x": not found')
    await svc.close()


def silent(spec: dict[str, list[str]]) -> list[bytes]:
    return [b"Linux version 6.1\n"]


async def failed_start(svc: ContainerService, error: type[Exception]) -> tuple[str, str, str]:
    """Start a container whose boot fails: (guest, the error, the record's error)."""
    cid, guest, listener = await created(svc)
    with pytest.raises(error) as caught:
        await svc.start(cid)
    assert await lines(listener) == [{"exit": 125}]
    doc = svc.inspect(cid)
    assert (doc["state"], doc["exit_code"]) == ("exited", 125)
    return guest, str(caught.value), doc["error"]


async def test_a_rm_container_whose_guest_cannot_be_created_is_removed(tmp_path: Path) -> None:
    """`run --rm` refused by the backend's preflight leaves no Exited (125) behind."""
    hv = FakeHypervisor(silent)
    refusal = "guest g: needs 4096 MiB but Xen has 900 MiB free; lower -m or stop other guests"

    async def refuse(config: GuestConfig) -> GuestInfo:
        raise FailedPrecondition(refusal)

    hv.create = refuse  # type: ignore[method-assign]
    svc = make(tmp_path, hv)
    options = RunOptions(command=("true",), read_only=True)
    kept = await svc.create(CreateRequest(image="busybox", options=options))
    gone = await svc.create(CreateRequest(image="busybox", options=options, remove=True))
    for record in (kept, gone):
        with pytest.raises(FailedPrecondition, match=refusal):
            await svc.start(record["id"])
    assert [r["id"] for r in svc.list(all=True)] == [kept["id"]]
    assert (svc.inspect(kept["id"])["exit_code"], svc.inspect(kept["id"])["error"]) == (
        125,
        refusal,
    )
    assert not (tmp_path / "s" / "containers" / gone["id"]).exists()
    await svc.close()


async def test_a_guest_that_never_says_hello_times_out(tmp_path: Path) -> None:
    hv = FakeHypervisor(silent, stop=False, boot_log=b"[ 0.1] booting\n")
    svc = make(tmp_path, hv, timeout=0.2)
    guest, message, recorded = await failed_start(svc, Unavailable)
    assert message.startswith(f"guest {guest}: did not start in 0 s before guest-init said hello")
    assert recorded == message
    assert hv.destroyed == [guest]
    await svc.close()


async def test_a_guest_that_stops_early_shows_its_console(tmp_path: Path) -> None:
    hv = FakeHypervisor(silent, boot_log=b"Kernel panic - not syncing: VFS\n")
    svc = make(tmp_path, hv)
    guest, message, recorded = await failed_start(svc, Unavailable)
    assert message.startswith(f"guest {guest}: stopped before guest-init said hello")
    assert "check the kernel and memory (256 MiB)" in message
    assert "  | Kernel panic - not syncing: VFS" in message
    assert "  | Linux version 6.1" in message
    assert recorded == message
    assert hv.destroyed == [guest]
    await svc.close()


async def test_a_protocol_error_is_internal_and_the_guest_is_destroyed(tmp_path: Path) -> None:
    bad: Script = lambda spec: [protocol.start_marker(spec["nonce"][0]) + b"\x09\0\0\0\0"]  # noqa: E731
    hv = FakeHypervisor(bad)
    svc = make(tmp_path, hv)
    guest, message, recorded = await failed_start(svc, Internal)
    assert "bad frame header" in message
    assert recorded == message
    assert hv.destroyed == [guest]
    await svc.close()
