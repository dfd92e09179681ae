"""`vxn tag` (and `vxn image tag`): give an image another name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from vxn.cli.main import App


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def tag(app: App, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    app.client().post("/v1/images/tag", {"source": source, "target": target})
