"""`vxn image unpack IMAGE DIR`: the flattened tree in a new directory, like umoci unpack.

For inspection and debugging: the exit code and the one-line error say whether the
image is sound. vxnd writes DIR (as root, with the image's owners), so DIR is made
absolute here, against the caller's working directory, and must not exist yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vxn import args

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("unpack")
@args.argument("ref", metavar="IMAGE")
@args.argument("dest", metavar="DIR", type=args.Path())
def unpack(app: App, ref: str, dest: Path) -> None:
    """Flatten IMAGE's layers into the new directory DIR and print its path.

    vxnd writes DIR as root, keeping the image's owners and modes; DIR must not exist.
    """
    reply = app.client().post("/v1/images/unpack", {"ref": ref, "dir": str(dest.absolute())})
    args.echo(reply["dir"])
