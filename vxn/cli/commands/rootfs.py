"""`vxn image rootfs IMAGE`: the image's read-only base disk, built if need be."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from vxn.cli.main import App


@click.command("rootfs")
@click.argument("ref", metavar="IMAGE")
@click.pass_obj
def rootfs(app: App, ref: str) -> None:
    """Build IMAGE's base disk (once per image) and print its path."""
    click.echo(app.client().post("/v1/images/rootfs", {"ref": ref})["path"])
