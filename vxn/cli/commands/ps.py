"""`vxn ps`: list containers like `docker ps` (running ones, or all with -a)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.cli import render
from vxn.errors import InvalidArgument

if TYPE_CHECKING:
    from vxn.cli.main import App

HEADERS = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


@args.command("ps")
@args.option("-a", "--all", "show_all", is_flag=True, help="Show all, not only running ones.")
@args.option("-q", "--quiet", is_flag=True, help="Only show container IDs.")
@args.option("--no-trunc", is_flag=True, help="Show full IDs and commands.")
@args.option("-f", "--filter", "filters", multiple=True, help="status=STATE (repeatable).")
@args.option(
    "--format", "fmt", type=args.Choice(["table", "json"]), default="table", help="Output format."
)
def ps(
    app: App, show_all: bool, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str
) -> None:
    """List containers, newest first."""
    query: dict[str, str | list[str]] = {"status": sorted(_statuses(filters))}
    if show_all:
        query["all"] = "1"
    rows = app.client().get("/v1/containers", query)  # newest first, filtered by vxnd
    now = datetime.now(UTC)
    if quiet:
        args.echo("".join(f"{_id(r, no_trunc)}\n" for r in rows), nl=False)
    elif fmt == "json":
        args.echo(
            "".join(f"{render.go_json(json_row(r, no_trunc, now))}\n" for r in rows), nl=False
        )
    else:
        args.echo("\n".join(render.table(HEADERS, [cells(r, no_trunc, now) for r in rows])))


def _statuses(filters: tuple[str, ...]) -> set[str]:
    wanted = set()
    for text in filters:
        key, eq, value = text.partition("=")
        if key != "status" or not eq:
            raise InvalidArgument(f"ps: filter {text!r} is not supported; use status=STATE")
        if value not in STATES:
            raise InvalidArgument(
                f"ps: invalid filter {text!r}; a status is one of {', '.join(STATES)}"
            )
        wanted.add(value)
    return wanted


def _id(row: dict[str, Any], no_trunc: bool) -> str:
    return str(row["id"] if no_trunc else row["id"][:12])


def cells(row: dict[str, Any], no_trunc: bool, now: datetime) -> list[str]:
    return [
        _id(row, no_trunc),
        row["image"],
        render.quote_command(row["command"], trunc=not no_trunc),
        render.since(render.parse_time(row["created"]), now),
        render.container_status(row, now),
        row["name"],
    ]


def json_row(row: dict[str, Any], no_trunc: bool, now: datetime) -> dict[str, Any]:
    """The fields of `docker ps --format json` that vxn has."""
    created = render.parse_time(row["created"])
    return {
        "Command": render.quote_command(row["command"], trunc=not no_trunc),
        "CreatedAt": render.docker_time(created),
        "ID": _id(row, no_trunc),
        "Image": row["image"],
        "Names": row["name"],
        "RunningFor": render.since(created, now),
        "State": row["state"],
        "Status": render.container_status(row, now),
    }
