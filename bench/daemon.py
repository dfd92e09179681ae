"""vxnd's own overhead with many containers (issue 9): `ps` latency and RSS.

vxnd runs on the fake hypervisor (VXN_TESTING_FAKE_BACKEND=1): every container is a
real record, log and supervisor, with no QEMU behind it. `ps` is GET
/v1/containers?all=1 through the CLI's client, as `vxn ps -a` makes it (the whole CLI
process, start to exit, is timed too). Goals: ps <= 50 ms with 100 containers; RSS <
100 MB, growing linearly (printed at 0/50/100).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from common import VXN, Row, load_demo, median_of, timed, vxn_env
from data.imagebuild import DEMO_NAME

TITLE = "vxnd with many containers (fake backend)"
COUNT = 100


def rows(runs: int, work: Path) -> list[Row]:
    from vxn.adapters.statedir import RunDir
    from vxn.cli.client import Client

    with vxn_env(work, VXN_TESTING_FAKE_BACKEND="1") as env:
        load_demo(work, env)
        run = RunDir(Path(env["VXN_RUN_DIR"]))
        with Client(run) as client:
            empty = _ps(client, runs)
            rss = {0: _rss(run)}
            for i in range(COUNT):
                body = {"image": DEMO_NAME, "command": ["sleep", "1d"], "read_only": True}
                cid = client.post("/v1/containers/create", body)["id"]
                client.post(f"/v1/containers/{cid}/start")
                if i + 1 in (COUNT // 2, COUNT):
                    rss[i + 1] = _rss(run)
            full = _ps(client, runs)
            cli = median_of(runs, lambda: timed([VXN, "ps", "-a"], env))
            assert len(client.get("/v1/containers", {"all": "1"})) == COUNT
            for row in client.get("/v1/containers", {"all": "1"}):
                client.post(f"/v1/containers/{row['id']}/stop", query={"t": "1"})
    per = (rss[COUNT] - rss[0]) / COUNT
    print(f"\n{TITLE}: vxnd RSS " + ", ".join(f"{n}: {mib:.1f} MiB" for n, mib in rss.items()))
    print(f"  {per * 1024:.0f} KiB per supervised container; ps with {COUNT}: {full * 1000:.1f} ms")
    return [
        ("vxn ps -a, 0 containers (API)", empty, True),
        (f"vxn ps -a, {COUNT} running (API)", full, False),
        (f"vxn ps -a, {COUNT} running (the CLI process)", cli, False),
    ]


def _ps(client: object, runs: int) -> float:
    times = []
    for _ in range(max(runs, 5)):
        start = time.perf_counter()
        client.get("/v1/containers", {"all": "1"})  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss(run: object) -> float:
    """vxnd's resident set, MiB."""
    pid = int((run.daemon_lock).read_text())  # type: ignore[attr-defined]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"vxnd {pid}: no VmRSS")


if __name__ == "__main__":
    sys.exit("run it through bench/run.py daemon")
