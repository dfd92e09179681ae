"""A new vxnd reconciling the records with the hypervisor: adopt, recover what the
dead vxnd missed, mark vanished ones exited, destroy what should be gone, and never
touch guests that are not this state dir's (another vxnd's, vxn-oci-runtime's, or
nobody's). Plus: 100 containers leak nothing."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from pathlib import Path

import pytest
from unit.daemon.containers_fixtures import service

from vxn.core import protocol
from vxn.core.guestspec import RunOptions
from vxn.engine.containerlog import ContainerLog
from vxn.engine.containers import ContainerService, CreateRequest
from vxn.engine.records import RecordStore
from vxn.errors import FailedPrecondition
from vxn.testing.fake_hypervisor import FakeHypervisor, Service

F = protocol.Frame


async def started(svc: ContainerService, name: str) -> str:
    record = await svc.create(
        CreateRequest(image="busybox", options=RunOptions(read_only=True), name=name)
    )
    await svc.start(record["id"])
    return str(record["id"])


def logged(svc: ContainerService, cid: str) -> bytes:
    return b"".join(base64.b64decode(e["b"]) for e in ContainerLog(svc.store.dir(cid)).entries())


async def test_a_new_vxnd_adopts_and_recovers_what_the_old_one_missed(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service(banner=b"up\n"))
    old = service(tmp_path, hv)
    keep = await started(old, "keep")
    ended = await started(old, "ended")
    await asyncio.sleep(0.05)
    await old.close()  # vxnd dies: the guests run on
    hv.emit(keep[:12], protocol.frame(F.STDOUT, b"while down\n"))
    hv.emit(ended[:12], protocol.frame(F.STDOUT, b"bye\n") + protocol.exit_frame(42))
    hv.foreign["someone-else"] = {}
    hv.foreign["oci-1"] = {"origin": "oci-runtime", "id": keep}

    new = service(tmp_path, hv)
    await new.reconcile()
    assert new.store.records[keep]["state"] == "running"
    assert await new.wait(ended) == 42
    assert logged(new, keep) == b"up\nwhile down\n"  # nothing twice, nothing lost
    assert logged(new, ended) == b"up\nbye\n"
    hv.emit(keep[:12], protocol.frame(F.STDOUT, b"live\n"))
    await asyncio.sleep(0.05)
    assert logged(new, keep) == b"up\nwhile down\nlive\n"
    assert await new.stop("keep", 5) == 143
    assert set(hv.foreign) == {"someone-else", "oci-1"}  # never touched
    assert "someone-else" not in hv.destroyed
    assert "oci-1" not in hv.destroyed
    await new.close()


async def test_without_a_console_log_an_adopter_resumes_in_the_frames(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service(banner=b"up\n"), keeps_log=False)  # like Xen's pty
    old = service(tmp_path, hv)
    keep = await started(old, "keep")
    ended = await started(old, "ended")
    await asyncio.sleep(0.05)
    await old.close()
    hv.emit(keep[:12], protocol.frame(F.STDOUT, b"while down\n"))
    hv.emit(ended[:12], protocol.exit_frame(42))

    new = service(tmp_path, hv)
    await new.reconcile()
    assert await new.wait(ended) == 42  # a frame, not boot noise
    await asyncio.sleep(0.05)
    assert logged(new, keep) == b"up\nwhile down\n"
    assert new.inspect("keep")["state"] == "running"
    assert await new.stop("keep", 5) == 143
    await new.close()


async def test_vanished_guests_exit_and_owned_leftovers_are_destroyed(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service(), keeps_log=False)  # like Xen: no console log
    old = service(tmp_path, hv)
    gone = await started(old, "gone")
    witnessed = await started(old, "witnessed")
    removed = await started(old, "removed")
    await old.close()
    hv.guests.pop(gone[:12])  # vanished, with no witness
    hv.guests.pop(witnessed[:12])
    hv.witness[witnessed[:12]] = 3
    await old.store.delete(removed)  # its record is gone: the guest must go too

    new = service(tmp_path, hv)
    await new.reconcile()
    gone_doc, witnessed_doc = new.inspect("gone"), new.inspect("witnessed")
    assert (gone_doc["state"], gone_doc["exit_code"]) == ("exited", 255)
    assert gone_doc["error"] == "its guest vanished while vxnd was down"
    assert (witnessed_doc["state"], witnessed_doc["exit_code"]) == ("exited", 3)
    assert removed[:12] in hv.destroyed
    assert removed[:12] not in hv.guests
    await new.close()


async def test_a_record_that_says_exited_gets_its_guest_destroyed(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service())
    old = service(tmp_path, hv)
    cid = await started(old, "stale")
    await old.close()
    await old.store.update(cid, state="exited", exit_code=0)
    new = service(tmp_path, hv)
    await new.reconcile()
    assert cid[:12] not in hv.guests
    assert new.inspect(cid)["state"] == "exited"
    await new.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_hundred_containers_then_all_stopped_leak_nothing(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service(banner=b"hi\n"))
    svc = service(tmp_path, hv)
    await started(svc, "warm")
    await svc.remove("warm", force=True)
    tasks, fds = len(asyncio.all_tasks()), _fds()
    ids = [await started(svc, f"c{i}") for i in range(100)]
    assert len(svc.list()) == 100
    assert len(asyncio.all_tasks()) == tasks + 300  # each: its supervisor, console read, wait
    codes = await asyncio.gather(*(svc.stop(cid, 5) for cid in ids))
    assert set(codes) == {143}
    for cid in ids:
        await svc.remove(cid)
    assert (len(asyncio.all_tasks()), _fds()) == (tasks, fds)
    assert [p.name for p in svc.store.root.iterdir()] == ["owner"]  # the state dir's identity
    assert hv.guests == {}
    assert svc._sups == {}
    assert svc._listeners == {}
    assert svc._waiters == {}
    await svc.close()


async def test_two_state_dirs_sharing_a_hypervisor_never_touch_each_other(
    tmp_path: Path,
) -> None:
    hv = FakeHypervisor(Service(banner=b"up\n"))  # one hypervisor, as Xen is to every Dom0 tool
    a, b = service(tmp_path / "a", hv), service(tmp_path / "b", hv)
    mine = await started(a, "mine")
    theirs = await started(b, "theirs")
    dropped = await started(b, "dropped")
    assert hv.created[mine[:12]].labels["owner"] == a.owner
    assert hv.created[theirs[:12]].labels["owner"] == b.owner != a.owner
    await a.close()
    await b.close()
    await b.store.delete(dropped)  # b's record is gone: only b may destroy that guest
    hv.foreign["unowned"] = {"origin": "vxn", "id": mine}  # vxn's, but no state dir's

    a2 = service(tmp_path / "a", hv)
    await a2.reconcile()
    assert a2.owner == a.owner  # the identity is the state dir's, kept across restarts
    assert set(hv.guests) == {mine[:12], theirs[:12], dropped[:12]}  # a destroyed none of b's
    assert [r["name"] for r in a2.list(all=True)] == ["mine"]
    assert a2.inspect("mine")["state"] == "running"

    b2 = service(tmp_path / "b", hv)
    await b2.reconcile()
    assert set(hv.guests) == {mine[:12], theirs[:12]}  # b's own leftover is b's to destroy
    assert b2.inspect("theirs")["state"] == "running"
    assert await b2.stop("theirs", 5) == 143
    assert mine[:12] in hv.guests
    assert await a2.stop("mine", 5) == 143
    assert "unowned" in hv.foreign
    assert "unowned" not in hv.destroyed
    await a2.close()
    await b2.close()


async def test_a_same_named_guest_that_is_not_this_containers_is_never_destroyed(
    tmp_path: Path,
) -> None:
    hv = FakeHypervisor(Service())
    svc = service(tmp_path, hv)
    record = await svc.create(
        CreateRequest(image="busybox", options=RunOptions(read_only=True), name="clash")
    )
    hv.foreign[record["guest"]] = {"origin": "vxn", "owner": "f" * 32, "id": record["id"]}
    with pytest.raises(FailedPrecondition) as caught:
        await svc.start("clash")
    assert str(caught.value) == (
        f"container clash ({record['id'][:12]}): a guest named {record['guest']} exists and "
        "is not this container's; remove that guest, or recreate this container"
    )
    assert record["guest"] in hv.foreign
    assert record["guest"] not in hv.destroyed
    doc = svc.inspect("clash")
    assert (doc["state"], doc["exit_code"], doc["error"]) == ("exited", 125, str(caught.value))
    await svc.remove("clash")
    assert record["guest"] in hv.foreign  # rm leaves it alone too
    await svc.close()


def test_the_state_dirs_identity_is_made_once_and_checked(tmp_path: Path) -> None:
    root = tmp_path / "containers"
    first = RecordStore(root).owner()
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert RecordStore(root).owner() == first
    assert (root / "owner").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in root.iterdir()] == ["owner"]  # no temporary file left
    (root / "owner").write_text("garbage\n")
    with pytest.raises(FailedPrecondition, match="not a vxn state dir identity"):
        RecordStore(root).owner()


async def test_a_removal_interrupted_by_a_vxnd_crash_is_finished(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service())
    old = service(tmp_path, hv)
    cid = await started(old, "half")
    await old.close()
    await old.store.update(cid, state="removing")  # it died between marking and deleting
    new = service(tmp_path, hv)
    await new.reconcile()
    assert cid not in new.store.records
    assert not new.store.dir(cid).exists()
    assert hv.guests == {}
    await new.close()
