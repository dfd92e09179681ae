"""`vxn` image commands end to end: real vxn and vxnd processes, the real engine, images
built here, and skopeo's Docker media types. Bad input: one line, exit 125, store as it was."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from data import imagebuild as ib

from vxn.testing.daemon import VxnDirs, vxn_argv

pytestmark = pytest.mark.integration
TIMEOUT = 120.0


@pytest.fixture
def dirs() -> Iterator[VxnDirs]:
    with VxnDirs() as d:
        yield d


def vxn(dirs: VxnDirs, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        vxn_argv(*args), env=dirs.env(), input=stdin, capture_output=True, timeout=TIMEOUT
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def ok(dirs: VxnDirs, *args: str, stdin: bytes | None = None) -> str:
    result = vxn(dirs, *args, stdin=stdin)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def store_snapshot(dirs: VxnDirs) -> dict[str, str]:
    content = dirs.state / "content"
    return {
        str(p.relative_to(content)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(content.rglob("*"))
        if p.is_file() and p.relative_to(content).parts[0] != "ingest"
    }


def test_every_input_format_loads_and_lists(dirs: VxnDirs, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    built = ib.simple_layout(layout, name="v1")
    docker_tar = ib.docker_archive(tmp_path / "d.tar", [(built, ["app:1.0"])])
    v2s2 = tmp_path / "v2s2"
    subprocess.run(
        ["skopeo", "copy", "-q", "--format", "v2s2", f"oci:{layout}:v1", f"oci:{v2s2}:v1"],
        check=True,
        timeout=TIMEOUT,
    )
    gz = ib.oci_archive(v2s2, tmp_path / "v2s2.tar.gz", compress=True)

    assert ok(dirs, "load", "--name", "localhost/app", str(layout)) == (
        "Loaded image: localhost/app:v1\n"
    )
    assert ok(dirs, "load", "-i", str(docker_tar)) == "Loaded image: docker.io/library/app:1.0\n"
    assert ok(dirs, "load", "--name", "reg:5000/x/y:docker", stdin=gz.read_bytes()) == (
        "Loaded image: reg:5000/x/y:docker\n"
    )

    rows = [json.loads(line) for line in ok(dirs, "images", "--format", "json").splitlines()]
    names = sorted(f"{r['Repository']}:{r['Tag']}" for r in rows)
    assert names == ["app:1.0", "localhost/app:v1", "reg:5000/x/y:docker"]
    table = ok(dirs, "images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert len(table) == 4
    short = built.config_digest.removeprefix("sha256:")[:12]
    assert short in ok(dirs, "images", "-q").split()


def test_inspect_shows_the_config(dirs: VxnDirs, tmp_path: Path) -> None:
    built = ib.simple_layout(tmp_path / "layout", name="")
    ok(dirs, "load", "--name", "insp:1", str(tmp_path / "layout"))
    (doc,) = json.loads(ok(dirs, "image", "inspect", "insp:1"))
    assert doc["Id"] == built.config_digest
    assert doc["RepoTags"] == ["insp:1"]
    assert (doc["Os"], doc["Architecture"]) == ("linux", "amd64")
    config = doc["Config"]
    assert config["Entrypoint"] == ["/bin/busybox"]
    assert config["Cmd"] == ["sh", "-c", "echo hello"]
    assert config["Env"] == ["PATH=/usr/bin:/bin", "VXN_TEST=1"]
    assert (config["WorkingDir"], config["User"]) == ("/data", "1000:1000")
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["Labels"] == {"org.example.test": "yes"}
    assert [layer["Digest"] for layer in doc["Layers"]] == [d["digest"] for d in built.layers]
    assert doc["RootFS"]["Layers"] == built.diff_ids


def test_tag_rmi_and_prune(dirs: VxnDirs, tmp_path: Path) -> None:
    built = ib.simple_layout(tmp_path / "layout", name="")
    ok(dirs, "load", "--name", "one:1", str(tmp_path / "layout"))
    assert ok(dirs, "tag", "one:1", "two:2") == ""
    assert ok(dirs, "rmi", "one:1") == "Untagged: one:1\n"
    assert ok(dirs, "rmi", "two:2") == f"Untagged: two:2\nDeleted: {built.config_digest}\n"
    assert ok(dirs, "images", "-q") == ""
    blobs = dirs.state / "content" / "blobs" / "sha256"
    assert list(blobs.iterdir()) == []


def test_rmi_refuses_an_image_a_container_uses(dirs: VxnDirs, tmp_path: Path) -> None:
    built = ib.simple_layout(tmp_path / "layout", name="")
    ok(dirs, "load", "--name", "busy:1", str(tmp_path / "layout"))
    record = dirs.state / "containers" / "web1"
    record.mkdir(parents=True)
    (record / "config.json").write_text(json.dumps({"image": built.digest}))
    refused = vxn(dirs, "rmi", "busy:1")
    assert refused.returncode == 125
    assert refused.stderr == (
        "vxn: image busy:1 is in use by container web1; stop and remove it first or use -f\n"
    )
    assert "Untagged: busy:1" in ok(dirs, "rmi", "-f", "busy:1")


def test_platform_choice_and_a_missing_platform(dirs: VxnDirs, tmp_path: Path) -> None:
    _, _, arm = ib.multiarch_layout(tmp_path / "multi")
    ok(dirs, "load", "--platform", "linux/arm64", "--name", "multi", str(tmp_path / "multi"))
    (doc,) = json.loads(ok(dirs, "image", "inspect", "multi:multi"))
    assert (doc["Architecture"], doc["Id"]) == ("arm64", arm.config_digest)
    before = store_snapshot(dirs)
    missing = vxn(dirs, "load", "--platform", "linux/s390x", str(tmp_path / "multi"))
    assert missing.returncode == 125
    assert missing.stderr.startswith("vxn: ")
    assert "no manifest for linux/s390x" in missing.stderr
    assert missing.stderr.count("\n") == 1
    assert store_snapshot(dirs) == before


def corrupt_blob(layout: Path, built: ib.Built) -> str:
    ib.flip_byte(layout / "blobs" / "sha256" / built.layers[0]["digest"][7:], 500)
    return "digest mismatch"


def malformed_manifest(layout: Path, built: ib.Built) -> str:
    ib.replace_blob_bytes(layout, built.digest, b"{not json")
    return "malformed JSON"


def unsupported_layer(layout: Path, built: ib.Built) -> str:
    ib.rewrite_manifest(layout, lambda m: m["layers"][0].update(mediaType="text/plain"))
    return "unsupported media type text/plain"


@pytest.mark.parametrize("damage", [corrupt_blob, malformed_manifest, unsupported_layer])
def test_bad_input_is_one_line_exit_125_and_changes_nothing(
    dirs: VxnDirs, tmp_path: Path, damage: Callable[[Path, ib.Built], str]
) -> None:
    good = tmp_path / "good"
    built = ib.simple_layout(good, name="")
    ok(dirs, "load", "--name", "seed:1", str(good))
    before = store_snapshot(dirs)
    bad = ib.copy_layout(good, tmp_path / "bad")
    why = damage(bad, built)
    result = vxn(dirs, "load", "--name", "bad:1", str(bad))
    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr.startswith("vxn: load")
    assert why in result.stderr
    assert result.stderr.count("\n") == 1
    assert store_snapshot(dirs) == before


def test_a_truncated_archive_changes_nothing(dirs: VxnDirs, tmp_path: Path) -> None:
    ib.simple_layout(tmp_path / "layout", ib.ImageSpec(big_mb=2), name="")
    tar = ib.oci_archive(tmp_path / "layout", tmp_path / "t.tar")
    ib.truncate(tar, tar.stat().st_size // 2)
    result = vxn(dirs, "load", "--name", "cut:1", str(tar))
    assert result.returncode == 125
    assert result.stderr.startswith("vxn: load: archive is truncated")
    assert result.stderr.count("\n") == 1
    assert store_snapshot(dirs) == {}
    assert list((dirs.state / "content" / "ingest").iterdir()) == []
