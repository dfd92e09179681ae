"""`vxn image rootfs` and `vxn image unpack` through real vxn and vxnd processes."""

from __future__ import annotations

import json
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from data import imagebuild as ib
from data.layerstacks import Stack, d, f, write

from vxn.cli.client import Client
from vxn.testing.daemon import VxnDirs, vxn_argv

pytestmark = pytest.mark.integration


@pytest.fixture
def dirs() -> Iterator[VxnDirs]:
    with VxnDirs() as d_:
        yield d_


def vxn(dirs: VxnDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        vxn_argv(*args), env=dirs.env(), capture_output=True, text=True, timeout=120
    )


def ok(dirs: VxnDirs, *args: str) -> str:
    result = vxn(dirs, *args)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def test_rootfs_is_built_once_reused_warm_and_removed_with_the_image(
    dirs: VxnDirs, tmp_path: Path
) -> None:
    ib.simple_layout(tmp_path / "layout", name="v1")
    ok(dirs, "load", "--name", "demo", str(tmp_path / "layout"))
    path = Path(ok(dirs, "image", "rootfs", "demo:v1").strip())
    assert path.is_file()
    assert path.parent == dirs.state / "rootfs"
    assert ok(dirs, "image", "rootfs", "demo:v1").strip() == str(path)
    with Client(dirs.run) as client:
        warm = [client.post("/v1/images/rootfs", {"ref": "demo:v1"}) for _ in range(5)]
    assert {w["built"] for w in warm} == {False}
    assert statistics.median(w["seconds"] for w in warm) <= 0.05  # measured inside vxnd
    rootfs = json.loads(ok(dirs, "image", "inspect", "demo:v1"))[0]["Rootfs"]
    assert (rootfs["Built"], rootfs["Path"]) == (True, str(path))
    ok(dirs, "rmi", "demo:v1")
    assert not path.exists()


def test_unpack_writes_a_new_dir_and_says_whether_the_image_is_sound(
    dirs: VxnDirs, tmp_path: Path
) -> None:
    ib.simple_layout(tmp_path / "layout", name="v1")
    ok(dirs, "load", "--name", "demo", str(tmp_path / "layout"))
    out = tmp_path / "tree"
    assert ok(dirs, "image", "unpack", "demo:v1", str(out)) == f"{out}\n"
    assert (out / "etc" / "motd").read_bytes() == b"welcome to vxn test image\n"
    again = vxn(dirs, "image", "unpack", "demo:v1", str(out))
    assert (again.returncode, again.stderr) == (
        125,
        f"vxn: unpack: {out} exists; give a new directory\n",
    )

    bad = ib.Layout(tmp_path / "bad")
    desc, _ = write(bad, Stack("bad", [[d("x"), f("x")]]))
    bad.write_index([(desc, ib.ref_name("v1"))])
    ok(dirs, "load", "--name", "bad", str(tmp_path / "bad"))
    result = vxn(dirs, "image", "unpack", "bad:v1", str(tmp_path / "bad-tree"))
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("vxn: layer sha256:")
    assert "entry 'x' appears twice in the layer" in result.stderr
    assert not (tmp_path / "bad-tree").exists()
