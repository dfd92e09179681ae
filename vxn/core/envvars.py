"""Environment entries as the CLI takes them (`-e`, `--env-file`) and as the guest
gets them (KEY=VALUE). Apart from guestspec, so that the CLI's `run` and `exec`
import only this: under TCG every module the CLI imports shows in `vxn run`'s time."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from vxn.errors import InvalidArgument

_ENV_KEY = re.compile(r"[^=\s]+")


def check_env(entry: str) -> str:
    key, sep, _ = entry.partition("=")
    if not sep or not _ENV_KEY.fullmatch(key) or "\0" in entry:
        raise InvalidArgument(f"env {entry[:60]!r}: want KEY=VALUE (no spaces or NUL in KEY)")
    return entry


def resolve_env(entries: Sequence[str], caller: Mapping[str, str]) -> list[str]:
    """`-e K=V` stays; `-e K` takes K from the caller's env, and is dropped when unset."""
    out = []
    for entry in entries:
        if "=" in entry:
            out.append(check_env(entry))
        elif entry in caller:
            out.append(check_env(f"{entry}={caller[entry]}"))
        elif not _ENV_KEY.fullmatch(entry):
            raise InvalidArgument(f"env {entry[:60]!r}: want KEY=VALUE or KEY")
    return out


def parse_env_file(text: str, name: str) -> list[str]:
    """`--env-file`: one KEY=VALUE or KEY per line; blank lines and # comments are skipped.

    Values are taken verbatim (no quotes are removed), as Docker does.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key = stripped.partition("=")[0]
        if not _ENV_KEY.fullmatch(key):
            raise InvalidArgument(f"env file {name}: line {number}: variable {key!r} is invalid")
        entries.append(stripped)
    return entries
