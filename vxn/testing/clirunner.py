"""Run a CLI command line in this process, for tests: stdin from bytes, stdout and
stderr captured, the environment patched for the call, and what came out kept.

`run` is the CLI's own entry (`vxn.cli.main.invoke`), passed in: nothing here
imports the CLI. A usage error is printed as main() prints it and gives exit code 2;
any other exception is kept in `exception` (exit code 1) or, with
`catch_exceptions=False`, raised.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from vxn.args import UsageError


@dataclass
class Result:
    exit_code: int
    stdout_bytes: bytes
    stderr_bytes: bytes
    return_value: object = None
    exception: BaseException | None = None

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(errors="replace")


def invoke(
    run: Callable[[Sequence[str]], object],
    argv: Sequence[str],
    *,
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    catch_exceptions: bool = True,
) -> Result:
    stdin = input.encode() if isinstance(input, str) else (input or b"")
    out, err = io.BytesIO(), io.BytesIO()
    with _patched_env(env or {}), _streams(stdin, out, err):
        try:
            returned = run(list(argv))
        except UsageError as e:
            sys.stderr.write(e.show())
            return _done(2, out, err, exception=e)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            return _done(code, out, err)
        except Exception as e:
            if not catch_exceptions:
                raise
            return _done(1, out, err, exception=e)
        return _done(returned if isinstance(returned, int) else 0, out, err, returned)


def _done(
    code: int,
    out: io.BytesIO,
    err: io.BytesIO,
    returned: object = None,
    exception: BaseException | None = None,
) -> Result:
    sys.stdout.flush()
    return Result(code, out.getvalue(), err.getvalue(), returned, exception)


class _Text(io.TextIOWrapper):
    """A text stream over bytes that says it is no terminal, as a pipe would."""

    def isatty(self) -> bool:
        return False


@contextmanager
def _streams(stdin: bytes, out: io.BytesIO, err: io.BytesIO) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = _Text(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout = _Text(out, encoding="utf-8", write_through=True)
    sys.stderr = _Text(err, encoding="utf-8", write_through=True)
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextmanager
def _patched_env(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
