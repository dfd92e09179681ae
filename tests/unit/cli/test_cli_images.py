import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vxn.cli.main import invoke as vxn_cli
from vxn.testing.daemon import Invoke, cli_against
from vxn.testing.fake_images import FakeImage, FakeImageService

A, B, C = "sha256:" + "a1" * 32, "sha256:" + "b2" * 32, "sha256:" + "c3" * 32


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


@pytest.fixture
def vxn(tmp_path: Path) -> Iterator[Invoke]:
    alpine = ["docker.io/library/alpine:3.19", "docker.io/library/alpine:latest"]
    images = [
        FakeImage(id=A, manifest="sha256:" + "d4" * 32, created=_ago(days=15), size=7_797_000),
        FakeImage(id=B, manifest="sha256:" + "e5" * 32, created=_ago(hours=3), size=141_900_000),
        FakeImage(id=C, manifest="sha256:" + "f6" * 32, created=None, size=5_200_000),
    ]
    images[0].names = alpine
    images[1].names = ["localhost:5000/app:v1"]
    with cli_against(vxn_cli, tmp_path, FakeImageService(images)) as invoke:
        yield invoke


def test_images_is_a_docker_table_newest_first(vxn: Invoke) -> None:
    result = vxn("images")
    assert result.stdout == (
        "REPOSITORY           TAG      IMAGE ID       CREATED       SIZE\n"
        "localhost:5000/app   v1       b2b2b2b2b2b2   3 hours ago   142MB\n"
        "alpine               3.19     a1a1a1a1a1a1   2 weeks ago   7.8MB\n"
        "alpine               latest   a1a1a1a1a1a1   2 weeks ago   7.8MB\n"
        "<none>               <none>   c3c3c3c3c3c3   N/A           5.2MB\n"
    )
    assert result.exit_code == 0


def test_image_ls_is_the_same_command(vxn: Invoke) -> None:
    assert vxn("image", "ls").stdout == vxn("images").stdout


def test_images_filters_by_repository_and_tag(vxn: Invoke) -> None:
    assert vxn("images", "alpine").stdout.count("alpine") == 2
    assert vxn("images", "alpine:latest").stdout.splitlines()[1:] == [
        "alpine       latest   a1a1a1a1a1a1   2 weeks ago   7.8MB"
    ]
    assert vxn("images", "nope").stdout == "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n"


def test_images_quiet_prints_unique_short_ids(vxn: Invoke) -> None:
    assert vxn("images", "-q").stdout == "b2b2b2b2b2b2\na1a1a1a1a1a1\nc3c3c3c3c3c3\n"
    assert vxn("images", "-q", "--no-trunc").stdout == f"{B}\n{A}\n{C}\n"


def test_images_format_json_is_one_docker_object_per_line(vxn: Invoke) -> None:
    lines = vxn("images", "--format", "json").stdout.splitlines()
    assert len(lines) == 4
    assert '"Tag":"\\u003cnone\\u003e"' in lines[3]
    first = json.loads(lines[0])
    created = datetime.fromisoformat(first.pop("CreatedAt").replace(" +0000 UTC", "+00:00"))
    assert abs((datetime.now(UTC) - created) - timedelta(hours=3)) < timedelta(minutes=1)
    assert first == {
        "Containers": "N/A",
        "CreatedSince": "3 hours ago",
        "Digest": "sha256:" + "e5" * 32,
        "ID": "b2b2b2b2b2b2",
        "Repository": "localhost:5000/app",
        "SharedSize": "N/A",
        "Size": "142MB",
        "Tag": "v1",
        "UniqueSize": "N/A",
        "VirtualSize": "141.9MB",
    }
    assert json.loads(lines[3])["CreatedAt"] == "N/A"


def test_images_rejects_an_unknown_format(vxn: Invoke) -> None:
    result = vxn("images", "--format", "{{.ID}}")
    assert result.exit_code == 2  # a usage error; main() turns it into 125
    assert "'{{.ID}}' is not one of 'table', 'json'" in result.stderr
