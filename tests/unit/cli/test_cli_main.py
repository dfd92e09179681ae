import io
import sys
from pathlib import Path

import pytest
from aiohttp import web

from vxn.adapters.statedir import RunDir
from vxn.cli import oci_runtime
from vxn.cli.main import invoke as vxn_cli, main
from vxn.testing.daemon import cli_against, serve_app
from vxn.testing.fake_images import FakeImageService


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "vxn.toml").write_text("")
    monkeypatch.setenv("VXN_CONFIG", str(tmp_path / "vxn.toml"))
    monkeypatch.setenv("VXN_NO_AUTOSTART", "1")
    monkeypatch.delenv("VXN_RUN_DIR", raising=False)
    monkeypatch.delenv("VXN_STATE_DIR", raising=False)


def _exit_code(*argv: str) -> int | str | None:
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    return caught.value.code


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code("--version") == 0
    assert capsys.readouterr().out == "vxn version 0.1.0, API 1\n"


def test_usage_errors_exit_125_like_docker(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code("images", "--bogus") == 125
    assert capsys.readouterr().err == (
        "Usage: vxn images [OPTIONS] [REPOSITORY]\n"
        "Try 'vxn images --help' for help.\n\n"
        "Error: No such option '--bogus'.\n"
    )
    assert _exit_code("frobnicate") == 125
    assert "No such command 'frobnicate'" in capsys.readouterr().err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code("--help") == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in ("image", "images", "info", "load", "rmi", "tag"))


def test_no_daemon_and_no_autostart_is_one_line_naming_the_socket_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code("--run-dir", str(tmp_path / "r"), "images") == 125
    assert capsys.readouterr().err == (
        f"vxn: vxnd is not running at {tmp_path}/r/vxn.sock and VXN_NO_AUTOSTART=1: "
        "start vxnd (or systemctl start vxnd), or unset VXN_NO_AUTOSTART\n"
    )


def test_a_daemon_error_is_printed_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with cli_against(vxn_cli, tmp_path, FakeImageService()):
        code = _exit_code("--run-dir", str(tmp_path / "r"), "rmi", "nope")
    assert code == 125
    assert capsys.readouterr().err == "vxn: image nope: no such image; see `vxn images`\n"


def test_a_daemon_with_another_api_version_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "9.0.0", "api": 999})

    app = web.Application()
    app.router.add_get("/v1/version", version)
    run = RunDir(tmp_path)
    with serve_app(app, run.socket):
        assert _exit_code("--run-dir", str(tmp_path), "images") == 125
    assert capsys.readouterr().err == (
        f"vxn: vxnd at {run.socket} speaks API v999, this vxn needs v1: restart vxnd\n"
    )


def test_an_interrupted_prompt_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert _exit_code("image", "prune") == 130
    assert capsys.readouterr().err.endswith("Aborted!\n")


def test_oci_runtime_is_not_implemented_yet(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        oci_runtime.main()
    assert caught.value.code == 1
    assert capsys.readouterr().err == "vxn-oci-runtime: not implemented yet\n"
