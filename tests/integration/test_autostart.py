"""The CLI starting vxnd on demand (ARCHITECTURE.md, decision 5), with real processes."""

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from vxn.daemon.server import pid_of
from vxn.testing.daemon import VxnDirs, serve_app, vxn_argv

TIMEOUT = 60.0
HEADER = "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n"


@pytest.fixture
def dirs() -> Iterator[VxnDirs]:
    with VxnDirs() as d:
        yield d


def vxn(dirs: VxnDirs, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        vxn_argv(*args), env=dirs.env(**env), capture_output=True, text=True, timeout=TIMEOUT
    )


def test_a_cold_run_dir_gets_a_daemon_and_the_answer(dirs: VxnDirs) -> None:
    # capture_output: returns only if vxnd kept none of our pipes
    result = vxn(dirs, "images")
    assert (result.returncode, result.stdout, result.stderr) == (0, HEADER, "")
    assert dirs.daemons() == [pid_of(dirs.run)]
    assert vxn(dirs, "images").stdout == HEADER
    assert len(dirs.daemons()) == 1  # reused


def test_racing_clis_start_exactly_one_daemon(dirs: VxnDirs) -> None:
    procs = [
        subprocess.Popen(
            vxn_argv("images"), env=dirs.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert (proc.returncode, out, err) == (0, HEADER.encode(), b"")
    assert dirs.daemons() == [pid_of(dirs.run)]


def test_the_daemon_is_detached(dirs: VxnDirs) -> None:
    assert vxn(dirs, "images").returncode == 0
    (pid,) = dirs.daemons()
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    links = [_link(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [link for link in links if link.startswith("pipe:")]  # inherited: they stay
    # A session of its own, but not its leader: it can never get a controlling terminal.
    assert os.getsid(pid) not in (os.getsid(0), pid)
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    assert int(fields[1]) != os.getpid()  # not our child
    log = dirs.run.log.read_text()
    assert f"ready on {dirs.run.socket}" in log


def _link(fd: str) -> str:
    """Where an fd points; "" for one the daemon closed meanwhile (its warm-up opens files)."""
    try:
        return os.readlink(fd)
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("pipeline", ["vxn images | head -1", "vxn images | cat"])
def test_a_shell_pipeline_does_not_hang(dirs: VxnDirs, pipeline: str) -> None:
    command = pipeline.replace("vxn", " ".join(map(shlex.quote, vxn_argv())), 1)
    result = subprocess.run(
        ["sh", "-c", command], env=dirs.env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert (result.returncode, result.stdout) == (0, HEADER)


def test_a_stale_socket_is_recovered(dirs: VxnDirs) -> None:
    dirs.run.root.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(dirs.run.socket))  # left behind: nothing listens
    result = vxn(dirs, "images")
    assert (result.returncode, result.stdout, result.stderr) == (0, HEADER, "")
    assert len(dirs.daemons()) == 1


def test_no_autostart_when_opted_out(dirs: VxnDirs) -> None:
    result = vxn(dirs, "images", VXN_NO_AUTOSTART="1")
    assert (result.returncode, result.stdout) == (125, "")
    assert result.stderr == (
        f"vxn: vxnd is not running at {dirs.run.socket} and VXN_NO_AUTOSTART=1: "
        "start vxnd (or systemctl start vxnd), or unset VXN_NO_AUTOSTART\n"
    )
    assert dirs.daemons() == []


def test_a_daemon_speaking_another_api_is_refused(dirs: VxnDirs) -> None:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "9.0.0", "api": 999})

    app = web.Application()
    app.router.add_get("/v1/version", version)
    dirs.run.root.mkdir(parents=True)
    with serve_app(app, dirs.run.socket):
        result = vxn(dirs, "images")
    assert (result.returncode, result.stdout) == (125, "")
    assert result.stderr == (
        f"vxn: vxnd at {dirs.run.socket} speaks API v999, this vxn needs v1: restart vxnd\n"
    )
    assert dirs.daemons() == []


def test_a_daemon_that_dies_at_start_is_reported_with_its_log(dirs: VxnDirs) -> None:
    dirs.state.write_text("a file where the state dir should be")
    result = vxn(dirs, "images")
    assert result.returncode == 125
    assert result.stderr.startswith("vxn: vxnd exited during start-up: ")
    assert f"state dir {dirs.state}: cannot create it (File exists)" in result.stderr
    assert result.stderr.endswith(f"; see {dirs.run.log}\n")
    assert result.stderr.count("\n") == 1


def test_version_needs_no_daemon(dirs: VxnDirs) -> None:
    result = vxn(dirs, "--version", VXN_NO_AUTOSTART="1")
    assert (result.returncode, result.stdout) == (0, "vxn version 0.1.0, API 1\n")


def test_info_shows_paths_and_backends(dirs: VxnDirs) -> None:
    text = vxn(dirs, "info").stdout.splitlines()
    assert f" Run Dir: {dirs.run.root}" in text
    assert f" Config File: {dirs.config}" in text
    assert " Backends:" in text
    info = json.loads(vxn(dirs, "info", "--format", "json").stdout)["server"]
    assert info["pid"] == pid_of(dirs.run)
    assert info["paths"]["state_dir"] == str(dirs.state)
    assert set(info["backends"]) == {"xen", "qemu"}


def test_the_cli_path_imports_neither_aiohttp_nor_the_engine(dirs: VxnDirs) -> None:
    for args in (["--version"], ["images"]):
        result = subprocess.run(
            [vxn_argv()[0], "-X", "importtime", *vxn_argv()[1:], *args],
            env=dirs.env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, result.stderr
        imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines()}
        assert "vxn.args" in imported
        assert "click" not in imported
        assert not {m for m in imported if m.startswith(("aiohttp", "vxn.engine", "vxn.daemon"))}
