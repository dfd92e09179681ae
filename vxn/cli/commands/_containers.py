"""What the container commands share: the route of a container, acting on several of them
like Docker (each one reported, exit 1 if any failed), and reading a container's tty and
stdin settings from its inspect document."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.errors import InvalidArgument, Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.cli.client import Client

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def path(ref: str, action: str = "") -> str:
    """`/v1/containers/{ref}[/action]`, the ref percent-encoded so it stays one segment."""
    quoted = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in ref)
    return f"/v1/containers/{quoted}/{action}" if action else f"/v1/containers/{quoted}"


def each(refs: Iterable[str], act: Callable[[str], str | None]) -> int:
    """Run `act` on every ref, echoing what it returns; errors go to stderr and make it 1.

    A daemon that is gone ends it all at once (exit 125), as there is no one to ask.
    """
    failed = False
    for ref in refs:
        try:
            shown = act(ref)
        except Unavailable:
            raise
        except VxnError as e:
            args.echo(f"vxn: {e}", err=True)
            failed = True
            continue
        if shown is not None:
            args.echo(shown)
    return 1 if failed else 0


def session_options(client: Client, ref: str) -> tuple[bool, bool]:
    """(tty, stdin) the container was created with, as its inspect document records them."""
    options: dict[str, Any] = client.get(path(ref)).get("options") or {}
    return bool(options.get("tty")), bool(options.get("stdin"))


def parse_signal(text: str) -> int:
    """Docker's signal syntax: `KILL`, `SIGKILL`, `sigterm` or a number (1 to 64)."""
    if text.isdigit():
        number = int(text)
        if 1 <= number <= 64:
            return number
    else:
        name = text.upper().removeprefix("SIG")
        if "SIG" + name in signal.Signals.__members__:
            return int(signal.Signals["SIG" + name])
    raise InvalidArgument(f"signal {text!r}: not a signal; use a name (TERM, KILL) or 1-64")
