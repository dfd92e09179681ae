"""`vxn run`: boot IMAGE's command in a guest, with its output live and its exit code.

-e K and --env-file are resolved here, from the caller's env and files; vxnd never
reads a file the client names. The flags vxn does not have yet are refused, never
silently ignored.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vxn.errors import InvalidArgument

if TYPE_CHECKING:
    from vxn.cli.main import App

UNSUPPORTED = {
    "publish": "-p/--publish",
    "volume": "-v/--volume",
    "restart": "--restart",
    "detach": "-d/--detach",
    "interactive": "-i/--interactive",
    "tty": "-t/--tty",
}


@click.command(
    "run",
    context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]},
)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--name", help="Name the container.")
@click.option("-e", "--env", multiple=True, help="Set K=V, or pass K from this env.")
@click.option("--env-file", multiple=True, type=click.Path(path_type=Path), help="Read env.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="NAME|UID[:GROUP|GID].")
@click.option("-h", "--hostname", help="The container's hostname.")
@click.option("--entrypoint", help="Replace the image's entrypoint (and drop its Cmd).")
@click.option("--read-only", is_flag=True, help="No writable disk: the root is read-only.")
@click.option("-m", "--memory", help="Guest memory, e.g. 256m (default 256m).")
@click.option("--cpus", type=click.IntRange(min=1), help="Guest vcpus (default 1).")
@click.option("--backend", type=click.Choice(["auto", "qemu", "xen"]), help="Hypervisor.")
@click.option("--network", default="none", help="Only none for now.")
@click.option("-p", "--publish", multiple=True, hidden=True)
@click.option("-v", "--volume", multiple=True, hidden=True)
@click.option("--restart", hidden=True)
@click.option("-d", "--detach", is_flag=True, hidden=True)
@click.option("-i", "--interactive", is_flag=True, hidden=True)
@click.option("-t", "--tty", is_flag=True, hidden=True)
@click.pass_obj
def run(app: App, /, image: str, command: tuple[str, ...], **flags: Any) -> int:
    """Run COMMAND (or the image's default) in a new guest; exit with its code."""
    _refuse_unsupported(flags)
    body = {
        "image": image,
        "command": list(command),
        "env": _env(flags["env"], flags["env_file"]),
        "rm": flags["remove"],
        "read_only": flags["read_only"],
        **{
            k: flags[k]
            for k in ("name", "workdir", "user", "hostname", "entrypoint", "memory", "cpus")
            if flags[k] is not None
        },
    }
    if flags["backend"]:
        body["backend"] = flags["backend"]
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for line in app.client().stream("/v1/containers/run", {}, body):
        if "out" in line or "err" in line:
            stream = out if "out" in line else err
            stream.write(base64.b64decode(line.get("out") or line.get("err") or ""))
            stream.flush()
        elif "message" in line:
            click.echo(f"vxn: run {image}: {line['message']}", err=True)
        elif "exit" in line:
            return int(line["exit"])
    raise InvalidArgument(f"run {image}: vxnd ended the reply without an exit code; see its log")


def _refuse_unsupported(flags: dict[str, Any]) -> None:
    for key, name in UNSUPPORTED.items():
        if flags[key]:
            raise InvalidArgument(f"run: {name} is not supported yet; run without it")
    if flags["network"] != "none":
        raise InvalidArgument(
            f"run: --network {flags['network']} is not supported yet; only none (the default)"
        )


def _env(entries: tuple[str, ...], files: tuple[Path, ...]) -> list[str]:
    from vxn.core.guestspec import parse_env_file, resolve_env

    out: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"env file {path}: cannot read it: {e}") from None
        out += resolve_env(parse_env_file(text, str(path)), os.environ)
    return out + resolve_env(entries, os.environ)
