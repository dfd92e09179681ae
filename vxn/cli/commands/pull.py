"""`vxn pull`: have vxnd pull an image from a registry; print what it resolved to.

Credentials are read here, as the user who typed the command (their auth file,
their credential helpers), and only those for this one registry go to vxnd, in the
request body over the socket: vxnd runs as root and never reads users' files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.errors import Unavailable

if TYPE_CHECKING:
    from vxn.cli.main import App
    from vxn.cli.progress import Display


@args.command("pull")
@args.argument("image")
@args.option("--platform", help="Pull this platform of a multi-arch image: os/arch[/variant].")
@args.option(
    "--authfile",
    type=args.Path(dir_okay=False),
    help="Auth file.",
)
@args.option(
    "--tls-verify",
    is_flag=True,
    default=None,
    help="false: allow plain HTTP and unverified HTTPS (default: as vxn.toml says).",
)
@args.option(
    "--cert-dir",
    type=args.Path(exists=True, file_okay=False),
    help="CAs (*.crt) and client certificates (*.cert, *.key) for the registry.",
)
@args.option("-q", "--quiet", is_flag=True, help="Print only the image's full name.")
def pull(
    app: App,
    image: str,
    platform: str | None,
    authfile: Path | None,
    tls_verify: bool | None,
    cert_dir: Path | None,
    quiet: bool,
) -> None:
    """Pull an image from a registry."""
    from vxn.adapters.credentials import find_credentials
    from vxn.core.reference import Reference

    ref = Reference.parse(image)  # bad names fail here, before vxnd is asked
    tty = sys.stdout.isatty() and not quiet
    query = _query(image, platform, tls_verify, cert_dir, tty)
    credentials = find_credentials(ref.domain, authfile=authfile)
    body = {"auth": credentials.to_json()} if credentials is not None else {}
    if not quiet and "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        args.echo("Using default tag: latest")
    display = _display() if tty else None
    result: dict[str, Any] = {}
    for line in app.client().stream("/v1/images/pull", query, body):
        if "progress" in line and display is not None:  # sent only when asked: on a terminal
            display.update(line["progress"])
        result = line.get("pulled", result)
    if not result:  # the reply ended early: vxnd died mid-pull
        client = app.client()
        raise Unavailable(
            f"vxnd at {client.socket_path}: connection lost before the pull ended; "
            f"see {client.run.log}"
        )
    name = str(result["reference"])
    if not quiet:
        status = "Image is up to date" if result.get("up_to_date") else "Downloaded newer image"
        args.echo(f"Digest: {result.get('digest')}")
        args.echo(f"Status: {status} for {Reference.parse(name).familiar}")
    args.echo(name)


def _display() -> Display:
    from vxn.cli.progress import Display  # only a terminal shows progress

    return Display(sys.stdout)


def _query(
    image: str, platform: str | None, tls_verify: bool | None, cert_dir: Path | None, tty: bool
) -> dict[str, str]:
    query = {"ref": image, "progress": "1" if tty else "0"}
    if platform:
        from vxn.core.platform import Platform

        query["platform"] = str(Platform.parse(platform))
    if tls_verify is not None:
        query["tls_verify"] = "true" if tls_verify else "false"
    if cert_dir is not None:
        query["cert_dir"] = str(cert_dir.absolute())
    return query
