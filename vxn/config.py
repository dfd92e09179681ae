"""Settings: defaults, overridden by the config file, then env vars, then flags.

The config file is TOML (`/etc/vxn/vxn.toml`, or `$VXN_CONFIG`):

    state_dir = "/var/lib/vxn"
    run_dir = "/run/vxn"
    socket_group = "vxn"
    platform = "linux/arm64"   # default is the Dom0's own

    [pull]                     # how hard a pull tries (defaults shown in PullSettings)
    read_timeout = 30
    [registries."127.0.0.1:5000"]
    insecure = true            # plain HTTP, or HTTPS without certificate checks
    [guest]                    # how containers boot (defaults shown in GuestSettings)
    memory = 256

A missing file at the default location is fine; a missing file that was named
explicitly, or a malformed one, is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from vxn.errors import InvalidArgument

DEFAULT_CONFIG = Path("/etc/vxn/vxn.toml")
DEFAULT_STATE_DIR = Path("/var/lib/vxn")
DEFAULT_RUN_DIR = Path("/run/vxn")

_KEYS = {"state_dir", "run_dir", "socket_group", "platform"}
MAX_PARALLEL = 32
_TABLES = {"pull", "registries", "guest"}
# A pattern, not a compiled regex: re compiles (and caches) it when a config has registries.
_HOST_PATTERN = r"[A-Za-z0-9.-]+(:[0-9]+)?|\[[0-9A-Fa-f:]+\](:[0-9]+)?"


@dataclass(frozen=True, slots=True, kw_only=True)
class PullSettings:
    """`[pull]`: how long and how hard a pull tries before it gives up."""

    connect_timeout: float = 10.0  # seconds to open a connection
    read_timeout: float = 30.0  # seconds without a byte from the registry
    blob_timeout: float = 60.0  # per manifest or blob, every attempt included, plus
    min_rate: float = 65536.0  # one second per min_rate bytes of the blob (trickle guard)
    attempts: int = 4  # tries per request on 5xx, 429 and broken connections
    retry_delay: float = 0.5  # first backoff (doubles, with jitter)
    parallel: int = 4  # blobs downloaded at once


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySettings:
    """`[registries."host:port"]`."""

    insecure: bool = False  # plain HTTP, or HTTPS without certificate checks


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestSettings:
    """`[guest]`: how containers boot (`vxn run` flags override the first three)."""

    backend: str = "auto"  # auto (xen when its toolstack runs, else qemu), qemu or xen
    memory: int = 256  # MiB
    cpus: int = 1
    kernel_dir: str = ""  # default <state_dir>/guest/kernel
    accel: str = "auto"  # qemu: auto (KVM once a probe boot proved it works), kvm or tcg
    boot_timeout: float = 60.0  # seconds until guest-init reaches its start marker


_GUEST_CHOICES = {"backend": ("auto", "qemu", "xen"), "accel": ("auto", "kvm", "tcg")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    config_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    run_dir: Path = DEFAULT_RUN_DIR
    socket_group: str = "vxn"
    platform: str | None = None
    pull: PullSettings = field(default_factory=PullSettings)
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    guest: GuestSettings = field(default_factory=GuestSettings)


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
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise InvalidArgument(f"config {path}: no such file; fix VXN_CONFIG") from None
        return Settings()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config {path}: cannot read: {e}") from None
    import tomllib  # here: every CLI call loads settings, and most have no file to parse

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"config {path}: invalid TOML: {e}") from None
    _known(data, _KEYS | _TABLES, path, "")
    for key, value in data.items():
        if key in _KEYS and (not isinstance(value, str) or not value):
            raise InvalidArgument(f"config {path}: {key} must be a non-empty string")
    return Settings(
        config_file=path,
        state_dir=Path(data.get("state_dir", DEFAULT_STATE_DIR)),
        run_dir=Path(data.get("run_dir", DEFAULT_RUN_DIR)),
        socket_group=data.get("socket_group", "vxn"),
        platform=data.get("platform"),
        pull=_pull(data.get("pull", {}), path),
        registries=_registries(data.get("registries", {}), path),
        guest=_guest(data.get("guest", {}), path),
    )


def _known(table: object, keys: set[str], path: Path, where: str) -> dict[str, object]:
    if not isinstance(table, dict):
        raise InvalidArgument(f"config {path}: {where.rstrip('.')} must be a table")
    unknown = sorted(set(table) - keys)
    if unknown:
        raise InvalidArgument(
            f"config {path}: unknown key {where}{unknown[0]!r} (known: {', '.join(sorted(keys))})"
        )
    return table


def _pull(table: object, path: Path) -> PullSettings:
    defaults = PullSettings()
    values = _known(table, {f.name for f in fields(PullSettings)}, path, "pull.")
    for key, value in values.items():
        whole = isinstance(getattr(defaults, key), int)
        kind = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            want = "a positive integer" if whole else "a positive number"
            raise InvalidArgument(f"config {path}: pull.{key} must be {want}")
    parallel = values.get("parallel", 1)
    if isinstance(parallel, int) and parallel > MAX_PARALLEL:
        raise InvalidArgument(f"config {path}: pull.parallel must be at most {MAX_PARALLEL}")
    return replace(defaults, **values)  # type: ignore[arg-type]


def _registries(table: object, path: Path) -> dict[str, RegistrySettings]:
    if not isinstance(table, dict):
        raise InvalidArgument(f"config {path}: registries must be a table")
    out = {}
    for host, entry in table.items():
        if not re.fullmatch(_HOST_PATTERN, host):
            raise InvalidArgument(f"config {path}: registries.{host!r}: want host or host:port")
        values = _known(entry, {"insecure"}, path, f"registries.{host}.")
        if not isinstance(values.get("insecure", False), bool):
            raise InvalidArgument(f"config {path}: registries.{host}.insecure must be true/false")
        out[host] = RegistrySettings(**values)  # type: ignore[arg-type]
    return out


def _guest(table: object, path: Path) -> GuestSettings:
    defaults = GuestSettings()
    values = _known(table, {f.name for f in fields(GuestSettings)}, path, "guest.")
    for key, value in values.items():
        want = type(getattr(defaults, key))
        if want is str:
            choices = _GUEST_CHOICES.get(key)
            if not isinstance(value, str) or (choices and value not in choices):
                wanted = " or ".join(choices) if choices else "a string"
                raise InvalidArgument(f"config {path}: guest.{key} must be {wanted}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InvalidArgument(f"config {path}: guest.{key} must be a positive number")
        elif want is int and not isinstance(value, int):
            raise InvalidArgument(f"config {path}: guest.{key} must be a whole number")
    return replace(defaults, **values)  # type: ignore[arg-type]
