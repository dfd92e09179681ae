"""`vxn stop`: SIGTERM to each container's main process, SIGKILL after -t seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from vxn.cli.commands._containers import each, path

if TYPE_CHECKING:
    from vxn.cli.main import App


@click.command("stop")
@click.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=click.IntRange(min=0), help="Seconds (default 10).")
@click.pass_obj
def stop(app: App, containers: tuple[str, ...], timeout: int | None) -> int:
    """Stop one or more running containers."""
    client = app.client()
    query = {"t": str(timeout)} if timeout is not None else None

    def act(ref: str) -> str:
        client.post(path(ref, "stop"), query=query)
        return ref

    return each(containers, act)
