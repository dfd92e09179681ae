"""`vxn image unpack IMAGE DIR`: the flattened tree in a new directory, like umoci unpack.

For inspection and debugging: the exit code and the one-line error say whether the
image is sound. vxnd writes DIR (as root, with the image's owners), so DIR is made
absolute here, against the caller's working directory, and must not exist yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from vxn.cli.main import App


@click.command("unpack")
@click.argument("ref", metavar="IMAGE")
@click.argument("dest", metavar="DIR", type=click.Path(path_type=Path))
@click.pass_obj
def unpack(app: App, ref: str, dest: Path) -> None:
    """Flatten IMAGE's layers into the new directory DIR and print its path.

    vxnd writes DIR as root, keeping the image's owners and modes; DIR must not exist.
    """
    reply = app.client().post("/v1/images/unpack", {"ref": ref, "dir": str(dest.absolute())})
    click.echo(reply["dir"])
