"""`vxn restart`: stop each container (SIGTERM, SIGKILL after -t seconds), then start it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from vxn.cli.commands._containers import each, path

if TYPE_CHECKING:
    from vxn.cli.main import App


@click.command("restart")
@click.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=click.IntRange(min=0), help="Seconds (default 10).")
@click.pass_obj
def restart(app: App, containers: tuple[str, ...], timeout: int | None) -> int:
    """Restart one or more containers."""
    client = app.client()
    query = {"t": str(timeout)} if timeout is not None else None

    def act(ref: str) -> str:
        client.post(path(ref, "restart"), query=query)
        return ref

    return each(containers, act)
