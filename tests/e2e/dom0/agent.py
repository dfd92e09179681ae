"""Runs inside the Dom0 (stdlib only): takes pytest jobs from the host, runs them.

The Dom0 init starts it as `vxn.hook`. The host drops `<id>.json` files in
/srv/run/jobs; for each one this runs pytest on the checkout at /srv/src and
leaves `<id>.junit.xml`, `<id>.log` and `<id>.done` next to it. The console
gets the pytest output and a `VXN-JOB-DONE id=<id> rc=<rc>` line. If the share
cannot be written, the JUnit XML goes over the console as base64 instead.
A job with "poweroff": true is the last one (the default, non --keep run).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SRC = Path("/srv/src")
JOBS = Path("/srv/run/jobs")
DEPS = Path("/srv/deps")
POLL = 0.5


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def console_lines(jid: str, xml: bytes) -> list[str]:
    """The JUnit XML as short base64 lines (e2e.junit.from_console reads them)."""
    b64 = base64.b64encode(xml).decode()
    return [f"VXN-JUNIT-B64 id={jid} {b64[i : i + 76]}" for i in range(0, len(b64), 76)]


def run_job(path: Path, job: dict[str, object]) -> int:
    jid = str(job["id"])
    say(f"VXN-JOB-START id={jid}")
    junit = Path(f"/tmp/{jid}.junit.xml")  # local first: 9p writes may fail
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{DEPS}:{SRC}",
        PYTHONDONTWRITEBYTECODE="1",  # the checkout is read-only
        VXN_E2E="dom0",
        VXN_E2E_JOB=str(path),
        HOME="/root",
    )
    args = [str(a) for a in job["pytest_args"]]  # type: ignore[attr-defined]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    proc = subprocess.Popen(
        cmd, cwd=SRC, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timer = threading.Timer(float(job["timeout"]), proc.kill)  # type: ignore[arg-type]
    timer.start()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
    rc = proc.wait()
    timer.cancel()
    xml = junit.read_bytes() if junit.exists() else b""
    try:
        path.with_suffix(".log").write_text("".join(lines))
        path.with_suffix(".junit.xml").write_bytes(xml)
        path.with_suffix(".done").write_text(f"{rc}\n")
    except OSError as e:
        say(f"VXN-JOB-SHARE-WRITE-FAILED id={jid} {e}")
        for line in console_lines(jid, xml):
            say(line)
    say(f"VXN-JOB-DONE id={jid} rc={rc}")
    return rc


def main() -> int:
    say(f"VXN-AGENT: up, polling {JOBS}")
    seen: set[Path] = set()  # also covers jobs whose .done could not be written
    while True:
        for path in sorted(JOBS.glob("*.json")):
            if path in seen or path.with_suffix(".done").exists():
                continue
            seen.add(path)
            job = json.loads(path.read_text())
            t0 = time.monotonic()
            rc = run_job(path, job)
            say(f"VXN-AGENT: job {job['id']} rc={rc} in {time.monotonic() - t0:.1f} s")
            if job.get("poweroff"):
                return rc
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(main())
