"""What the guest runs, by Docker's rules: argv, env, working dir, user, hostname, tty.

`build_spec` merges an image config with `vxn run`'s options the way `docker run`
does; the env-file and memory parsers are the pure halves of their flags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vxn.core.envvars import check_env
from vxn.core.manifest import ImageConfig
from vxn.errors import InvalidArgument

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})")
_USER = re.compile(r"[^:\s]+(:[^:\s]+)?")
_MEMORY = re.compile(r"([0-9]+)\s*([bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """The parts of `vxn run` that shape the process (the CLI has resolved -e K and files)."""

    command: tuple[str, ...] = ()  # CMD... after IMAGE: replaces the image's Cmd
    entrypoint: str | None = None  # --entrypoint: replaces Entrypoint and drops Cmd; "" clears
    env: tuple[str, ...] = ()  # K=V, later ones win
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    read_only: bool = False
    stdin: bool = False
    tty: bool = False  # -t: a pty in the guest
    rows: int = 0  # its initial size; 0 = unknown
    cols: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestSpec:
    argv: tuple[str, ...]
    env: tuple[str, ...]  # K=V; HOME is added in the guest from the image's passwd
    cwd: str
    user: str  # "" (root), "name", "uid", "name:group", "uid:gid"...
    hostname: str
    read_only: bool = False
    stdin: bool = False
    tty: bool = False
    rows: int = 0
    cols: int = 0


def build_spec(config: ImageConfig, options: RunOptions, *, container_id: str) -> GuestSpec:
    """The process `docker run` would start for `config` with `options`."""
    if options.entrypoint is not None:
        entrypoint: tuple[str, ...] = (options.entrypoint,) if options.entrypoint else ()
        cmd = options.command  # --entrypoint drops the image's Cmd, as Docker does
    else:
        entrypoint = config.entrypoint or ()
        cmd = options.command or config.cmd or ()
    argv = (*entrypoint, *cmd)
    if not argv:
        raise InvalidArgument("run: no command specified: the image has no Entrypoint or Cmd")
    hostname = options.hostname or container_id[:12]
    if not _HOSTNAME.fullmatch(hostname):
        raise InvalidArgument(f"run: hostname {hostname!r} is invalid; want letters, digits, . -")
    cwd = check_cwd(options.workdir or config.working_dir or "/", "run")
    user = check_user(options.user if options.user is not None else config.user, "run")
    check_size(options.rows, options.cols, "run")
    env = merge_env(default_env(hostname, tty=options.tty), config.env, options.env)
    return GuestSpec(
        argv=argv,
        env=env,
        cwd=cwd,
        user=user,
        hostname=hostname,
        read_only=options.read_only,
        stdin=options.stdin,
        tty=options.tty,
        rows=options.rows,
        cols=options.cols,
    )


def default_env(hostname: str, *, tty: bool) -> tuple[str, ...]:
    """Docker's daemon env, under the image's and the user's: TERM only with a tty."""
    return (f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}", *(("TERM=xterm",) if tty else ()))


def check_cwd(cwd: str, what: str) -> str:
    if not cwd.startswith("/"):
        raise InvalidArgument(f"{what}: working directory {cwd!r} must be an absolute path")
    return cwd


def check_user(user: str, what: str) -> str:
    """A user as the guest resolves it: "" (root), NAME, UID, NAME:GROUP, UID:GID..."""
    if user and not _USER.fullmatch(user):
        raise InvalidArgument(f"{what}: user {user!r} is invalid; want NAME|UID[:GROUP|GID]")
    return user


def check_size(rows: int, cols: int, what: str) -> None:
    """A terminal size: each in 0..65535 (0 = unknown)."""
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise InvalidArgument(f"{what}: terminal size {rows}x{cols} is invalid; want 0..65535 each")


def merge_env(*layers: Iterable[str]) -> tuple[str, ...]:
    """Later layers replace a key in place or append it (Docker's ReplaceOrAppendEnvValues)."""
    merged: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key = check_env(entry).partition("=")[0]
            merged[key] = entry
    return tuple(merged.values())


def parse_memory(text: str) -> int:
    """`-m 256m`, `1g`, `268435456`: a size in MiB (Docker's units; bytes when there is none)."""
    match = _MEMORY.fullmatch(text.strip())
    if not match:
        raise InvalidArgument(f"memory {text!r}: want a size like 256m or 1g")
    size = int(match[1]) * _UNITS[match[2].lower()]
    if size % (1 << 20):
        raise InvalidArgument(f"memory {text!r}: want a whole number of MiB")
    return size >> 20
