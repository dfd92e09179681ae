"""`vxn exec`: run a command inside a running container's guest, as a session of its own.

It exits with the command's code. `-d` leaves it running: the request body ends at
once and nothing waits for the command, so the container's state is checked first
(vxnd's own refusal would come with the reply nobody reads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vxn import args
from vxn.cli import terminal
from vxn.cli.commands._containers import path
from vxn.cli.commands.run import _env
from vxn.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command(
    "exec",
    interspersed=False,
)
@args.argument("container")
@args.argument("command", nargs=-1, required=True, type=args.UNPROCESSED)
@args.option("-d", "--detach", is_flag=True, help="Leave it running in the background.")
@args.option("-i", "--interactive", is_flag=True, help="Send stdin.")
@args.option("-t", "--tty", is_flag=True, help="Give the command a terminal.")
@args.option("-e", "--env", multiple=True, help="Set K=V, or pass K from this env.")
@args.option("--env-file", multiple=True, type=args.Path(), help="Read env.")
@args.option("-w", "--workdir", help="Working directory inside the container.")
@args.option("-u", "--user", help="NAME|UID[:GROUP|GID].")
@args.option(
    "--detach-keys", default=terminal.DEFAULT_DETACH_KEYS, help="Keys that detach (ctrl-p,ctrl-q)."
)
def exec(app: App, /, container: str, command: tuple[str, ...], **flags: Any) -> int:
    """Run COMMAND in a running container; exit with its code."""
    keys = terminal.parse_detach_keys(flags["detach_keys"])
    stdin = flags["interactive"] and not flags["detach"]
    if flags["tty"] and stdin and not terminal.stdin_is_terminal():
        raise InvalidArgument(f"exec {container}: {terminal.NOT_A_TTY}")
    first: dict[str, Any] = {
        "command": list(command),
        "env": _env(flags["env"], flags["env_file"]),
        "tty": flags["tty"],
        "stdin": stdin,
        **{k: flags[k] for k in ("workdir", "user") if flags[k] is not None},
    }
    if flags["tty"] and (size := terminal.window_size()):
        first["rows"], first["cols"] = size
    client = app.client()
    if flags["detach"] and (state := client.get(path(container))["state"]) != "running":
        raise FailedPrecondition(f"exec {container}: it is {state}; start it first")
    duplex = client.duplex(path(container, "exec"), first)
    if flags["detach"]:
        duplex.end()
        duplex.close()
        return 0
    wiring = terminal.Wiring(
        stdin=stdin, tty=flags["tty"], detach_keys=keys, label=f"exec {container}"
    )
    code = terminal.relay(duplex, wiring)
    return 0 if code is None else code
