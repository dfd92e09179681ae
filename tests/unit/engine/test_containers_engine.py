"""ContainerService on the fake hypervisor: restart through `restarting`, the lifecycle
table as the only way states change, Docker's answers (wait, start, kill, rm), one op
at a time per container, streams that end when their container goes, a client that
falls behind a flood, and input that is malformed or too much."""

from __future__ import annotations

import asyncio
import base64
import itertools
from pathlib import Path
from typing import Any

import pytest
from unit.daemon.containers_fixtures import Images, service

from vxn.core import lifecycle, protocol
from vxn.core.guestspec import RunOptions
from vxn.engine.containerlog import ContainerLog
from vxn.engine.containers import ContainerService, CreateRequest
from vxn.engine.supervisor import QUEUE, Listener
from vxn.errors import FailedPrecondition, InvalidArgument, NotFound
from vxn.testing.fake_backend import fake_containers
from vxn.testing.fake_hypervisor import FakeHypervisor, Service

F = protocol.Frame


async def made(svc: ContainerService, name: str, **options: Any) -> str:
    opts = RunOptions(read_only=True, **options)
    record = await svc.create(CreateRequest(image="busybox", options=opts, name=name))
    return str(record["id"])


async def started(svc: ContainerService, name: str, **options: Any) -> str:
    cid = await made(svc, name, **options)
    await svc.start(cid)
    return cid


def actions(svc: ContainerService) -> list[str]:
    return [e["action"] for e in svc.events._history]


def states_written(svc: ContainerService) -> list[str]:
    """Spy: every state the engine writes to a record, in order."""
    seen: list[str] = []
    update = svc.store.update

    async def spy(cid: str, **changes: Any) -> Any:
        if "state" in changes:
            seen.append(changes["state"])
        return await update(cid, **changes)

    svc.store.update = spy  # type: ignore[method-assign]
    return seen


async def drain(listener: Listener) -> list[dict[str, Any]]:
    lines = []
    async with asyncio.timeout(5):
        while (line := await listener.get()) is not None:
            lines.append(line)
    return lines


# --- restart and the lifecycle table -----------------------------------------------


async def test_restart_shows_restarting_then_running(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service(traps={})))  # ignores TERM: restart waits t
    cid = await started(svc, "web")
    written = states_written(svc)
    restart = asyncio.create_task(svc.restart("web", 0.3))
    await asyncio.sleep(0.1)
    assert svc.inspect("web")["state"] == "restarting"
    assert [(r["id"], r["state"]) for r in svc.list()] == [(cid, "restarting")]  # ps, no -a
    with pytest.raises(FailedPrecondition, match="cannot exec: it is restarting; wait for it"):
        await svc.exec("web", {"command": ["ls"]})
    await restart
    assert svc.inspect("web")["state"] == "running"
    assert written == ["restarting", "restarting", "running"]  # old run's exit kept it there
    assert actions(svc) == ["create", "start", "die", "start"]
    await svc.close()


async def test_every_state_the_engine_writes_is_a_step_of_the_table(tmp_path: Path) -> None:
    class FlakyImages(Images):
        calls = 0

        async def rootfs(self, ref: str) -> Any:
            self.calls += 1
            if self.calls == 4:
                raise NotFound("image busybox: its base disk is gone")
            return await super().rootfs(ref)

    svc = fake_containers(service(tmp_path, FakeHypervisor(Service())).settings, FlakyImages())
    written = states_written(svc)
    cid = await made(svc, "web", stdin=True)
    await svc.start(cid)  # rootfs 1
    await svc.stop(cid, 1)
    await svc.restart(cid, 1)  # rootfs 2
    await svc.restart(cid, 1)  # rootfs 3
    with pytest.raises(NotFound, match="base disk is gone"):
        await svc.restart(cid, 1)  # rootfs 4 fails: restarting -> exited 125
    doc = svc.inspect(cid)
    assert (doc["state"], doc["exit_code"], doc["error"]) == (
        "exited",
        125,
        "image busybox: its base disk is gone",
    )
    await svc.start(cid)
    await svc.remove(cid, force=True)
    states = ["created", *written]
    assert states == [
        *("created", "running", "exited", "restarting", "running"),  # no run to stop
        *("restarting", "restarting", "running"),  # the old run's exit kept it restarting
        *("restarting", "restarting", "exited"),  # the new run could not start
        *("running", "removing", "removing"),  # rm -f: removing before the run ends
    ]
    for before, after in itertools.pairwise(states):
        assert after in {lifecycle.TABLE.get((lifecycle.St(before), op)) for op in lifecycle.OPS}
    await svc.close()


