"""`vxn run`'s own checks: flags that are not built yet are refused before vxnd is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from vxn.cli.commands.run import _env
from vxn.cli.main import cli
from vxn.errors import InvalidArgument


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (["-p", "80:80"], "-p/--publish"),
        (["-v", "/a:/b"], "-v/--volume"),
        (["--restart", "always"], "--restart"),
        (["-d"], "-d/--detach"),
        (["-it"], "-i/--interactive"),
        (["--network", "host"], "--network host"),
    ],
)
def test_unsupported_flags_are_refused(tmp_path: Path, flags: list[str], name: str) -> None:
    env = {"VXN_NO_AUTOSTART": "1", "VXN_RUN_DIR": str(tmp_path)}
    with pytest.raises(InvalidArgument, match=f"run: {name} is not supported yet"):
        CliRunner().invoke(cli, ["run", *flags, "img"], env=env, catch_exceptions=False)


def test_env_comes_from_files_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_CALLER", "yes")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    env_file = tmp_path / "env"
    env_file.write_text("# c\nA=1\nFROM_CALLER\nUNSET_HERE\n")
    assert _env(("B=2", "A=3"), (env_file,)) == ["A=1", "FROM_CALLER=yes", "B=2", "A=3"]
    with pytest.raises(InvalidArgument, match="cannot read it"):
        _env((), (tmp_path / "missing",))
