"""The container API against the fake hypervisor: lifecycle, duplex streams, logs,
events, exec routing, names, and what a client going away must not do."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from unit.daemon.containers_fixtures import Duplex, b64, context, service

from vxn.core import protocol
from vxn.daemon import api
from vxn.engine.containers import ContainerService
from vxn.testing.fake_hypervisor import FakeHypervisor, Service

Client = TestClient[Any, Any]


@pytest.fixture
def hv() -> FakeHypervisor:
    return FakeHypervisor(Service(banner=b"ready\n"))


@pytest.fixture
def svc(tmp_path: Path, hv: FakeHypervisor) -> ContainerService:
    return service(tmp_path, hv)


@pytest.fixture
async def client(tmp_path: Path, svc: ContainerService) -> AsyncIterator[Client]:
    async with TestClient(TestServer(api.make_app(context(tmp_path, svc)))) as client:
        yield client
    await svc.close()


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def create(client: Client, **options: Any) -> str:
    body = {"image": "busybox", "read_only": True} | options
    return str((await ok(await client.post("/v1/containers/create", json=body)))["id"])


async def run_detached(client: Client, **options: Any) -> str:
    cid = await create(client, **options)
    await ok(await client.post(f"/v1/containers/{cid}/start"))
    return cid


async def state(client: Client, ref: str) -> str:
    return str((await ok(await client.get(f"/v1/containers/{ref}")))["state"])


async def test_run_attached_stdin_echo_then_eof_exits(client: Client, hv: FakeHypervisor) -> None:
    cid = await create(client, stdin=True, name="web")
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    await ok(await client.post("/v1/containers/web/start"))
    assert await attach.next() == {"out": b64(b"ready\n")}
    attach.send({"in": b64(b"hello\n")})
    assert await attach.next() == {"out": b64(b"hello\n")}  # live: before stdin closes
    attach.send({"eof": True})
    assert await attach.next() == {"exit": 0}
    assert await attach.next() is None
    assert (await ok(await client.post(f"/v1/containers/{cid[:6]}/wait"))) == {"exit": 0}
    doc = await ok(await client.get("/v1/containers/web"))
    assert (doc["state"], doc["exit_code"], doc["argv"]) == ("exited", 0, ["sh"])
    assert "nonce" not in doc
    assert set(doc["timings"]) >= {"prepare", "create", "guest", "teardown"}
    assert [c.labels["origin"] for c in hv.created.values()] == []  # destroyed at exit
    assert hv.destroyed == [cid[:12]]  # at the exit (no leftover of an earlier run)


async def test_stdin_sent_before_the_start_is_delivered_after_it(client: Client) -> None:
    cid = await create(client, stdin=True)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    attach.send({"in": b64(b"early\n")})
    await asyncio.sleep(0.05)
    await ok(await client.post(f"/v1/containers/{cid}/start"))
    attach.send({"eof": True})
    out, rest = await attach.until_exit()
    assert (out, rest) == (b"ready\nearly\n", [{"exit": 0}])


async def test_a_detached_client_leaves_the_container_running(client: Client) -> None:
    cid = await run_detached(client, stdin=True)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    attach.send({"in": b64(b"x\n")})
    assert await attach.next() == {"out": b64(b"x\n")}
    attach.end()  # detach: no EOF reaches the container
    assert await attach.next() is None
    attach.response.close()
    await asyncio.sleep(0.05)
    assert await state(client, cid) == "running"
    assert await ok(await client.post(f"/v1/containers/{cid}/stop", params={"t": "5"})) == {
        "exit": 143
    }  # the fake traps TERM and exits 143
    assert await state(client, cid) == "exited"


async def test_stdin_of_a_container_without_i_is_closed(client: Client) -> None:
    cid = await run_detached(client)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    attach.send({"in": b64(b"ignored\n")})
    attach.send({"eof": True})
    await asyncio.sleep(0.05)
    assert await state(client, cid) == "running"
    await ok(await client.post(f"/v1/containers/{cid}/kill"))
    assert await attach.until_exit() == (b"", [{"exit": 137}])


async def test_stop_of_a_container_ignoring_term_is_a_hard_stop_after_t(
    tmp_path: Path,
) -> None:
    hv = FakeHypervisor(Service(traps={}))
    svc = service(tmp_path, hv)
    async with TestClient(TestServer(api.make_app(context(tmp_path, svc)))) as client:
        cid = await run_detached(client)
        loop = asyncio.get_running_loop()
        start = loop.time()
        reply = await ok(await client.post(f"/v1/containers/{cid}/stop", params={"t": "0.3"}))
        assert reply == {"exit": 137}
        assert 0.3 <= loop.time() - start < 2
        assert cid[:12] not in hv.created
        events = [e["action"] for e in _history(svc)]
        assert events == ["create", "start", "die"]
    await svc.close()


def _history(svc: ContainerService) -> list[dict[str, Any]]:
    return list(svc.events._history)


async def test_kill_sends_the_signal_and_restart_runs_it_again(client: Client) -> None:
    cid = await run_detached(client)
    await ok(await client.post(f"/v1/containers/{cid}/kill", params={"signal": "SIGTERM"}))
    assert await ok(await client.post(f"/v1/containers/{cid}/wait")) == {"exit": 143}
    await ok(await client.post(f"/v1/containers/{cid}/restart", params={"t": "1"}))
    assert await state(client, cid) == "running"
    await ok(await client.post(f"/v1/containers/{cid}/restart", params={"t": "1"}))
    assert await state(client, cid) == "running"
    body = await ok(await client.post(f"/v1/containers/{cid}/kill", params={"signal": "HUP!"}), 400)
    assert body["error"]["message"] == "signal 'HUP!': want a name like TERM or a number"


async def test_illegal_ops_name_the_container_op_and_state(client: Client) -> None:
    cid = await create(client, name="idle")
    body = await ok(await client.post(f"/v1/containers/{cid}/kill"), 409)
    assert body["error"]["message"] == (
        f"container idle ({cid[:12]}): cannot kill: it is created; start it first"
    )
    body = await ok(
        await client.post("/v1/containers/idle/exec", data=b'{"command": ["ls"]}\n'), 409
    )
    assert body["error"]["message"].startswith(f"container idle ({cid[:12]}): cannot exec: it is")


async def test_rm_needs_force_when_running_and_rm_f_destroys(
    client: Client, hv: FakeHypervisor, svc: ContainerService
) -> None:
    cid = await run_detached(client, name="doomed")
    body = await ok(await client.delete("/v1/containers/doomed"), 409)
    assert body["error"]["message"] == (
        f"container doomed ({cid[:12]}): cannot remove: it is running; "
        "stop the container before removing or force remove (rm -f)"
    )
    await ok(await client.delete("/v1/containers/doomed", params={"force": "1"}))
    assert (await ok(await client.get("/v1/containers/doomed"), 404))["error"][
        "kind"
    ] == "not_found"
    assert cid[:12] not in hv.created
    assert not (svc.store.root / cid).exists()
    assert [e["action"] for e in _history(svc)] == ["create", "start", "die", "destroy"]


async def test_rm_option_removes_the_record_after_the_exit(
    client: Client, svc: ContainerService
) -> None:
    cid = await create(client, rm=True, stdin=True)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    await ok(await client.post(f"/v1/containers/{cid}/start"))
    attach.send({"eof": True})
    assert (await attach.until_exit())[1] == [{"exit": 0}]
    await asyncio.sleep(0.05)
    assert cid not in svc.store.records
    assert not (svc.store.root / cid).exists()


async def test_exec_sessions_are_routed_by_session(client: Client) -> None:
    cid = await run_detached(client)
    echo = await Duplex(client, f"/v1/containers/{cid}/exec", {"command": ["echo", "hi"]}).open()
    assert await echo.until_exit() == (b"echo hi\n", [{"exit": 0}])
    code = await Duplex(client, f"/v1/containers/{cid}/exec", {"command": ["exit", "3"]}).open()
    assert await code.until_exit() == (b"", [{"exit": 3}])
    cat = await Duplex(
        client, f"/v1/containers/{cid}/exec", {"command": ["cat"], "stdin": True}
    ).open()
    cat.send({"in": b64(b"piped")})
    assert await cat.next() == {"out": b64(b"piped")}
    cat.send({"eof": True})
    assert await cat.until_exit() == (b"", [{"exit": 0}])
    logs = await client.get(f"/v1/containers/{cid}/logs")
    assert [json.loads(x) for x in (await logs.text()).splitlines()] == [{"out": b64(b"ready\n")}]


async def test_resize_reaches_the_main_session(client: Client) -> None:
    cid = await run_detached(client, tty=True, stdin=True)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    await ok(await client.post("/v1/containers/resize", json={"ref": cid, "rows": 40, "cols": 100}))
    assert await attach.next() == {"out": b64(b"winsize 40 100\n")}
    attach.send({"winsize": [24, 80]})
    assert await attach.next() == {"out": b64(b"winsize 24 80\n")}


async def test_logs_tail_timestamps_and_follow(client: Client, hv: FakeHypervisor) -> None:
    cid = await run_detached(client)
    for i in range(3):
        hv.emit(cid[:12], protocol.frame(protocol.Frame.STDERR, b"line %d\n" % i))
    await asyncio.sleep(0.05)
    tail = await client.get(f"/v1/containers/{cid}/logs", params={"tail": "2", "timestamps": "1"})
    lines = [json.loads(x) for x in (await tail.text()).splitlines()]
    assert [base64.b64decode(x["err"]) for x in lines] == [b"line 1\n", b"line 2\n"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", x["t"]) for x in lines)
    follow = await client.get(f"/v1/containers/{cid}/logs", params={"follow": "1", "tail": "0"})
    hv.emit(cid[:12], protocol.frame(protocol.Frame.STDOUT, b"live\n"))
    async with asyncio.timeout(5):
        assert json.loads(await follow.content.readline()) == {"out": b64(b"live\n")}
    await ok(await client.post(f"/v1/containers/{cid}/kill"))
    async with asyncio.timeout(5):
        assert await follow.content.readline() == b""  # ends with the container


async def test_events_stream_live_and_since(client: Client) -> None:
    events = await client.get("/v1/events")
    cid = await run_detached(client, name="ev")
    got = [json.loads(await events.content.readline()) for _ in range(2)]
    assert [(e["action"], e["id"], e["name"], e["image"]) for e in got] == [
        ("create", cid, "ev", "busybox"),
        ("start", cid, "ev", "busybox"),
    ]
    await ok(await client.post(f"/v1/containers/{cid}/kill"))
    die = json.loads(await events.content.readline())
    assert (die["action"], die["exit_code"]) == ("die", 137)
    past = await client.get("/v1/events", params={"since": str(got[1]["time"])})
    assert [json.loads(await past.content.readline())["action"] for _ in range(2)] == [
        "start",
        "die",
    ]
    events.close()
    past.close()


async def test_ps_filters_names_and_prefixes(client: Client) -> None:
    a = await run_detached(client)
    b = await create(client, name="made")
    running = await ok(await client.get("/v1/containers"))
    assert [r["id"] for r in running] == [a]
    assert re.fullmatch(r"[a-z]+_[a-z]+\d*", running[0]["name"])
    assert running[0]["command"] == "sh"
    assert running[0]["image"] == "busybox"
    every = await ok(await client.get("/v1/containers", params={"all": "1"}))
    assert [r["id"] for r in every] == [b, a]
    created = await ok(
        await client.get("/v1/containers", params=[("status", "created"), ("status", "exited")])
    )
    assert [r["name"] for r in created] == ["made"]
    taken = await ok(
        await client.post("/v1/containers/create", json={"image": "busybox", "name": "made"}), 409
    )
    assert taken["error"]["message"].startswith("container name made: already in use")
    bad = await ok(
        await client.post("/v1/containers/create", json={"image": "busybox", "name": "-x"}), 400
    )
    assert "want [a-zA-Z0-9]" in bad["error"]["message"]
    assert (await ok(await client.get(f"/v1/containers/{b[:5]}")))["name"] == "made"


async def test_a_boot_that_fails_is_exit_125_with_the_reason(tmp_path: Path) -> None:
    hv = FakeHypervisor(lambda spec: [b"Linux version\n"], stop=True, boot_log=b"panic\n")
    svc = service(tmp_path, hv)
    async with TestClient(TestServer(api.make_app(context(tmp_path, svc)))) as client:
        cid = await create(client)
        body = await ok(await client.post(f"/v1/containers/{cid}/start"), 503)
        assert "stopped before guest-init said hello" in body["error"]["message"]
        doc = await ok(await client.get(f"/v1/containers/{cid}"))
        assert (doc["state"], doc["exit_code"]) == ("exited", 125)
        assert "  | panic" in doc["error"]
    await svc.close()


async def test_the_upper_disk_is_kept_across_starts(client: Client, svc: ContainerService) -> None:
    cid = await run_detached(client, read_only=False)
    disk = svc.store.root / cid / "upper.ext4"
    inode = disk.stat().st_ino
    await ok(await client.post(f"/v1/containers/{cid}/stop", params={"t": "1"}))
    await ok(await client.post(f"/v1/containers/{cid}/start"))
    assert disk.stat().st_ino == inode


async def test_an_ambiguous_prefix_is_an_error_for_every_route(client: Client) -> None:
    ids = [await create(client) for _ in range(17)]  # 17 ids, 16 hex digits: one repeats
    first = max("0123456789abcdef", key=lambda c: sum(i.startswith(c) for i in ids))
    for method, path in [
        ("GET", ""),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/kill"),
        ("DELETE", ""),
    ]:
        response = await client.request(method, f"/v1/containers/{first}{path}")
        body = await ok(response, 400)
        assert body["error"]["message"].startswith(f"container {first}: ambiguous: the id prefix")
    assert len(await ok(await client.get("/v1/containers", params={"all": "1"}))) == 17


@pytest.mark.parametrize("name", ["a/b", "..", "a b", "web\n", "ü", "x" * 129, "-x", ""])
async def test_odd_names_are_refused(client: Client, name: str) -> None:
    body = {"image": "busybox", "name": name}
    response = await client.post("/v1/containers/create", json=body)
    if name == "":  # no name: one is made up
        assert response.status == 200
        return
    reply = await ok(response, 400)
    assert reply["error"]["message"].startswith(f"container name {name!r}: want [a-zA-Z0-9]")


@pytest.mark.parametrize("ref", ["a%2Fb", "%25", "%00", "%F0%9F%90%B3", "x" * 300])
async def test_odd_refs_are_not_found(client: Client, ref: str) -> None:
    await create(client, name="web")
    body = await ok(await client.get(f"/v1/containers/{ref}"), 404)
    assert body["error"]["message"].endswith("no such container; see `vxn ps -a`")


@pytest.mark.parametrize("t", ["-1", "86401", "1e9", "nan", "inf", "soon", ""])
async def test_stop_t_out_of_range_is_a_one_line_error(client: Client, t: str) -> None:
    cid = await run_detached(client)
    body = await ok(await client.post(f"/v1/containers/{cid}/stop", params={"t": t}), 400)
    assert body["error"]["message"] == (
        f"/v1/containers/{cid}/stop: t {t!r}: want seconds, 0 to 86400"
    )
    assert await state(client, cid) == "running"


@pytest.mark.parametrize("signal", ["HUP!", "0", "65", "-9", "\u00b2", "SIG", "NOPE", "9 "])
async def test_kill_with_a_bad_signal_is_a_one_line_error(client: Client, signal: str) -> None:
    cid = await run_detached(client)
    body = await ok(await client.post(f"/v1/containers/{cid}/kill", params={"signal": signal}), 400)
    assert body["error"]["message"] == f"signal {signal!r}: want a name like TERM or a number"
    assert await state(client, cid) == "running"


async def test_kill_and_exec_of_an_exited_container_are_409(client: Client) -> None:
    cid = await run_detached(client, name="done")
    await ok(await client.post(f"/v1/containers/{cid}/stop", params={"t": "1"}))
    body = await ok(await client.post("/v1/containers/done/kill"), 409)
    assert body["error"]["message"] == (
        f"container done ({cid[:12]}): cannot kill: it is exited; start it first"
    )
    exec_ = await client.post("/v1/containers/done/exec", data=b'{"command": ["ls"]}\n')
    body = await ok(exec_, 409)
    assert body["error"]["message"] == (
        f"container done ({cid[:12]}): cannot exec: it is exited; start it first"
    )


async def test_rm_f_ends_every_open_stream(client: Client) -> None:
    cid = await run_detached(client, stdin=True)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    cat = await Duplex(
        client, f"/v1/containers/{cid}/exec", {"command": ["cat"], "stdin": True}
    ).open()
    follow = await client.get(f"/v1/containers/{cid}/logs", params={"follow": "1", "tail": "0"})
    await ok(await client.delete(f"/v1/containers/{cid}", params={"force": "1"}))
    assert await attach.until_exit() == (b"", [{"exit": 137}])
    unavailable = {"kind": "unavailable", "message": "container exited (137)"}
    assert await cat.until_exit() == (b"", [{"error": unavailable}])
    async with asyncio.timeout(5):
        assert await follow.content.readline() == b""


async def test_attached_to_a_created_container_that_is_removed(client: Client) -> None:
    cid = await create(client, name="never")
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": False}).open()
    await asyncio.sleep(0.05)
    await ok(await client.delete("/v1/containers/never"))
    gone = {"kind": "not_found", "message": f"container never ({cid[:12]}): removed"}
    assert await attach.until_exit() == (b"", [{"error": gone}])


async def test_a_bad_input_line_ends_the_stream_not_the_container(client: Client) -> None:
    cid = await run_detached(client, stdin=True)
    attach = await Duplex(client, f"/v1/containers/{cid}/attach", {"stdin": True}).open()
    attach.send({"signal": -1})
    out, rest = await attach.until_exit()
    assert out == b""
    assert rest[0]["error"]["kind"] == "invalid_argument"
    assert rest[0]["error"]["message"] == "signal -1: want 1..64"
    assert await state(client, cid) == "running"
