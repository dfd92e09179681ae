from __future__ import annotations

import os
from pathlib import Path

import pytest

from vxn.adapters.statedir import RunDir, StateDir, atomic_write


def test_layout_paths(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    state.ensure()
    assert state.content == tmp_path / "s" / "content"
    assert state.content.is_dir()
    assert state.containers.is_dir()
    assert state.rootfs == tmp_path / "s" / "rootfs"
    assert (state.rootfs.stat().st_mode & 0o777) == 0o700
    assert (state.root.stat().st_mode & 0o777) == 0o700
    run = RunDir(tmp_path / "r")
    assert run.socket.name == "vxn.sock"
    assert run.daemon_lock.parent == run.root


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["f.json"]


def test_atomic_write_failure_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.json"]
