import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.args import Abort
from vxn.cli.main import invoke as vxn_cli
from vxn.errors import FailedPrecondition, NotFound
from vxn.testing.daemon import Invoke, cli_against
from vxn.testing.fake_images import FakeImage, FakeImageService

A, B = "sha256:" + "a1" * 32, "sha256:" + "b2" * 32


@pytest.fixture
def fake() -> FakeImageService:
    alpine = FakeImage(id=A, manifest="sha256:" + "d4" * 32, created="2024-01-26T23:44:01Z")
    alpine.size, alpine.names = 7_797_000, ["docker.io/library/alpine:3.19"]
    dangling = FakeImage(id=B, manifest="sha256:" + "e5" * 32, size=1_234_567)
    return FakeImageService([alpine, dangling])


@pytest.fixture
def vxn(tmp_path: Path, fake: FakeImageService) -> Iterator[Invoke]:
    with cli_against(vxn_cli, tmp_path, fake) as invoke:
        yield invoke


def test_tag_then_rmi_untags_and_deletes_like_docker(vxn: Invoke) -> None:
    assert vxn("tag", "alpine:3.19", "mine:1").stdout == ""
    assert vxn("rmi", "mine:1").stdout == "Untagged: mine:1\n"
    assert vxn("image", "rm", "alpine:3.19").stdout == f"Untagged: alpine:3.19\nDeleted: {A}\n"


def test_rmi_by_id_of_a_shared_image_needs_force(vxn: Invoke) -> None:
    vxn("image", "tag", "alpine:3.19", "mine:1")
    with pytest.raises(FailedPrecondition, match="referenced in multiple repositories"):
        vxn("rmi", "a1a1a1a1a1a1")
    assert vxn("rmi", "-f", "a1a1a1a1a1a1").stdout == (
        f"Untagged: alpine:3.19\nUntagged: mine:1\nDeleted: {A}\n"
    )


def test_rmi_output_and_errors(tmp_path: Path, fake: FakeImageService) -> None:
    from vxn.testing.clirunner import invoke as invoke_cli

    with cli_against(vxn_cli, tmp_path, fake):
        flags = ["--run-dir", str(tmp_path / "r"), "--state-dir", str(tmp_path / "s")]
        env = {"VXN_NO_AUTOSTART": "1", "VXN_CONFIG": str(tmp_path / "vxn.toml")}
        result = invoke_cli(vxn_cli, [*flags, "rmi", "one", "alpine:3.19", "two"], env=env)
    assert result.stdout == f"Untagged: alpine:3.19\nDeleted: {A}\n"
    assert result.stderr == "vxn: image one: no such image; see `vxn images`\n"
    assert isinstance(result.exception, NotFound)


def test_tag_of_a_missing_image(vxn: Invoke) -> None:
    with pytest.raises(NotFound, match=r"^image nope: no such image; see `vxn images`$"):
        vxn("tag", "nope", "x")


def test_image_inspect_prints_a_json_array(vxn: Invoke) -> None:
    out = vxn("image", "inspect", "alpine:3.19").stdout
    assert out.startswith('[\n    {\n        "Id": "sha256:a1')
    assert json.loads(out) == [
        {
            "Id": A,
            "RepoTags": ["alpine:3.19"],
            "RepoDigests": ["alpine@sha256:" + "d4" * 32],
            "Created": "2024-01-26T23:44:01Z",
            "Size": 7_797_000,
            "Os": "linux",
            "Architecture": "amd64",
        }
    ]


def test_image_inspect_reports_what_is_missing(vxn: Invoke) -> None:
    with pytest.raises(NotFound, match=r"^image nope: no such image"):
        vxn("image", "inspect", "alpine:3.19", "nope")


def test_image_prune_asks_first(vxn: Invoke, fake: FakeImageService) -> None:
    result = vxn("image", "prune", input="n\n")
    assert result.stdout == (  # stdin is a pipe here: the answer is not echoed
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N]: "
    )
    assert len(fake.images) == 2
    with pytest.raises(Abort):  # EOF: no answer (main() prints Aborted!, exit 130)
        vxn("image", "prune", input="")
    assert len(fake.images) == 2


def test_image_prune_force_reports_blobs_and_space(vxn: Invoke, fake: FakeImageService) -> None:
    assert vxn("image", "prune", "-f").stdout == (
        f"Deleted blobs:\ndeleted: {B}\n\nTotal reclaimed space: 1.235MB\n"
    )
    assert vxn("image", "prune", "--force").stdout == "Total reclaimed space: 0B\n"
    assert [i.id for i in fake.images] == [A]


def test_info_shows_versions_paths_and_backends(vxn: Invoke, tmp_path: Path) -> None:
    lines = vxn("info").stdout.splitlines()
    assert lines[:6] == ["Client:", " Version: 0.1.0", " API: 1", "", "Server:", " Version: 0.1.0"]
    assert f" State Dir: {tmp_path / 's'}" in lines
    assert f" Socket: {tmp_path / 'r' / 'vxn.sock'}" in lines
    assert " Store Size: 9.03MB" in lines
    assert " Platform: linux/amd64" in lines
    assert lines[lines.index(" Backends:") + 1].startswith("  xen: ")


def test_info_format_json(vxn: Invoke, tmp_path: Path) -> None:
    info = json.loads(vxn("info", "--format", "json").stdout)
    assert info["client"] == {"version": "0.1.0", "api": 1}
    assert info["server"]["paths"]["run_dir"] == str(tmp_path / "r")
    assert set(info["server"]["backends"]) == {"xen", "qemu"}
