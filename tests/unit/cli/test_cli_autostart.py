import fcntl
import os
import signal
import time
from pathlib import Path

import pytest

from vxn.adapters.statedir import RunDir
from vxn.cli import autostart
from vxn.cli.client import Client
from vxn.config import Settings
from vxn.errors import Unavailable
from vxn.testing.daemon import in_process_daemon
from vxn.testing.fake_images import FakeImageService


def test_the_autostart_lock_gives_up_at_its_deadline(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    holder = os.open(run.autostart_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    waiter = os.open(run.autostart_lock, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        previous = signal.getsignal(signal.SIGALRM)
        started = time.monotonic()
        with pytest.raises(
            Unavailable, match=r"autostart.lock is still locked after 0s by another vxn"
        ):
            autostart._flock(waiter, 0.2, run)
        assert 0.2 <= time.monotonic() - started < 5
        assert signal.getsignal(signal.SIGALRM) == previous
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        os.close(holder)
        holder = -1
        autostart._flock(waiter, 0.2, run)  # free now: taken at once
    finally:
        os.close(waiter)
        if holder >= 0:
            os.close(holder)


def test_connect_uses_a_running_daemon(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    with in_process_daemon(settings, FakeImageService()):
        client = autostart.connect(settings, env={})
        with client:
            assert client.get("/v1/images") == []


def test_connect_without_autostart(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    with pytest.raises(Unavailable, match="VXN_NO_AUTOSTART=1: start vxnd"):
        autostart.connect(settings, env={"VXN_NO_AUTOSTART": "1"})
    assert not (tmp_path / "r").exists()


def test_handshake_closes_the_client_it_refuses(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    with in_process_daemon(settings, FakeImageService()):
        client = Client(RunDir(settings.run_dir))
        assert autostart.handshake(client) is client
        client.get = lambda *a, **k: {"api": 2}  # type: ignore[method-assign]
        with pytest.raises(Exception, match="speaks API v2, this vxn needs v1: restart vxnd"):
            autostart.handshake(client)
        assert client._conn.sock is None


def test_a_failed_start_shows_the_end_of_the_log(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.log.write_text("one\ntwo\n\nthree\nvxnd: four\n")
    error = autostart._failed("vxnd exited during start-up", run)
    assert str(error) == (f"vxnd exited during start-up: two | three | vxnd: four; see {run.log}")
    run.log.unlink()
    assert "no log output" in str(autostart._failed("x", run))
