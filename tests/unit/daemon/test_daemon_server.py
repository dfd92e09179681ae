import grp
import os
import socket
import stat
from pathlib import Path

import pytest

from vxn.adapters.statedir import RunDir
from vxn.config import Settings
from vxn.core.platform import Platform
from vxn.daemon import server
from vxn.daemon.api import Context
from vxn.errors import FailedPrecondition, InvalidArgument
from vxn.testing.daemon import LoopThread
from vxn.testing.fake_images import FakeImageService


def test_one_daemon_per_run_dir(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    fd = server.take_lock(run)
    try:
        assert server.pid_of(run) == os.getpid()
        with pytest.raises(FailedPrecondition) as caught:
            server.take_lock(run)
        assert str(caught.value) == (
            f"another vxnd is running for {run.root}: stop it, or use another --run-dir"
        )
    finally:
        os.close(fd)
    os.close(server.take_lock(run))  # released with its fd


def test_the_socket_is_0660_and_replaces_a_stale_one(tmp_path: Path) -> None:
    path = tmp_path / "vxn.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    with server.bind_socket(path, "no-such-group-here"):
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
    assert os.umask(0o022) == 0o022  # restored


def test_the_socket_gets_the_group_when_it_exists(tmp_path: Path) -> None:
    group = next(g for g in grp.getgrall() if g.gr_gid != os.getgid())
    path = tmp_path / "vxn.sock"
    with server.bind_socket(path, group.gr_name):
        assert path.stat().st_gid == group.gr_gid


def test_a_socket_path_too_long_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="longer than 107 bytes; use a shorter --run-dir"):
        server.bind_socket(tmp_path / ("x" * 120) / "vxn.sock", "vxn")


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_to_a_path_or_an_abstract_socket(tmp_path: Path, abstract: bool) -> None:
    name = f"vxn-test-{os.urandom(6).hex()}"
    address, bound = (f"@{name}", f"\0{name}") if abstract else ((p := str(tmp_path / "n")), p)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(bound)
        server.sd_notify(address, "READY=1\nSTATUS=x")
        assert listener.recv(100) == b"READY=1\nSTATUS=x"


def test_sd_notify_refuses_other_addresses() -> None:
    with pytest.raises(OSError, match="unsupported NOTIFY_SOCKET"):
        server.sd_notify("relative/path", "READY=1")


def _daemon(tmp_path: Path, env: dict[str, str]) -> server.Daemon:
    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    ctx = Context(
        settings=settings, images=FakeImageService(), platform=Platform.parse("linux/amd64")
    )
    return server.Daemon(ctx, env=env)


def test_a_daemon_starts_notifies_and_cleans_up(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "PATH": "/bin"}
    daemon = _daemon(tmp_path, env)
    assert env == {"PATH": "/bin"}  # never inherited by what vxnd starts
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, LoopThread() as lt:
        listener.bind(str(tmp_path / "notify"))
        lt.run(daemon.start())
        assert (tmp_path / "s" / "content").is_dir()
        assert daemon.run.socket.exists()
        daemon.notify("READY=1")
        assert listener.recv(100) == b"READY=1"
        with pytest.raises(FailedPrecondition):
            lt.run(_daemon(tmp_path, {}).start())
        assert daemon.run.socket.exists()  # the loser left it alone
        lt.run(daemon.stop())
    assert not daemon.run.socket.exists()
    os.close(server.take_lock(daemon.run))


def test_a_failed_notify_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = _daemon(tmp_path, {"NOTIFY_SOCKET": str(tmp_path / "gone")})
    daemon.notify("READY=1")
    assert "sd_notify" in caplog.text


def test_socket_activation_is_only_for_our_pid() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert server._activated_socket(env) is None
    assert env == {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
