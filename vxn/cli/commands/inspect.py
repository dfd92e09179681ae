"""`vxn inspect`: containers and images as one JSON array, like `docker inspect`.

Each name is looked up as a container first, then as an image (unless --type says).
What is found is printed; each miss is reported after it, and makes the exit 1.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.cli import render
from vxn.cli.commands._containers import path
from vxn.errors import NotFound

if TYPE_CHECKING:
    from vxn.cli.client import Client
    from vxn.cli.main import App


@args.command("inspect")
@args.argument("names", metavar="CONTAINER|IMAGE...", nargs=-1, required=True)
@args.option("--type", "kind", type=args.Choice(["container", "image"]), help="Look only at this.")
def inspect(app: App, names: tuple[str, ...], kind: str | None) -> int:
    """Show containers and images as JSON."""
    client = app.client()
    found: list[Any] = []
    missing: list[str] = []
    for name in names:
        document = _lookup(client, name, kind)
        if document is None:
            missing.append(name)
        else:
            found.append(document)
    args.echo(render.go_escape(json.dumps(found, indent=4)))
    for name in missing:
        args.echo(f"vxn: no such {kind or 'object'}: {name}", err=True)
    return 1 if missing else 0


def _lookup(client: Client, name: str, kind: str | None) -> Any:
    if kind in (None, "container"):
        try:
            return client.get(path(name))
        except NotFound:
            pass
    if kind in (None, "image"):
        try:
            return client.get("/v1/images/inspect", {"ref": name})
        except NotFound:
            pass
    return None
