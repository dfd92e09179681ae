"""Settings: defaults, overridden by the config file, then env vars, then flags.

The config file is TOML (`/etc/vxn/vxn.toml`, or `$VXN_CONFIG`):

    state_dir = "/var/lib/vxn"
    run_dir = "/run/vxn"
    socket_group = "vxn"
    platform = "linux/arm64"   # default is the Dom0's own

A missing file at the default location is fine; a missing file that was named
explicitly, or a malformed one, is an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from vxn.errors import InvalidArgument

DEFAULT_CONFIG = Path("/etc/vxn/vxn.toml")
DEFAULT_STATE_DIR = Path("/var/lib/vxn")
DEFAULT_RUN_DIR = Path("/run/vxn")

_KEYS = {"state_dir", "run_dir", "socket_group", "platform"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    config_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    run_dir: Path = DEFAULT_RUN_DIR
    socket_group: str = "vxn"
    platform: str | None = None


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    state_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> Settings:
    """Resolve settings from the config file, `VXN_*` env vars and explicit flags."""
    env = os.environ if env is None else env
    named = env.get("VXN_CONFIG")
    path = Path(named) if named else DEFAULT_CONFIG
    settings = _read_file(path, required=bool(named))
    if env.get("VXN_STATE_DIR"):
        settings = replace(settings, state_dir=Path(env["VXN_STATE_DIR"]))
    if env.get("VXN_RUN_DIR"):
        settings = replace(settings, run_dir=Path(env["VXN_RUN_DIR"]))
    if state_dir is not None:
        settings = replace(settings, state_dir=Path(state_dir))
    if run_dir is not None:
        settings = replace(settings, run_dir=Path(run_dir))
    return replace(
        settings, state_dir=settings.state_dir.absolute(), run_dir=settings.run_dir.absolute()
    )


def _read_file(path: Path, *, required: bool) -> Settings:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise InvalidArgument(f"config {path}: no such file; fix VXN_CONFIG") from None
        return Settings()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config {path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"config {path}: invalid TOML: {e}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidArgument(
            f"config {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"config {path}: {key} must be a non-empty string")
    return Settings(
        config_file=path,
        state_dir=Path(data.get("state_dir", DEFAULT_STATE_DIR)),
        run_dir=Path(data.get("run_dir", DEFAULT_RUN_DIR)),
        socket_group=data.get("socket_group", "vxn"),
        platform=data.get("platform"),
    )
