"""`vxn attach`: join a running container's output (and stdin, if it keeps it open).

Ctrl-P Ctrl-Q (`--detach-keys`) leaves it running; otherwise this ends with its exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli import terminal
from vxn.cli.commands._containers import path, session_options
from vxn.errors import InvalidArgument

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("attach")
@args.argument("container")
@args.option(
    "--detach-keys", default=terminal.DEFAULT_DETACH_KEYS, help="Keys that detach (ctrl-p,ctrl-q)."
)
@args.option("--no-stdin", is_flag=True, help="Do not send stdin.")
@args.option(
    "--sig-proxy",
    is_flag=True,
    default=True,
    help="Forward signals (default true; not with a tty).",
)
def attach(app: App, container: str, detach_keys: str, no_stdin: bool, sig_proxy: bool) -> int:
    """Attach this terminal to a running container."""
    keys = terminal.parse_detach_keys(detach_keys)
    client = app.client()
    tty, open_stdin = session_options(client, container)
    stdin = open_stdin and not no_stdin
    if tty and stdin and not terminal.stdin_is_terminal():
        raise InvalidArgument(f"attach {container}: {terminal.NOT_A_TTY}")
    wiring = terminal.Wiring(
        stdin=stdin, tty=tty, sig_proxy=sig_proxy, detach_keys=keys, label=f"attach {container}"
    )
    duplex = client.duplex(path(container, "attach"), {"stdin": stdin, "logs": False})
    code = terminal.relay(duplex, wiring)
    return 0 if code is None else code
