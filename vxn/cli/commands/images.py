"""`vxn images` (and `vxn image ls`): list images like `docker images`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.cli import render

if TYPE_CHECKING:
    from vxn.cli.main import App

HEADERS = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")


@args.command("images")
@args.argument("repository", required=False)
@args.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@args.option("--no-trunc", is_flag=True, help="Show full image IDs.")
@args.option(
    "--format", "fmt", type=args.Choice(["table", "json"]), default="table", help="Output format."
)
def images(app: App, repository: str | None, quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List images, newest first; REPOSITORY[:TAG] filters."""
    rows = [r for r in app.client().get("/v1/images") if _matches(r, repository)]
    rows.sort(key=lambda r: (r["Repository"], r["Tag"]))
    rows.sort(key=lambda r: render.parse_time(r["CreatedAt"]) or _EPOCH, reverse=True)
    ids = [r["ID"] if no_trunc else render.short_id(r["ID"]) for r in rows]
    now = datetime.now(UTC)
    if quiet:
        for image_id in dict.fromkeys(ids):
            args.echo(image_id)
    elif fmt == "json":
        for row, image_id in zip(rows, ids, strict=True):
            args.echo(render.go_json(_json_row(row, image_id, now)))
    else:
        cells = [_cells(row, image_id, now) for row, image_id in zip(rows, ids, strict=True)]
        args.echo("\n".join(render.table(HEADERS, cells)))


_EPOCH = datetime.fromtimestamp(0, UTC)


def _matches(row: dict[str, Any], wanted: str | None) -> bool:
    if wanted is None:
        return True
    repo, _, tag = wanted.partition(":")
    return bool(row["Repository"] == repo and (not tag or row["Tag"] == tag))


def _cells(row: dict[str, Any], image_id: str, now: datetime) -> list[str]:
    created = render.since(render.parse_time(row["CreatedAt"]), now)
    return [row["Repository"], row["Tag"], image_id, created, render.human_size(row["Size"])]


def _json_row(row: dict[str, Any], image_id: str, now: datetime) -> dict[str, Any]:
    """The fields and formats of `docker images --format json`."""
    created = render.parse_time(row["CreatedAt"])
    return {
        "Containers": "N/A",
        "CreatedAt": render.docker_time(created),
        "CreatedSince": render.since(created, now),
        "Digest": row.get("Digest") or "<none>",
        "ID": image_id,
        "Repository": row["Repository"],
        "SharedSize": "N/A",
        "Size": render.human_size(row["Size"]),
        "Tag": row["Tag"],
        "UniqueSize": "N/A",
        "VirtualSize": render.human_size(row["Size"], 4),
    }
