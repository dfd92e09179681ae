"""`vxn wait`: block until each container exits, and print its exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli.commands._containers import each, path

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("wait")
@args.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
def wait(app: App, containers: tuple[str, ...]) -> int:
    """Wait for containers to exit; print their exit codes."""
    client = app.client()
    return each(containers, lambda ref: str(client.post(path(ref, "wait"))["exit"]))
