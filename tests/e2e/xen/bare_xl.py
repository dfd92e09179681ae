"""One guest run with bare xl, for the benchmark (bench_xen.py): no vxn but the frame parser.

    python3 -m e2e.xen.bare_xl CONFIG NAME NONCE

`xl create -p`, the console pty from XenStore opened raw, `xl unpause`, the console
read to the EXIT frame, `xl destroy`: what vxn does for `vxn run --rm`, collected
the same way, with nothing else. Prints the exit code (or why it failed, exit 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import termios
import time
import tty

from vxn.core import protocol

LIMIT = 180.0
SPANS = {  # as vxn's timings name them, where the bare run has the same step
    "create": ("start", "unpaused"),
    "guest": ("unpaused", "exited"),
    "teardown": ("exited", "done"),
}


def _xl(*args: str) -> str:
    return subprocess.run(
        ["xl", *args], check=True, capture_output=True, text=True, timeout=LIMIT
    ).stdout


def run(config: str, name: str, nonce: str, marks: dict[str, float]) -> int:
    marks["start"] = time.monotonic()
    _xl("create", "-p", config)
    marks["created"] = time.monotonic()
    try:
        domid = _xl("domid", name).strip()
        key = f"/local/domain/{domid}/console/tty"
        deadline = time.monotonic() + LIMIT
        while True:
            got = subprocess.run(["xenstore-read", key], capture_output=True, text=True)
            if got.returncode == 0 and got.stdout.startswith("/dev/pts/"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: no console pty")
            time.sleep(0.05)
        fd = os.open(got.stdout.strip(), os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd, termios.TCSANOW)
            marks["console"] = time.monotonic()
            _xl("unpause", name)
            marks["unpaused"] = time.monotonic()
            parser = protocol.ConsoleParser(nonce)
            while parser.exit_code is None:
                data = os.read(fd, 65536)
                if not data:
                    raise EOFError(f"{name}: the console closed before the exit frame")
                parser.feed(data)
            marks["exited"] = time.monotonic()
            return parser.exit_code
        finally:
            os.close(fd)
    finally:
        _xl("destroy", name)
        marks["done"] = time.monotonic()


def main() -> None:
    config, name, nonce = sys.argv[1:]
    marks: dict[str, float] = {}
    try:
        print(run(config, name, nonce, marks))
    except (OSError, subprocess.SubprocessError, TimeoutError, EOFError) as e:
        sys.exit(f"bare xl run: {e}")
    spans = {k: marks[b] - marks[a] for k, (a, b) in SPANS.items() if a in marks and b in marks}
    print(json.dumps(spans), file=sys.stderr)  # for bench_xen, next to vxn's own spans


if __name__ == "__main__":
    main()
