import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.adapters.statedir import RunDir
from vxn.daemon import main as vxnd, server
from vxn.errors import Unavailable


@pytest.fixture(autouse=True)
def root_logger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    (tmp_path / "vxn.toml").write_text("")
    monkeypatch.setenv("VXN_CONFIG", str(tmp_path / "vxn.toml"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


def _exit_code(*argv: str) -> int | str | None:
    with pytest.raises(SystemExit) as caught:
        vxnd.main(list(argv))
    return caught.value.code


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code("--version") == 0
    assert capsys.readouterr().out == "vxnd version 0.1.0\n"


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code("--bogus") == 2
    assert "No such option '--bogus'" in capsys.readouterr().err


def test_a_second_vxnd_exits_1_and_says_why(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    fd = server.take_lock(run)
    try:
        log = tmp_path / "vxnd.log"
        assert _exit_code("--run-dir", str(run.root), "--log-file", str(log)) == 1
    finally:
        os.close(fd)
    last = log.read_text().splitlines()[-1]
    message = f"another vxnd is running for {run.root}: stop it, or use another --run-dir"
    assert last.endswith(f" ERROR vxnd: {message}")


def test_a_bad_config_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "vxn.toml").write_text("nonsense = [")
    assert _exit_code("--run-dir", str(tmp_path / "r")) == 1
    assert "invalid TOML" in caplog.text


def test_vxnd_serves_the_engine_and_makes_its_state_dir(tmp_path: Path) -> None:
    from vxn.config import Settings
    from vxn.core.platform import Platform
    from vxn.engine.images import ImageService

    settings, platform = Settings(state_dir=tmp_path / "s"), Platform.parse("linux/amd64")
    assert isinstance(vxnd._image_service(settings, platform), ImageService)
    assert (tmp_path / "s" / "content").is_dir()


def test_an_unusable_state_dir_is_one_clear_error(tmp_path: Path) -> None:
    from vxn.config import Settings
    from vxn.core.platform import Platform

    (tmp_path / "s").write_text("not a dir")
    settings, platform = Settings(state_dir=tmp_path / "s"), Platform.parse("linux/amd64")
    with pytest.raises(Unavailable, match=r"state dir .*/s: cannot create it \(File exists\)"):
        vxnd._image_service(settings, platform)
