"""`vxn rmi` (and `vxn image rm`): untag and remove images, like `docker rmi`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from vxn.errors import Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.cli.main import App


@click.command("rmi")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove an image that several names point at.")
@click.pass_obj
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
            click.echo(line)
    for failure in failures[:-1]:
        click.echo(f"vxn: {failure}", err=True)
    if failures:
        raise failures[-1]
