"""`vxn image unpack` and `vxn image rootfs`, against a fake vxnd."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.adapters.statedir import RunDir
from vxn.cli.client import Client
from vxn.cli.main import invoke as vxn_cli
from vxn.errors import InvalidArgument, NotFound
from vxn.testing.daemon import Invoke, cli_against
from vxn.testing.fake_images import FakeImage, FakeImageService

M = "sha256:" + "d4" * 32


@pytest.fixture
def fake() -> FakeImageService:
    image = FakeImage(id="sha256:" + "a1" * 32, manifest=M, size=10)
    image.names = ["docker.io/library/alpine:3.19"]
    return FakeImageService([image])


@pytest.fixture
def vxn(tmp_path: Path, fake: FakeImageService) -> Iterator[Invoke]:
    with cli_against(vxn_cli, tmp_path, fake) as invoke:
        yield invoke


def test_rootfs_prints_the_disk_path(vxn: Invoke) -> None:
    assert (
        vxn("image", "rootfs", "alpine:3.19").stdout == f"/fake/rootfs/{M.replace(':', '-')}.ext4\n"
    )


def test_unpack_sends_an_absolute_dir_and_prints_it(
    vxn: Invoke, fake: FakeImageService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert vxn("image", "unpack", "alpine:3.19", "out").stdout == f"{tmp_path / 'out'}\n"
    assert fake.unpacked == [("alpine:3.19", tmp_path / "out", os.getuid())]


def test_errors_come_back_as_one_line(vxn: Invoke) -> None:
    with pytest.raises(NotFound, match=r"^image nope: no such image"):
        vxn("image", "rootfs", "nope")
    with pytest.raises(NotFound, match=r"^image nope: no such image"):
        vxn("image", "unpack", "nope", "/tmp/x")


def test_the_api_refuses_a_relative_dir(tmp_path: Path, fake: FakeImageService) -> None:
    with (
        cli_against(vxn_cli, tmp_path, fake),
        Client(RunDir(tmp_path / "r")) as client,
        pytest.raises(InvalidArgument, match="must be an absolute path"),
    ):
        client.post("/v1/images/unpack", {"ref": "alpine:3.19", "dir": "rel"})
