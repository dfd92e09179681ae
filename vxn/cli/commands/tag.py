"""`vxn tag` (and `vxn image tag`): give an image another name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("tag")
@args.argument("source")
@args.argument("target")
def tag(app: App, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    app.client().post("/v1/images/tag", {"source": source, "target": target})
