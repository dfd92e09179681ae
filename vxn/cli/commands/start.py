"""`vxn start`: start created or exited containers (an exited one keeps its disk).

`-a` attaches to one container first, as `run` does, and exits with its code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli import terminal
from vxn.cli.commands._containers import each, path, session_options
from vxn.errors import InvalidArgument

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("start")
@args.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
@args.option("-a", "--attach", is_flag=True, help="Attach its output; exit with its code.")
@args.option("-i", "--interactive", is_flag=True, help="Attach its stdin too.")
@args.option(
    "--detach-keys", default=terminal.DEFAULT_DETACH_KEYS, help="Keys that detach (ctrl-p,ctrl-q)."
)
def start(
    app: App, containers: tuple[str, ...], attach: bool, interactive: bool, detach_keys: str
) -> int:
    """Start one or more stopped containers."""
    client = app.client()
    if not (attach or interactive):

        def act(ref: str) -> str:
            client.post(path(ref, "start"))
            return ref

        return each(containers, act)
    if len(containers) > 1:
        raise InvalidArgument("start: cannot attach to several containers at once; drop -a/-i")
    ref = containers[0]
    keys = terminal.parse_detach_keys(detach_keys)
    tty, open_stdin = session_options(client, ref)
    stdin = interactive and open_stdin
    if tty and stdin and not terminal.stdin_is_terminal():
        raise InvalidArgument(f"start {ref}: {terminal.NOT_A_TTY}")
    wiring = terminal.Wiring(
        stdin=stdin, tty=tty, sig_proxy=True, detach_keys=keys, label=f"start {ref}"
    )
    duplex = client.duplex(path(ref, "attach"), {"stdin": stdin, "logs": False})
    code = terminal.relay(duplex, wiring, start=lambda: client.post(path(ref, "start")))
    return 0 if code is None else code
