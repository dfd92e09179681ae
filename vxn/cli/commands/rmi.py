"""`vxn rmi` (and `vxn image rm`): untag and remove images, like `docker rmi`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.errors import Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("rmi")
@args.argument("images", nargs=-1, required=True)
@args.option("-f", "--force", is_flag=True, help="Remove an image that several names point at.")
def rmi(app: App, images: tuple[str, ...], force: bool) -> None:
    """Remove one or more images."""
    client = app.client()
    failures: list[VxnError] = []
    for ref in images:
        try:
            reply = client.post("/v1/images/remove", {"ref": ref, "force": force})
        except Unavailable:
            raise
        except VxnError as e:
            failures.append(e)  # like docker: go on, report at the end
            continue
        for line in reply["lines"]:
            args.echo(line)
    for failure in failures[:-1]:
        args.echo(f"vxn: {failure}", err=True)
    if failures:
        raise failures[-1]
