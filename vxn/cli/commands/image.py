"""`vxn image`: inspect and prune, plus the ls/rm/tag/load aliases, like `docker image`,
and vxn's own unpack and rootfs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.cli import render
from vxn.cli.commands.images import images
from vxn.cli.commands.load import load
from vxn.cli.commands.rmi import rmi
from vxn.cli.commands.rootfs import rootfs
from vxn.cli.commands.tag import tag
from vxn.cli.commands.unpack import unpack
from vxn.errors import NotFound

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.group("image")
def image() -> None:
    """Manage images."""


image.add_command(images, "ls")
image.add_command(rmi, "rm")
image.add_command(tag, "tag")
image.add_command(load, "load")
image.add_command(unpack, "unpack")
image.add_command(rootfs, "rootfs")


@image.command("inspect")
@args.argument("refs", metavar="IMAGE...", nargs=-1, required=True)
def inspect(app: App, refs: tuple[str, ...]) -> None:
    """Show images as JSON; what is missing is reported after, like docker."""
    client = app.client()
    found: list[Any] = []
    missing: list[NotFound] = []
    for ref in refs:
        try:
            found.append(client.get("/v1/images/inspect", {"ref": ref}))
        except NotFound as e:
            missing.append(e)
    args.echo(render.go_escape(json.dumps(found, indent=4)))
    for error in missing[:-1]:
        args.echo(f"vxn: {error}", err=True)
    if missing:
        raise missing[-1]


@image.command("prune")
@args.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
def prune(app: App, force: bool) -> None:
    """Remove dangling images and the blobs nothing uses."""
    warning = "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
    if not force and not args.confirm(warning, default=False):
        return
    report = app.client().post("/v1/images/prune")
    if report["deleted"]:
        args.echo("Deleted blobs:")
        for digest in report["deleted"]:
            args.echo(f"deleted: {digest}")
        args.echo()
    args.echo(f"Total reclaimed space: {render.human_size(report['reclaimed'], 4)}")
