"""`vxn kill`: send a signal (default KILL) to each container's main process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli.commands._containers import each, parse_signal, path

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("kill")
@args.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
@args.option("-s", "--signal", "sig", default="KILL", help="Name or number (default KILL).")
def kill(app: App, containers: tuple[str, ...], sig: str) -> int:
    """Kill one or more running containers."""
    query = {"signal": str(parse_signal(sig))}  # a bad name fails here, before vxnd is asked
    client = app.client()

    def act(ref: str) -> str:
        client.post(path(ref, "kill"), query=query)
        return ref

    return each(containers, act)
