"""`vxn load`: stream an archive, or an OCI layout directory as a tar, to vxnd.

Nothing is staged on disk: a directory is tarred straight into the chunked request
body, a file or stdin is copied into it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vxn import args
from vxn.errors import InvalidArgument

if TYPE_CHECKING:
    import tarfile

    from vxn.cli.main import App

_PATH = args.Path(exists=True)


@args.command("load")
@args.argument("path", required=False, type=_PATH)
@args.option("-i", "--input", "input_", type=_PATH, help="Archive or OCI layout (not stdin).")
@args.option("--name", help="Name the image REF (for an archive that names none).")
@args.option("--platform", help="Load only this platform: os/arch[/variant].")
def load(
    app: App, path: Path | None, input_: Path | None, name: str | None, platform: str | None
) -> None:
    """Load images from an OCI layout, oci-archive or docker-archive (or stdin)."""
    if path is not None and input_ is not None:
        raise InvalidArgument("load: give the archive once: as PATH or as -i PATH")
    source = path or input_
    stdin = sys.stdin.buffer
    if source is None and stdin.isatty():
        raise InvalidArgument("load: stdin is a terminal: pass -i PATH, or redirect an archive")
    query = {"name": name} if name else {}
    if platform:
        from vxn.core.platform import Platform

        query["platform"] = str(Platform.parse(platform))  # fail before the upload, not after

    def write(out: BinaryIO) -> None:
        try:
            if source is None:
                shutil.copyfileobj(stdin, out, 1 << 20)
            elif source.is_dir():
                _write_tar(source, out)
            else:
                with source.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        except OSError as e:
            what = e.filename or source or "stdin"
            raise InvalidArgument(f"load: cannot read {what}: {e.strerror or e}") from None

    for line in app.client().upload("/v1/images/load", query, write):
        if line.get("loaded"):
            args.echo(f"Loaded image: {line['loaded']}")
        elif line.get("loaded_id"):
            args.echo(f"Loaded image ID: {line['loaded_id']}")


def _write_tar(root: Path, out: BinaryIO) -> None:
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=_anonymous)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Our uid and user name mean nothing to vxnd."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
