from __future__ import annotations

from pathlib import Path

import pytest

from vxn.config import (
    DEFAULT_RUN_DIR,
    DEFAULT_STATE_DIR,
    PullSettings,
    RegistrySettings,
    load_settings,
)
from vxn.errors import InvalidArgument


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vxn.toml"
    path.write_text(text)
    return path


def test_defaults_when_no_config_exists() -> None:
    settings = load_settings(env={})
    assert settings.state_dir == DEFAULT_STATE_DIR
    assert settings.run_dir == DEFAULT_RUN_DIR
    assert settings.socket_group == "vxn"
    assert settings.platform is None


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'state_dir = "/a"\nrun_dir = "/b"\nplatform = "linux/arm64"\n')
    from_file = load_settings(env={"VXN_CONFIG": str(cfg)})
    assert (from_file.state_dir, from_file.run_dir) == (Path("/a"), Path("/b"))
    assert from_file.platform == "linux/arm64"
    assert from_file.config_file == cfg

    env = {"VXN_CONFIG": str(cfg), "VXN_STATE_DIR": "/c", "VXN_RUN_DIR": "/d"}
    from_env = load_settings(env=env)
    assert (from_env.state_dir, from_env.run_dir) == (Path("/c"), Path("/d"))

    from_flags = load_settings(env=env, state_dir="/e", run_dir="/f")
    assert (from_flags.state_dir, from_flags.run_dir) == (Path("/e"), Path("/f"))


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"VXN_STATE_DIR": "state"}, run_dir="run")
    assert settings.state_dir == tmp_path / "state"
    assert settings.run_dir == tmp_path / "run"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state_dir = ", "invalid TOML"),
        ('colour = "blue"', "unknown key 'colour'"),
        ("state_dir = 3", "state_dir must be a non-empty string"),
        ('run_dir = ""', "run_dir must be a non-empty string"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(InvalidArgument, match=message) as info:
        load_settings(env={"VXN_CONFIG": str(cfg)})
    assert str(info.value).startswith(f"config {cfg}: ")
    assert "\n" not in str(info.value)


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file; fix VXN_CONFIG"):
        load_settings(env={"VXN_CONFIG": str(tmp_path / "missing.toml")})


def test_pull_settings_and_registries(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        "[pull]\nread_timeout = 0.5\nattempts = 2\n"
        '[registries."127.0.0.1:5000"]\ninsecure = true\n[registries."reg.example"]\n',
    )
    settings = load_settings(env={"VXN_CONFIG": str(cfg)})
    assert settings.pull == PullSettings(read_timeout=0.5, attempts=2)
    assert settings.registries == {
        "127.0.0.1:5000": RegistrySettings(insecure=True),
        "reg.example": RegistrySettings(),
    }
    assert load_settings(env={}).pull == PullSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pull]\ncolour = 1", "unknown key pull.'colour' (known: attempts, blob_timeout, "),
        ("[pull]\nattempts = 0", "pull.attempts must be a positive integer"),
        ("[pull]\nattempts = 1.5", "pull.attempts must be a positive integer"),
        ("[pull]\nparallel = 33", "pull.parallel must be at most 32"),
        ('[pull]\nread_timeout = "1"', "pull.read_timeout must be a positive number"),
        ("[pull]\nread_timeout = true", "pull.read_timeout must be a positive number"),
        ("pull = 3", "pull must be a table"),
        ("registries = 3", "registries must be a table"),
        ('[registries."a/b"]', "registries.'a/b': want host or host:port"),
        ('[registries."h"]\ninsecure = "yes"', "registries.h.insecure must be true/false"),
        ('[registries."h"]\ntls = false', "unknown key registries.h.'tls' (known: insecure)"),
    ],
)
def test_bad_registry_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(InvalidArgument) as info:
        load_settings(env={"VXN_CONFIG": str(cfg)})
    assert str(info.value).startswith(f"config {cfg}: {message}")
