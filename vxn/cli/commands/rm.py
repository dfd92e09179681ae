"""`vxn rm`: remove containers and their disks; -f stops a running one first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli.commands._containers import each, path

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("rm")
@args.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
@args.option("-f", "--force", is_flag=True, help="Kill and remove a running container.")
def rm(app: App, containers: tuple[str, ...], force: bool) -> int:
    """Remove one or more containers."""
    client = app.client()
    query = {"force": "1"} if force else None

    def act(ref: str) -> str:
        client.delete(path(ref), query)
        return ref

    return each(containers, act)
