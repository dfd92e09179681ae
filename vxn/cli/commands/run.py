"""`vxn run`: create a container, attach to it, start it; exit with its code.

Attached, the attach stream is opened before the start so no output is missed
(docs/CONTAINERS.md §3); `-d` only creates and starts, and prints the id. -e K and
--env-file are resolved here, from the caller's env and files: vxnd never reads a
file the client names. Flags vxn does not have yet are refused, never ignored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.cli import terminal
from vxn.cli.commands._containers import path
from vxn.errors import InvalidArgument, NotFound, Unavailable

if TYPE_CHECKING:
    from vxn.cli.client import Client
    from vxn.cli.main import App

UNSUPPORTED = {"publish": "-p/--publish", "volume": "-v/--volume", "restart": "--restart"}


@args.command(
    "run",
    interspersed=False,
)
@args.argument("image")
@args.argument("command", nargs=-1, type=args.UNPROCESSED)
@args.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@args.option("-i", "--interactive", is_flag=True, help="Keep stdin open and send it.")
@args.option("-t", "--tty", is_flag=True, help="Give the container a terminal.")
@args.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@args.option("--name", help="Name the container.")
@args.option("-e", "--env", multiple=True, help="Set K=V, or pass K from this env.")
@args.option("--env-file", multiple=True, type=args.Path(), help="Read env.")
@args.option("-w", "--workdir", help="Working directory inside the container.")
@args.option("-u", "--user", help="NAME|UID[:GROUP|GID].")
@args.option("-h", "--hostname", help="The container's hostname.")
@args.option("--entrypoint", help="Replace the image's entrypoint (and drop its Cmd).")
@args.option("--read-only", is_flag=True, help="No writable disk: the root is read-only.")
@args.option("-m", "--memory", help="Guest memory, e.g. 256m (default 256m).")
@args.option("--cpus", type=args.IntRange(min=1), help="Guest vcpus (default 1).")
@args.option("--backend", type=args.Choice(["auto", "qemu", "xen"]), help="Hypervisor.")
@args.option("--network", default="none", help="Only none for now.")
@args.option(
    "--pull",
    type=args.Choice(["always", "missing", "never"]),
    default="missing",
    help="Pull the image first: always, when missing (default), never.",
)
@args.option(
    "--sig-proxy",
    is_flag=True,
    default=True,
    help="Forward the signals vxn gets to the container (default true; not with -t).",
)
@args.option(
    "--detach-keys", default=terminal.DEFAULT_DETACH_KEYS, help="Keys that detach (ctrl-p,ctrl-q)."
)
@args.option("-p", "--publish", multiple=True, hidden=True)
@args.option("-v", "--volume", multiple=True, hidden=True)
@args.option("--restart", hidden=True)
def run(app: App, /, image: str, command: tuple[str, ...], **flags: Any) -> int:
    """Run COMMAND (or the image's default) in a new guest; exit with its code."""
    _refuse_unsupported(flags)
    keys = terminal.parse_detach_keys(flags["detach_keys"])
    attach_stdin = flags["interactive"] and not flags["detach"]
    if flags["tty"] and attach_stdin and not terminal.stdin_is_terminal():
        raise InvalidArgument(f"run: {terminal.NOT_A_TTY}")
    client = app.client()
    body = _create_body(image, command, flags)
    if flags["pull"] == "always":
        _pull(client, image)
    try:
        cid = client.post("/v1/containers/create", body)["id"]
    except NotFound:  # the one thing create can miss is the image; docker pulls then
        if flags["pull"] != "missing":
            raise
        args.echo(f"Unable to find image '{image}' locally", err=True)
        _pull(client, image)
        cid = client.post("/v1/containers/create", body)["id"]
    if flags["detach"]:
        client.post(path(cid, "start"))
        args.echo(cid)
        return 0
    wiring = terminal.Wiring(
        stdin=attach_stdin,
        tty=flags["tty"],
        sig_proxy=flags["sig_proxy"],
        detach_keys=keys,
        label=f"run {image}",
    )
    duplex = client.duplex(path(cid, "attach"), {"stdin": attach_stdin, "logs": False})
    code = terminal.relay(duplex, wiring, start=lambda: client.post(path(cid, "start")))
    return 0 if code is None else code


def _create_body(image: str, command: tuple[str, ...], flags: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "env": _env(flags["env"], flags["env_file"]),
        "rm": flags["remove"],
        "read_only": flags["read_only"],
        "tty": flags["tty"],
        "stdin": flags["interactive"],
    }
    for key in ("name", "workdir", "user", "hostname", "entrypoint", "memory", "cpus", "backend"):
        if flags[key] is not None:
            body[key] = flags[key]
    if flags["tty"] and (size := terminal.window_size()):
        body["rows"], body["cols"] = size
    return body


def _pull(client: Client, image: str) -> None:
    """What `vxn pull` does, with its report on stderr: stdout is the container's."""
    from vxn.adapters.credentials import find_credentials
    from vxn.cli.commands.pull import _query
    from vxn.cli.progress import Display
    from vxn.core.reference import Reference

    ref = Reference.parse(image)
    credentials = find_credentials(ref.domain)
    body = {"auth": credentials.to_json()} if credentials is not None else {}
    query = _query(image, None, None, None, sys.stderr.isatty())
    display = Display(sys.stderr)
    result: dict[str, Any] = {}
    for line in client.stream("/v1/images/pull", query, body):
        if "progress" in line:
            display.update(line["progress"])
        result = line.get("pulled", result)
    if not result:
        raise Unavailable(
            f"vxnd at {client.socket_path}: connection lost before the pull of {image} ended; "
            f"see {client.run.log}"
        )
    status = "Image is up to date" if result.get("up_to_date") else "Downloaded newer image"
    args.echo(f"Digest: {result.get('digest')}", err=True)
    args.echo(
        f"Status: {status} for {Reference.parse(str(result['reference'])).familiar}", err=True
    )


def _refuse_unsupported(flags: dict[str, Any]) -> None:
    for key, name in UNSUPPORTED.items():
        if flags[key]:
            raise InvalidArgument(f"run: {name} is not supported yet; run without it")
    if flags["network"] != "none":
        raise InvalidArgument(
            f"run: --network {flags['network']} is not supported yet; only none (the default)"
        )


def _env(entries: tuple[str, ...], files: tuple[Path, ...]) -> list[str]:
    from vxn.core.envvars import parse_env_file, resolve_env

    out: list[str] = []
    for env_file in files:
        try:
            text = env_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"env file {env_file}: cannot read it: {e}") from None
        out += resolve_env(parse_env_file(text, str(env_file)), os.environ)
    return out + resolve_env(entries, os.environ)
