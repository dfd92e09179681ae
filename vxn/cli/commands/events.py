"""`vxn events`: vxnd's container events as they happen (create, start, die, destroy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vxn import args
from vxn.cli import render

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("events")
@args.option("--since", help="Replay events from this time (RFC 3339) on.")
@args.option(
    "--format", "fmt", type=args.Choice(["text", "json"]), default="text", help="Output format."
)
def events(app: App, since: str | None, fmt: str) -> None:
    """Print events until interrupted: one line each, text like docker's or JSON."""
    query = {"since": since} if since else {}
    for event in app.client().get_lines("/v1/events", query):
        args.echo(render.go_json(event) if fmt == "json" else render.event_line(event))
