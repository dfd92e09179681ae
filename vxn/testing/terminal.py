"""A pseudo-terminal for tests that drive a real `vxn` process as a user at a terminal
would: the process gets the slave as stdin, stdout and stderr, the test types on the
master and waits for what the process writes back."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time

from vxn.testing.daemon import vxn_argv


class Pty:
    def __init__(self, rows: int, cols: int, *, timeout: float) -> None:
        self.master, self.slave = os.openpty()
        self.timeout = timeout
        self.resize(rows, cols)
        self.cooked = termios.tcgetattr(self.slave)  # what a restored terminal looks like
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def spawn(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        fd = self.slave
        return subprocess.Popen(vxn_argv(*args), env=env, stdin=fd, stdout=fd, stderr=fd)

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def expect(self, text: bytes) -> None:
        """Wait for `text` in what was written since the last match; keep what follows it."""
        deadline = time.monotonic() + self.timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"never saw {text!r}; saw {self.seen[-300:]!r}"
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # EIO: no process has the slave open
                    time.sleep(0.05)
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)
