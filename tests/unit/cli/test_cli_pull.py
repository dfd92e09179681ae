from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.cli.main import invoke as vxn_cli
from vxn.cli.progress import Display, line
from vxn.core.credentials import Credentials
from vxn.core.platform import Platform
from vxn.engine.pull import PullOptions
from vxn.errors import InvalidArgument, NotFound
from vxn.testing.daemon import Invoke, cli_against
from vxn.testing.fake_images import FakeImage, FakeImageService

ID, MANIFEST = "sha256:" + "a1" * 32, "sha256:" + "d4" * 32


@pytest.fixture
def fake() -> FakeImageService:
    fake = FakeImageService()
    for ref in ("docker.io/library/app:latest", "reg.example:5000/team/app:1"):
        fake.remote[ref] = FakeImage(id=ID, manifest=MANIFEST, size=10)
    return fake


@pytest.fixture
def vxn(
    tmp_path: Path, fake: FakeImageService, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Invoke]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no real ~/.docker in the tests
    for var in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    with cli_against(vxn_cli, tmp_path, fake) as invoke:
        yield invoke


def test_pull_prints_the_digest_the_status_and_the_name(vxn: Invoke) -> None:
    assert vxn("pull", "app").stdout == (
        "Using default tag: latest\n"
        f"Digest: {MANIFEST}\n"
        "Status: Downloaded newer image for app:latest\n"
        "docker.io/library/app:latest\n"
    )
    assert vxn("pull", "reg.example:5000/team/app:1").stdout == (
        f"Digest: {MANIFEST}\n"
        "Status: Downloaded newer image for reg.example:5000/team/app:1\n"
        "reg.example:5000/team/app:1\n"
    )
    assert "Status: Image is up to date for app:latest\n" in vxn("pull", "app").stdout
    assert vxn("pull", "-q", "app").stdout == "docker.io/library/app:latest\n"


def test_flags_reach_vxnd(vxn: Invoke, fake: FakeImageService, tmp_path: Path) -> None:
    vxn("pull", "--platform", "linux/arm64", "--tls-verify=false", "app")
    vxn("pull", "--tls-verify", "--cert-dir", str(tmp_path), "app")
    assert fake.pulls == [
        ("app", Platform.parse("linux/arm64"), PullOptions(tls_verify=False)),
        ("app", None, PullOptions(tls_verify=True, cert_dir=tmp_path)),
    ]


def test_credentials_come_from_the_users_auth_file(
    vxn: Invoke, fake: FakeImageService, tmp_path: Path
) -> None:
    auth = base64.b64encode(b"u:p").decode()
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {"reg.example:5000": {"auth": auth}}}))
    vxn("pull", "--authfile", str(authfile), "reg.example:5000/team/app:1")
    vxn("pull", "--authfile", str(authfile), "app")  # none for Docker Hub in it
    assert [p[2] for p in fake.pulls] == [
        PullOptions(credentials=Credentials(username="u", password="p")),
        PullOptions(),
    ]


def test_bad_input_fails_before_vxnd_is_asked(vxn: Invoke, fake: FakeImageService) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference"):
        vxn("pull", "app:")
    with pytest.raises(InvalidArgument, match="invalid platform"):
        vxn("pull", "--platform", "amd64", "app")
    assert fake.pulls == []


def test_the_daemons_error_is_the_message(vxn: Invoke) -> None:
    with pytest.raises(NotFound, match=r"^pull docker\.io/library/nope:latest: manifest: 404"):
        vxn("pull", "nope")


def test_progress_lines_look_like_dockers() -> None:
    assert line({"id": "v1", "status": "Pulling from vxn/test"}) == "v1: Pulling from vxn/test"
    half = line({"id": "abc", "status": "Downloading", "current": 500_000, "total": 1_000_000})
    assert half == f"abc: Downloading [{'=' * 25}>{' ' * 24}]   500kB/1MB"
    full = line({"id": "abc", "status": "Downloading", "current": 10, "total": 10})
    assert f"[{'=' * 50}]" in full


def test_the_display_redraws_a_layer_in_place() -> None:
    out = io.StringIO()
    display = Display(out)
    display.update({"id": "a", "status": "Waiting"})
    display.update({"id": "b", "status": "Waiting"})
    display.update({"id": "a", "status": "Download complete"})
    assert out.getvalue() == (
        "a: Waiting\nb: Waiting\n\x1b[2A\x1b[2K\ra: Download complete\x1b[2B\r"
    )
