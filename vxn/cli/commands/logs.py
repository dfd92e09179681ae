"""`vxn logs`: a container's output, kept by vxnd after it exits; -f follows it live.

stdout goes to stdout and stderr to stderr, as the container wrote them.
"""

from __future__ import annotations

import base64
import sys
from typing import TYPE_CHECKING

from vxn import args
from vxn.cli import render
from vxn.cli.commands._containers import path

if TYPE_CHECKING:
    from vxn.cli.main import App


@args.command("logs")
@args.argument("container")
@args.option("-f", "--follow", is_flag=True, help="Follow the output as it comes.")
@args.option("-n", "--tail", default="all", help="Lines from the end (default all).")
@args.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time.")
def logs(app: App, container: str, follow: bool, tail: str, timestamps: bool) -> None:
    """Show a container's output."""
    if tail != "all" and not tail.isdigit():
        raise args.BadParameter(f"{tail!r}: want a number of lines or all", param_hint="--tail")
    query = {"follow": "1" if follow else "0", "timestamps": "1" if timestamps else "0"}
    if tail != "all":
        query["tail"] = tail
    streams = {"out": sys.stdout.buffer, "err": sys.stderr.buffer}
    stamper = render.LineStamper() if timestamps else None
    for line in app.client().get_lines(path(container, "logs"), query):
        for key, stream in streams.items():
            if key in line:
                data = base64.b64decode(line[key])
                if stamper is not None:
                    data = stamper.stamp(key, data, line.get("t"))
                stream.write(data)
                stream.flush()
