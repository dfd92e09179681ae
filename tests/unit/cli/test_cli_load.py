import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.cli.main import invoke as vxn_cli
from vxn.core.platform import Platform
from vxn.errors import InvalidArgument
from vxn.testing.daemon import Invoke, cli_against
from vxn.testing.fake_images import FakeImageService, tar_members


@pytest.fixture
def fake() -> FakeImageService:
    return FakeImageService()


@pytest.fixture
def vxn(tmp_path: Path, fake: FakeImageService) -> Iterator[Invoke]:
    with cli_against(vxn_cli, tmp_path, fake) as invoke:
        yield invoke


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _layout(root: Path) -> Path:
    """A directory shaped like an OCI image layout (the fake does not parse it)."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    (root / "blobs" / "sha256" / "ab").write_bytes(b"x" * 300_000)
    return root


def test_a_directory_is_streamed_as_a_tar_of_its_contents(
    vxn: Invoke, fake: FakeImageService, tmp_path: Path
) -> None:
    result = vxn("load", str(_layout(tmp_path / "layout")), "--name", "app:1")
    assert result.stdout == "Loaded image: docker.io/library/app:1\n"
    data, name, platform = fake.loads[0]
    assert (name, platform) == ("app:1", None)
    assert tar_members(data) == [
        "blobs",
        "blobs/sha256",
        "blobs/sha256/ab",
        "index.json",
        "oci-layout",
    ]


def test_a_file_is_streamed_as_is(vxn: Invoke, fake: FakeImageService, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    archive.write_bytes(bytes(range(256)) * 12_000)  # several chunks
    assert vxn("load", "-i", str(archive)).stdout == (
        f"Loaded image ID: {_sha(archive.read_bytes())}\n"
    )
    assert fake.loads[0][0] == archive.read_bytes()


def test_stdin_is_the_default_source(vxn: Invoke, fake: FakeImageService) -> None:
    assert (
        vxn("load", input=b"archive bytes").stdout == f"Loaded image ID: {_sha(b'archive bytes')}\n"
    )
    assert fake.loads[0][0] == b"archive bytes"


def test_the_platform_is_checked_before_the_upload(vxn: Invoke, fake: FakeImageService) -> None:
    with pytest.raises(InvalidArgument, match="invalid platform 'amd64'"):
        vxn("load", "--platform", "amd64", input=b"data")
    assert fake.loads == []
    vxn("load", "--platform", "linux/arm64", input=b"data")
    assert fake.loads[0][2] == Platform(os="linux", architecture="arm64", variant="v8")


def test_a_load_error_is_the_daemons_message(vxn: Invoke) -> None:
    with pytest.raises(InvalidArgument, match=r"^load: empty archive: pass an OCI layout"):
        vxn("load", input=b"")


def test_the_archive_is_named_once(vxn: Invoke, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"a")
    with pytest.raises(InvalidArgument, match="give the archive once"):
        vxn("load", str(archive), "-i", str(archive))


def test_an_unreadable_archive_is_named(vxn: Invoke) -> None:
    with pytest.raises(
        InvalidArgument, match=r"^load: cannot read /proc/self/mem: Input/output error$"
    ):
        vxn("load", "/proc/self/mem")
