"""The bounded output log: entries, rotation to one old file, and the console offset."""

from __future__ import annotations

import base64
from pathlib import Path

from vxn.engine.containerlog import ContainerLog, reply


def test_entries_rotate_and_keep_one_old_file(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path, limit=400)
    for i in range(12):
        log.append(1 + i % 2, b"chunk %02d" % i, consumed=10 * (i + 1))
    log.close()
    assert (tmp_path / "log.1.jsonl").exists()
    kept = [base64.b64decode(e["b"]) for e in log.entries()]
    assert kept == [b"chunk %02d" % i for i in range(12 - len(kept), 12)]
    assert 4 <= len(kept) < 12  # the oldest were dropped with the second rotation
    assert all(p.stat().st_size <= 400 for p in tmp_path.iterdir())
    assert log.consumed() == 120


def test_a_torn_last_line_is_skipped_and_reply_shapes(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path)
    entry = log.append(2, b"err", consumed=5)
    log.close()
    with (tmp_path / "log.jsonl").open("ab") as f:
        f.write(b'{"t": "x", "s": 1, "b"')
    assert [e["b"] for e in log.entries()] == [entry["b"]]
    assert reply(entry) == {"err": "ZXJy"}
    assert reply(entry, timestamps=True) == {"err": "ZXJy", "t": entry["t"]}
    assert ContainerLog(tmp_path / "none").consumed() == 0