async def test_restart_of_an_auto_remove_container_keeps_it(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    record = await svc.create(
        CreateRequest(image="busybox", options=RunOptions(read_only=True), remove=True)
    )
    await svc.start(record["id"])
    await svc.restart(record["id"], 1)
    assert svc.inspect(record["id"])["state"] == "running"
    assert await svc.stop(record["id"], 1) == 143
    await asyncio.sleep(0.05)
    assert record["id"] not in svc.store.records  # its own exit still auto-removes it
    await svc.close()


# --- Docker's answers --------------------------------------------------------------


async def test_wait_on_an_exited_container_answers_at_once(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await started(svc, "w")
    await svc.kill(cid, 15)
    assert await svc.wait(cid) == 143
    async with asyncio.timeout(0.05):
        assert await svc.wait("w") == 143
    await svc.close()


async def test_start_of_a_running_container_is_a_no_op(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service())
    svc = service(tmp_path, hv)
    cid = await started(svc, "s")
    before = svc.inspect(cid)
    await svc.start("s")
    assert svc.inspect(cid) == before
    assert actions(svc) == ["create", "start"]
    assert list(hv.created) == [cid[:12]]
    await svc.close()


async def test_kill_and_exec_of_a_stopped_container_are_clear_errors(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await started(svc, "k")
    await svc.stop(cid, 1)
    label = f"k ({cid[:12]})"
    with pytest.raises(FailedPrecondition) as caught:
        await svc.kill("k", 9)
    assert str(caught.value) == f"container {label}: cannot kill: it is exited; start it first"
    with pytest.raises(FailedPrecondition) as caught:
        await svc.exec("k", {"command": ["ls"]})
    assert str(caught.value) == f"container {label}: cannot exec: it is exited; start it first"
    await svc.close()


async def test_exec_on_a_supervisor_whose_run_ended_is_refused(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await started(svc, "e")
    sup = svc._sups[cid]
    await svc.stop(cid, 1)
    spec = protocol.ExecSpec(argv=("ls",), env=(), cwd="/", user="")
    with pytest.raises(FailedPrecondition, match="cannot exec: the container exited"):
        await sup.exec(spec, Listener())
    await svc.close()


# --- one op at a time --------------------------------------------------------------


async def test_concurrent_starts_boot_once(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service())
    svc = service(tmp_path, hv)
    cid = await made(svc, "twice")
    await asyncio.gather(svc.start(cid), svc.start("twice"), svc.start(cid[:8]))
    assert actions(svc) == ["create", "start"]
    assert list(hv.created) == [cid[:12]]
    await svc.close()


async def test_concurrent_removes_remove_once(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service())
    svc = service(tmp_path, hv)
    cid = await started(svc, "gone")
    results = await asyncio.gather(
        svc.remove(cid, force=True), svc.remove("gone", force=True), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], NotFound)
    assert str(results[1]) == "container gone: no such container (it was just removed)"
    assert actions(svc) == ["create", "start", "die", "destroy"]
    assert hv.guests == {}
    await svc.close()


async def test_start_stop_and_rm_racing_leave_nothing_behind(tmp_path: Path) -> None:
    hv = FakeHypervisor(Service())
    svc = service(tmp_path, hv)
    for i in range(5):
        cid = await made(svc, f"r{i}")
        async with asyncio.timeout(5):
            await asyncio.gather(
                svc.start(cid),
                svc.stop(cid, 0.2),
                svc.restart(cid, 0.2),
                svc.remove(cid, force=True),
                return_exceptions=True,
            )
        assert cid not in svc.store.records
    assert hv.guests == {}
    assert (svc._sups, svc._listeners, svc._waiters, svc._ops) == ({}, {}, {}, {})
    await svc.close()


async def test_rm_f_does_not_wait_for_a_stop_in_progress(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service(traps={})))  # ignores TERM
    cid = await started(svc, "slow")
    loop = asyncio.get_running_loop()
    begun = loop.time()
    stop = asyncio.create_task(svc.stop(cid, 30))
    await asyncio.sleep(0.05)
    await svc.remove(cid, force=True)
    assert await stop == 137
    assert loop.time() - begun < 2
    assert cid not in svc.store.records
    await svc.close()


# --- streams of a container that goes away ------------------------------------------


async def test_rm_ends_the_streams_of_a_created_container(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await made(svc, "never", stdin=True)
    _, listener = await svc.attach(cid, stdin=True, logs=False)
    waiter = asyncio.create_task(svc.wait(cid))
    await asyncio.sleep(0)
    await svc.remove(cid)
    gone = f"container never ({cid[:12]}): removed"
    assert await drain(listener) == [{"error": {"kind": "not_found", "message": gone}}]
    with pytest.raises(NotFound, match="removed"):
        await waiter
    await svc.close()


async def test_rm_f_ends_attach_exec_and_follow_streams(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await started(svc, "busy", stdin=True)
    _, attached = await svc.attach(cid, stdin=True, logs=False)
    _, session = await svc.exec(cid, {"command": ["cat"], "stdin": True})
    follow = svc.logs(cid, follow=True)
    first = asyncio.ensure_future(anext(follow))
    await asyncio.sleep(0.01)
    await svc.remove(cid, force=True)
    assert await drain(attached) == [{"exit": 137}]
    assert await drain(session) == [
        {"error": {"kind": "unavailable", "message": "container exited (137)"}}
    ]
    with pytest.raises(StopAsyncIteration):
        await first
    await svc.close()


# --- a flood, and bad input ---------------------------------------------------------


async def test_a_client_falling_behind_a_flood_is_cut_off_and_the_guest_runs_on(
    tmp_path: Path,
) -> None:
    hv = FakeHypervisor(Service())
    svc = service(tmp_path, hv)
    cid = await started(svc, "flood")
    _, slow = await svc.attach(cid, stdin=False, logs=False)
    _, fast = await svc.attach(cid, stdin=False, logs=False)
    got: list[dict[str, Any]] = []
    sent = 50 * (QUEUE // 50 + 2)
    all_read = asyncio.Event()

    async def read_fast() -> None:
        while (line := await fast.get()) is not None:
            got.append(line)
            if len(got) == sent:
                all_read.set()

    reader = asyncio.create_task(read_fast())
    chunk = b"x" * 1000
    for at in range(sent):
        hv.emit(cid[:12], protocol.frame(F.STDOUT, chunk))
        if at % 50 == 49:
            await asyncio.sleep(0.01)  # the fast client reads between bursts
    async with asyncio.timeout(5):
        await all_read.wait()  # a client that keeps up sees every chunk
    assert slow.ended
    assert slow.queue.qsize() == QUEUE + 2  # bounded: QUEUE chunks, the message, the end
    kept = [slow.queue.get_nowait() for _ in range(QUEUE + 2)]
    assert kept[-1] is None
    assert kept[:-2] == got[:QUEUE]  # what it had not read yet: the oldest, in order
    message = kept[-2]
    assert message is not None
    assert message["message"].startswith(f"vxnd: this client fell {QUEUE} chunks behind")
    assert svc.inspect(cid)["state"] == "running"
    log = ContainerLog(svc.store.dir(cid)).entries()
    logged = b"".join(base64.b64decode(e["b"]) for e in log)
    assert logged == chunk * sent  # and `vxn logs` has everything
    await svc.kill(cid)
    await reader
    await svc.close()


@pytest.mark.parametrize(
    "line",
    [
        {"signal": -1},
        {"signal": 99},
        {"signal": "TERM"},
        {"signal": True},
        {"winsize": "ab"},
        {"winsize": [1, 2, 3]},
        {"winsize": [70000, 80]},
        {"in": "!!not base64"},
        {"in": 5},
        {"in": base64.b64encode(b"x" * (protocol.MAX_PAYLOAD + 1)).decode()},
    ],
)
async def test_malformed_input_lines_are_the_clients_error(
    tmp_path: Path, line: dict[str, Any]
) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await started(svc, "in", stdin=True)
    _, listener = await svc.attach(cid, stdin=True, logs=False)
    with pytest.raises(InvalidArgument):
        await svc.input(cid, listener, line)
    assert svc.inspect(cid)["state"] == "running"
    await svc.close()


async def test_input_held_before_the_start_is_bounded(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeHypervisor(Service()))
    cid = await made(svc, "early", stdin=True)
    _, listener = await svc.attach(cid, stdin=True, logs=False)
    block = {"in": base64.b64encode(b"x" * protocol.MAX_PAYLOAD).decode()}
    for _ in range(15):  # 15 frames of 64 KiB (+ header) fit in 1 MiB
        await svc.input(cid, listener, block)
    with pytest.raises(FailedPrecondition, match="holds at most 1 MiB of input until it starts"):
        await svc.input(cid, listener, block)
    for _ in range(1000):  # small lines are counted as what they are, in O(1) each
        await svc.input(cid, listener, {"in": base64.b64encode(b"y").decode()})
    assert len(svc._pending[cid]) == 1015
    await svc.remove(cid)
    assert (svc._pending, svc._held) == ({}, {})
    await svc.close()
