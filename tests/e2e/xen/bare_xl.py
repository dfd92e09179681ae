"""One guest run with bare xl, for the benchmark (bench_xen.py): no vxn but the frame parser.

    python3 -m e2e.xen.bare_xl CONFIG NAME NONCE

`xl create -p`, the console pty from XenStore opened raw, `xl unpause`, the console
read to the EXIT frame, `xl destroy`: what vxn does for `vxn run --rm`, collected
the same way, with nothing else. Prints the exit code (or why it failed, exit 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import termios
import time
import tty

from vxn.core import protocol

LIMIT = 180.0


def _xl(*args: str) -> str:
    return subprocess.run(
        ["xl", *args], check=True, capture_output=True, text=True, timeout=LIMIT
    ).stdout


def run(config: str, name: str, nonce: str) -> int:
    _xl("create", "-p", config)
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
            _xl("unpause", name)
            parser = protocol.ConsoleParser(nonce)
            while parser.exit_code is None:
                data = os.read(fd, 65536)
                if not data:
                    raise EOFError(f"{name}: the console closed before the exit frame")
                parser.feed(data)
            return parser.exit_code
        finally:
            os.close(fd)
    finally:
        _xl("destroy", name)


def main() -> None:
    config, name, nonce = sys.argv[1:]
    try:
        print(run(config, name, nonce))
    except (OSError, subprocess.SubprocessError, TimeoutError, EOFError) as e:
        sys.exit(f"bare xl run: {e}")


if __name__ == "__main__":
    main()
