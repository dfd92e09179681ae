"""Containers owned by vxnd, on real QEMU guests (TCG), through vxnd's API.

One test, few boots (each costs seconds of a shared CPU): two detached containers,
live logs, exec inside the guest, `kill -9` of vxnd and its successor adopting both,
stop of one that traps TERM (its code) and of one that ignores it (137 after t), and
a second start that sees what the first run wrote. Nothing may be left behind.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from data.guestimages import APP_NAME, app_image
from integration.qemuguests import qemus, tcg_vxnd

from vxn.cli.client import Client
from vxn.testing.daemon import VxnDirs, vxn_argv

pytestmark = pytest.mark.integration

TRAPS = (
    "[ -f /etc/mark ] && echo seen; echo x > /etc/mark; "
    "head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /tmp/nonce; "
    'echo "nonce $(cat /tmp/nonce)"; trap "echo bye; exit 7" TERM; '
    "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done"
)
IGNORES = "trap '' TERM; echo ready; while :; do sleep 1; done"


class UnixHTTP(HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(str(self.path))


def ndjson(dirs: VxnDirs, path: str) -> Iterator[dict[str, Any]]:
    """GET an NDJSON stream, line by line as vxnd writes it."""
    conn = UnixHTTP(dirs.run.socket)
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    try:
        while raw := response.readline():
            yield json.loads(raw)
    finally:
        conn.close()


def output(dirs: VxnDirs, cid: str) -> str:
    lines = ndjson(dirs, f"/v1/containers/{cid}/logs")
    return "".join(base64.b64decode(x["out"]).decode() for x in lines if "out" in x)


def restart_vxnd(dirs: VxnDirs, env: dict[str, str]) -> None:
    subprocess.run(vxn_argv("images"), env=env, check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VxnDirs]:
    with tcg_vxnd(app_image(tmp_path_factory.mktemp("app") / "app.tar")) as dirs:
        yield dirs


def test_detached_containers_survive_a_vxnd_crash(dirs: VxnDirs) -> None:
    env = dirs.env()
    with Client(dirs.run) as client:
        ids = []
        for name, script in (("traps", TRAPS), ("ignores", IGNORES)):
            body = {"image": APP_NAME, "command": ["sh", "-c", script], "name": name}
            ids.append(client.post("/v1/containers/create", body)["id"])
            client.post(f"/v1/containers/{name}/start")
        traps, ignores = ids

        follow = ndjson(dirs, "/v1/containers/traps/logs?follow=1&tail=0")
        stamps = [time.monotonic()]
        while len(stamps) < 3:  # two new ticks, a second apart: followed live
            assert base64.b64decode(next(follow)["out"]).startswith(b"tick ")
            stamps.append(time.monotonic())
        assert stamps[-1] - stamps[1] >= 0.8
        follow.close()
        nonce = output(dirs, traps).split("nonce ")[1].split("\n")[0]
        exec_ = client.duplex("/v1/containers/traps/exec", {"command": ["cat", "/tmp/nonce"]})
        lines = list(exec_.lines())
        exec_.close()
        assert lines == [{"out": base64.b64encode(nonce.encode()).decode()}, {"exit": 0}]

    os.kill(int(dirs.run.daemon_lock.read_text()), signal.SIGKILL)
    time.sleep(2)  # the guests run on, unwatched
    restart_vxnd(dirs, env)
    with Client(dirs.run) as client:
        rows = client.get("/v1/containers")
        assert sorted((r["name"], r["state"]) for r in rows) == [
            ("ignores", "running"),
            ("traps", "running"),
        ]
        before = output(dirs, traps).count("tick")
        time.sleep(2.5)
        assert output(dirs, traps).count("tick") >= before + 2  # adopted: still logging

        assert client.post("/v1/containers/traps/stop", query={"t": "20"}) == {"exit": 7}
        assert output(dirs, traps).endswith("bye\n")
        start = time.monotonic()
        assert client.post("/v1/containers/ignores/stop", query={"t": "1"}) == {"exit": 137}
        assert 1 <= time.monotonic() - start < 15
        assert client.get(f"/v1/containers/{ignores[:8]}")["exit_code"] == 137

        client.post(f"/v1/containers/{traps}/start")  # its writable layer was kept
        follow = ndjson(dirs, "/v1/containers/traps/logs?follow=1&tail=0")
        assert base64.b64decode(next(follow)["out"]) == b"seen\n"
        while not base64.b64decode(next(follow)["out"]).startswith(b"tick"):
            pass  # the trap is set: now TERM is the script's to handle
        follow.close()
        assert client.post("/v1/containers/traps/stop", query={"t": "20"}) == {"exit": 7}
        for cid in ids:
            client._call("DELETE", f"/v1/containers/{cid}", None, None)
        assert client.get("/v1/containers", {"all": "1"}) == []
    assert qemus(dirs) == []
    assert not list((dirs.run.root / "guests").iterdir())
