"""`vxn`, the CLI: the root group, the App object, and the one main() for exit codes.

Only main() maps errors to exit codes: a VxnError (from here or rebuilt from vxnd's
reply) and a usage error both exit 125, like Docker, with one line on stderr.
The CLI path imports no aiohttp and no engine, so it starts fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from vxn import API_VERSION, __version__, args
from vxn.errors import VxnError

if TYPE_CHECKING:
    from vxn.cli.client import Client
    from vxn.config import Settings

EXIT_VXN = 125  # vxn's own failures (ARCHITECTURE.md, decision 9)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class App:
    """What every command shares: the settings, and one connection made on first use."""

    def __init__(self) -> None:
        self.dirs: tuple[Path | None, Path | None] = (None, None)  # the root options
        self._settings: Settings | None = None
        self._client: Client | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from vxn.config import load_settings

            self._settings = load_settings(state_dir=self.dirs[0], run_dir=self.dirs[1])
        return self._settings

    def client(self) -> Client:
        if self._client is None:
            from vxn.cli.autostart import connect

            self._client = connect(self.settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _load(name: str) -> args.Command:
    """A command's module is imported only to run it: `vxn --version` imports none."""
    command: args.Command = getattr(importlib.import_module(f"vxn.cli.commands.{name}"), name)
    return command


# name -> vxn.cli.commands.<name>.<name>
COMMANDS = (
    "attach",
    "events",
    "exec",
    "image",
    "images",
    "info",
    "inspect",
    "kill",
    "load",
    "logs",
    "ps",
    "pull",
    "restart",
    "rm",
    "rmi",
    "run",
    "start",
    "stop",
    "tag",
    "wait",
)


def _configure(app: App, *, state_dir: Path | None, run_dir: Path | None) -> App:
    """The root options: where the state and vxnd's socket are."""
    app.dirs = (state_dir, run_dir)
    return app


cli = args.Group(
    "vxn",
    _configure,
    help="Run OCI container images as Xen guests.",
    options=[
        args.Option(("--state-dir",), "state_dir", type=args.Path(), help="Default /var/lib/vxn."),
        args.Option(("--run-dir",), "run_dir", type=args.Path(), help="Where vxnd's socket is."),
    ],
    load=_load,
    names=COMMANDS,
    version=f"vxn version {__version__}, API {API_VERSION}",
)


def invoke(argv: Sequence[str]) -> object:
    """Run one command line: what the command returned (an exit code, or None)."""
    app = App()
    try:
        return cli.main(app, argv)
    except KeyboardInterrupt:
        raise args.Abort() from None
    finally:
        app.close()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = invoke(sys.argv[1:] if argv is None else argv)
    except args.UsageError as e:
        sys.stderr.write(e.show())
        sys.exit(EXIT_VXN)
    except args.Abort:
        args.echo("Aborted!", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except VxnError as e:
        args.echo(f"vxn: {e}", err=True)
        sys.exit(EXIT_VXN)
    except BrokenPipeError:
        # The reader left (`vxn images | head -1`): stop quietly, and keep the
        # interpreter's final flush from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(code if isinstance(code, int) else 0)
