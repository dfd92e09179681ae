"""`vxn stop`: SIGTERM to each container's main process, SIGKILL after -t seconds.
`vxn restart` (restart.py) is the same command with another action."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli.commands._containers import each, path

if TYPE_CHECKING:
    from vxn.cli.main import App


def stopping(action: str, summary: str) -> args.Command:
    """A command that posts `action` for each container, with stop's grace time `-t`."""

    @args.command(action, help=summary)
    @args.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
    @args.option("-t", "--time", "timeout", type=args.IntRange(min=0), help="Seconds (default 10).")
    def command(app: App, containers: tuple[str, ...], timeout: int | None) -> int:
        client = app.client()
        query = {"t": str(timeout)} if timeout is not None else None

        def act(ref: str) -> str:
            client.post(path(ref, action), query=query)
            return ref

        return each(containers, act)

    return command


stop = stopping("stop", "Stop one or more running containers.")
