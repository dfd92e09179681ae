"""`vxn info`: versions, paths and backends of the client and vxnd, like `docker info`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vxn import API_VERSION, __version__, args
from vxn.cli import render

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("info")
@args.option(
    "--format", "fmt", type=args.Choice(["text", "json"]), default="text", help="Output format."
)
def info(app: App, fmt: str) -> None:
    """Show how vxn and vxnd are set up."""
    server = app.client().get("/v1/info")
    client = {"version": __version__, "api": API_VERSION}
    if fmt == "json":
        args.echo(json.dumps({"client": client, "server": server}, indent=4))
        return
    args.echo("\n".join(_text(client, server)))


def _text(client: dict[str, Any], server: dict[str, Any]) -> list[str]:
    paths, backends = server["paths"], server["backends"]
    return [
        "Client:",
        f" Version: {client['version']}",
        f" API: {client['api']}",
        "",
        "Server:",
        f" Version: {server['version']}",
        f" API: {server['api']}",
        f" PID: {server['pid']}",
        f" Platform: {server['platform']}",
        " Backends:",
        *(f"  {name}: {_yes(ok)}" for name, ok in backends.items()),
        f" Store Size: {render.human_size(server['store_size'])}",
        f" State Dir: {paths['state_dir']}",
        f" Run Dir: {paths['run_dir']}",
        f" Socket: {paths['socket']}",
        f" Config File: {paths['config_file'] or 'none'}",
    ]


def _yes(ok: bool) -> str:
    return "available" if ok else "not found"
