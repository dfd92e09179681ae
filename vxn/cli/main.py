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

import click

from vxn import API_VERSION, __version__
from vxn.errors import VxnError

if TYPE_CHECKING:
    from vxn.cli.client import Client
    from vxn.config import Settings

EXIT_VXN = 125  # vxn's own failures (ARCHITECTURE.md, decision 9)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class App:
    """What every command shares: the settings, and one connection made on first use."""

    def __init__(self, *, state_dir: Path | None = None, run_dir: Path | None = None) -> None:
        self._dirs = (state_dir, run_dir)
        self._settings: Settings | None = None
        self._client: Client | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from vxn.config import load_settings

            self._settings = load_settings(state_dir=self._dirs[0], run_dir=self._dirs[1])
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


class _LazyGroup(click.Group):
    """Imports a command's module only to run it, so `vxn --version` imports no command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = getattr(
            importlib.import_module(f"vxn.cli.commands.{cmd_name}"), cmd_name
        )
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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(path_type=Path), help="Default /var/lib/vxn.")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Where vxnd's socket is.")
@click.version_option(
    __version__, "-v", "--version", message=f"vxn version %(version)s, API {API_VERSION}"
)
@click.pass_context
def cli(ctx: click.Context, state_dir: Path | None, run_dir: Path | None) -> None:
    """Run OCI container images as Xen guests."""
    app = App(state_dir=state_dir, run_dir=run_dir)
    ctx.obj = app
    ctx.call_on_close(app.close)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = cli.main(args=argv, prog_name="vxn", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_VXN)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except VxnError as e:
        click.echo(f"vxn: {e}", err=True)
        sys.exit(EXIT_VXN)
    except BrokenPipeError:
        # The reader left (`vxn images | head -1`): stop quietly, and keep the
        # interpreter's final flush from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(code if isinstance(code, int) else 0)
