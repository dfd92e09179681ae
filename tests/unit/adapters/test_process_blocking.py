"""process.run_blocking: a tool run to completion from a worker thread, and stopped
(SIGTERM, the grace period, SIGKILL, reaped) when it overstays its deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vxn.adapters import process
from vxn.errors import Internal, Unavailable


def test_input_output_and_the_exit_status_come_back() -> None:
    script = "cat; echo oops >&2; exit 3"
    done = process.run_blocking(["sh", "-c", script], limit=10, input=b"in\n")
    assert done == process.Completed(returncode=3, stdout=b"in\n", stderr=b"oops\n")


def test_a_missing_tool_names_the_fix() -> None:
    with pytest.raises(Unavailable) as e:
        process.run_blocking(["vxn-no-such-tool"], limit=10)
    assert str(e.value) == "vxn-no-such-tool: not installed; run scripts/setup.sh"


@pytest.mark.parametrize(
    ("trap", "least"),
    [("", 0.0), ('trap "" TERM;', 0.5)],  # TERM ends the first; the second waits for KILL
)
def test_a_run_past_its_limit_is_stopped_and_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trap: str, least: float
) -> None:
    monkeypatch.setattr(process, "GRACE", 0.5)
    pidfile = tmp_path / "pid"
    script = f'{trap} echo $$ > "{pidfile}"; while :; do sleep 0.05; done'
    start = time.monotonic()
    with pytest.raises(Internal) as e:
        process.run_blocking(["sh", "-c", script], limit=0.5, subject="sh for test")
    took = time.monotonic() - start
    assert str(e.value) == "sh for test: no result in 0 s"
    assert 0.5 + least <= took < 5
    assert not Path(f"/proc/{int(pidfile.read_text())}").exists()  # reaped: not even a zombie
