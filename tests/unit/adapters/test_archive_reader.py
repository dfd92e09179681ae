"""Reading image archives from a stream: what is kept, what is staged, what is refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.adapters import archive as archive_mod
from vxn.adapters.archive import ArchiveContents, diff_id, read_archive, sniff_compression
from vxn.adapters.content import ContentStore, Ingest
from vxn.core.digest import Digest
from vxn.errors import InvalidArgument


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(members: list[tarfile.TarInfo | tuple[str, bytes]], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    data = buf.getvalue()
    return gzip.compress(data, mtime=0) if gz else data


def special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def blob(data: bytes) -> tuple[str, bytes]:
    return (f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data)


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    with ContentStore(tmp_path / "state" / "content").ingest("load") as i:
        yield i


def read(data: bytes, ingest: Ingest) -> ArchiveContents:
    return read_archive(io.BytesIO(data), ingest)


def refused(data: bytes, ingest: Ingest) -> str:
    with pytest.raises(InvalidArgument) as e:
        read(data, ingest)
    return str(e.value)


@pytest.mark.parametrize("gz", [False, True])
def test_layout_documents_stay_in_memory_and_blobs_are_staged(ingest: Ingest, gz: bool) -> None:
    layer = b"layer bytes" * 100
    out = read(
        make_tar([("./oci-layout", b"{}"), ("./index.json", b"[1]"), blob(layer)], gz=gz), ingest
    )
    assert out.documents == {"oci-layout": b"{}", "index.json": b"[1]"}
    staged = out.blob(Digest.parse(sha(layer)))
    assert staged is not None
    assert (str(staged.digest), staged.size) == (sha(layer), len(layer))
    assert staged.path.parent == ingest.dir
    assert staged.path.read_bytes() == layer


def test_a_blob_whose_content_differs_from_its_name_is_refused_at_once(ingest: Ingest) -> None:
    name = f"blobs/sha256/{'ab' * 32}"
    assert refused(make_tar([(name, b"not that")]), ingest) == (
        f"load: blob sha256:{'ab' * 32}: digest mismatch (got {sha(b'not that')})"
    )


def test_a_blob_not_named_by_a_digest_is_refused(ingest: Ingest) -> None:
    assert refused(make_tar([("blobs/sha256/xyz", b"1")]), ingest) == (
        "load: archive member blobs/sha256/xyz: not named by a digest (blobs/sha256/<64 hex>)"
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil", "path has '..'"),
        ("blobs/../../evil", "path has '..'"),
        ("/etc/passwd", "absolute or odd path"),
    ],
)
def test_escaping_member_names_are_refused(ingest: Ingest, name: str, why: str) -> None:
    assert refused(make_tar([(name, b"x")]), ingest) == (
        f"load: archive member {name!r}: {why}; refused"
    )


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        (tarfile.CHRTYPE, "a character device"),
        (tarfile.BLKTYPE, "a block device"),
        (tarfile.FIFOTYPE, "a fifo"),
    ],
)
def test_devices_and_fifos_are_refused(ingest: Ingest, kind: bytes, label: str) -> None:
    assert refused(make_tar([special("dev/x", kind)]), ingest) == (
        f"load: archive member dev/x is {label}; an image archive holds only files, "
        "directories and links"
    )


def test_duplicate_names_are_refused_even_when_spelled_differently(ingest: Ingest) -> None:
    assert refused(make_tar([("index.json", b"1"), ("./index.json", b"2")]), ingest) == (
        "load: archive member index.json appears twice; save it again"
    )


def test_the_entry_count_is_capped(ingest: Ingest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "MAX_ENTRIES", 3)
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [(f"f{i}", b"") for i in range(4)]
    assert refused(make_tar(members), ingest) == ("load: archive has over 3 entries; not an image")


def test_an_oversize_document_is_refused(ingest: Ingest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "MAX_DOCUMENT_SIZE", 4)
    assert refused(make_tar([("manifest.json", b"12345")]), ingest) == (
        "load: archive member manifest.json is 5 bytes, over the 4-byte limit for a document"
    )


@pytest.mark.parametrize("gz", [False, True])
def test_a_tar_truncated_mid_member_is_reported_as_truncated(ingest: Ingest, gz: bool) -> None:
    whole = make_tar([blob(os.urandom(200_000))], gz=gz)
    assert refused(whole[: len(whole) // 2], ingest) == (
        "load: archive is truncated (unexpected end of data); copy or save it again"
    )


def test_input_that_is_not_a_tar_is_refused(ingest: Ingest) -> None:
    assert refused(b"hello, this is not a tar" * 40, ingest) == (
        "load: input is not a tar archive (invalid header); give an oci-archive, an OCI "
        "layout as a tar, or a docker-archive (optionally gzip'd)"
    )


def test_corrupt_compressed_input_is_refused(ingest: Ingest) -> None:
    data = gzip.compress(b"x" * 5000, mtime=0)[:10] + b"\xff" * 200
    assert refused(data, ingest) == (
        "load: archive is corrupt (invalid compressed data); copy or save it again"
    )


def test_links_resolve_by_archive_name(ingest: Ingest) -> None:
    out = read(
        make_tar(
            [
                ("aaa/layer.tar", b"the layer"),
                special("bbb/layer.tar", tarfile.SYMTYPE, "../aaa/layer.tar"),
                special("ccc/layer.tar", tarfile.LNKTYPE, "bbb/layer.tar"),
            ]
        ),
        ingest,
    )
    first = out.member("aaa/layer.tar")
    assert first is not None
    assert out.member("bbb/layer.tar") == first
    assert out.member("./ccc/layer.tar") == first
    assert out.member("ddd/layer.tar") is None


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("/etc/passwd", "load: archive member x/layer.tar: link to an absolute path"),
        (
            "../../etc/passwd",
            "load: archive member 'x/layer.tar -> ../../etc/passwd': path has '..'; refused",
        ),
    ],
)
def test_links_that_leave_the_archive_are_refused(ingest: Ingest, link: str, message: str) -> None:
    assert refused(make_tar([special("x/layer.tar", tarfile.SYMTYPE, link)]), ingest) == message


def test_link_loops_are_refused_on_use(ingest: Ingest) -> None:
    out = read(
        make_tar([special("a", tarfile.SYMTYPE, "b"), special("b", tarfile.SYMTYPE, "a")]), ingest
    )
    with pytest.raises(InvalidArgument, match="too many levels of links"):
        out.member("a")


def test_nothing_is_written_through_an_archive_symlink(ingest: Ingest, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = read(
        make_tar([special("evil", tarfile.SYMTYPE, str(outside)[1:]), ("evil/file", b"pwned")]),
        ingest,
    )
    assert os.listdir(outside) == []
    assert sorted(os.listdir(ingest.dir)) == ["1"]
    assert out.files["evil/file"].path == ingest.dir / "1"


def test_compression_is_sniffed_from_magic_bytes() -> None:
    assert sniff_compression(b"\x1f\x8b\x08\x00") == "gzip"
    assert sniff_compression(b"\x28\xb5\x2f\xfd\x00") == "zstd"
    assert sniff_compression(b"ustar\x00") == ""


def test_diff_id_hashes_the_uncompressed_stream(ingest: Ingest) -> None:
    raw = os.urandom(300_000)
    two_members = gzip.compress(raw[:1000], mtime=0) + gzip.compress(raw[1000:], mtime=0)
    staged = ingest.stage_bytes(two_members)
    assert str(diff_id(staged, "gzip")) == sha(raw)
    plain = ingest.stage_bytes(raw)
    assert diff_id(plain, "") == plain.digest


def test_diff_id_of_a_zstd_layer(ingest: Ingest, tmp_path: Path) -> None:
    raw = b"zstd layer " * 1000
    (tmp_path / "l").write_bytes(raw)
    subprocess.run(["zstd", "-q", str(tmp_path / "l"), "-o", str(tmp_path / "l.zst")], check=True)
    staged = ingest.stage_bytes((tmp_path / "l.zst").read_bytes())
    assert sniff_compression(staged.head) == "zstd"
    assert str(diff_id(staged, "zstd")) == sha(raw)
    bad = ingest.stage_bytes(b"\x28\xb5\x2f\xfd garbage")
    with pytest.raises(InvalidArgument, match=f"load: layer {bad.digest}: bad zstd data"):
        diff_id(bad, "zstd")


def test_a_truncated_gzip_layer_is_refused(ingest: Ingest) -> None:
    data = gzip.compress(os.urandom(10_000), mtime=0)[:-100]
    staged = ingest.stage_bytes(data)
    with pytest.raises(InvalidArgument) as e:
        diff_id(staged, "gzip")
    assert str(e.value) == (
        f"load: layer {staged.digest}: bad gzip data (compressed data ends early)"
    )
