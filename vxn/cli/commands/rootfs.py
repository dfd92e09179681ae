"""`vxn image rootfs IMAGE`: the image's read-only base disk, built if need be."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("rootfs")
@args.argument("ref", metavar="IMAGE")
def rootfs(app: App, ref: str) -> None:
    """Build IMAGE's base disk (once per image) and print its path."""
    args.echo(app.client().post("/v1/images/rootfs", {"ref": ref})["path"])
