"""The tar header parser, against what Python's tarfile writes in every format, and
against broken headers."""

from __future__ import annotations

import io
import tarfile

import pytest

from vxn.core import tarformat as tf
from vxn.errors import InvalidArgument

LONG = "d" * 120 + "/" + "f" * 120


def _members(data: bytes) -> list[tf.Member]:
    """Every entry, joined with its PAX and long-name headers (as the reader does)."""
    out, pos, pax, long_name, long_link, glob = [], 0, {}, None, None, {}
    while pos < len(data):
        header = tf.parse_header(data[pos : pos + tf.BLOCK])
        pos += tf.BLOCK
        if header is None:
            break
        body = data[pos : pos + header.size]
        if header.type in tf.META_TYPES:
            pos += tf.padded(header.size)
            if header.type == tf.PAX_LOCAL:
                pax = tf.parse_pax(body)
            elif header.type == tf.PAX_GLOBAL:
                glob.update(tf.parse_pax(body))
            elif header.type == tf.GNU_LONGNAME:
                long_name = tf.meta_text(body)
            else:
                long_link = tf.meta_text(body)
            continue
        out.append(tf.apply_overrides(header, {**glob, **pax}, long_name, long_link))
        pos += tf.padded(header.size) if header.type in (b"0", b"7") else 0
        pax, long_name, long_link = {}, None, None
    return out


def _tar(fmt: int, infos: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info in infos:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()


def _infos() -> list[tarfile.TarInfo]:
    infos = []
    for name, kind, extra in [
        ("plain", tarfile.REGTYPE, {"size": 3, "mode": 0o4755, "uid": 1000, "gid": 100}),
        (LONG, tarfile.REGTYPE, {"size": 700, "mtime": 1_700_000_000}),
        ("dir/", tarfile.DIRTYPE, {"mode": 0o1777}),
        ("link", tarfile.SYMTYPE, {"linkname": "/" + LONG}),
        ("hard", tarfile.LNKTYPE, {"linkname": "plain"}),
        ("dev", tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}),
        ("blk", tarfile.BLKTYPE, {"devmajor": 259, "devminor": 70000}),
        ("fifo", tarfile.FIFOTYPE, {}),
    ]:
        info = tarfile.TarInfo(name)
        info.type = kind
        for key, value in extra.items():
            setattr(info, key, value)
        infos.append(info)
    return infos


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_every_entry_reads_as_tarfile_wrote_it(fmt: int) -> None:
    infos = _infos()
    members = _members(_tar(fmt, infos))
    assert [m.header.name.rstrip("/") for m in members] == [i.name.rstrip("/") for i in infos]
    for m, info in zip(members, infos, strict=True):
        h = m.header
        assert (h.mode, h.uid, h.gid, h.size, h.mtime) == (
            info.mode,
            info.uid,
            info.gid,
            info.size,
            info.mtime,
        )
        assert (h.link, h.major, h.minor) == (info.linkname, info.devmajor, info.devminor)
        assert h.type == info.type


def test_ustar_prefix_and_base256_and_pax_overrides() -> None:
    info = tarfile.TarInfo("p" * 90 + "/" + "n" * 90)  # fits ustar with the prefix field
    info.size = 1
    ustar = _tar(tarfile.USTAR_FORMAT, [info])
    assert _members(ustar)[0].header.name == info.name
    big = tarfile.TarInfo("big")
    big.uid, big.gid = 3_000_000, 2**40
    assert _members(_tar(tarfile.GNU_FORMAT, [big]))[0].header.uid == 3_000_000
    pax = tarfile.TarInfo("x")
    pax.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "mtime": "1.5"}
    member = _members(_tar(tarfile.PAX_FORMAT, [pax]))[0]
    assert member.header.mtime == 1.5
    assert member.pax["SCHILY.xattr.security.capability"] == b"\x01\x00\x00\x02"


def test_a_global_pax_header_applies_to_later_entries() -> None:
    glob = tarfile.TarInfo("g")
    glob.type = tarfile.XGLTYPE
    records = b"11 uid=777\n"
    glob.size = len(records)
    padding = bytes(tf.padded(len(records)) - len(records))
    head = glob.tobuf(tarfile.USTAR_FORMAT) + records + padding
    entries = [tarfile.TarInfo(n).tobuf(tarfile.USTAR_FORMAT) for n in ("a", "b")]
    assert [m.header.uid for m in _members(head + b"".join(entries))] == [777, 777]


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b[:148] + b"0000000\x00" + b[156:], "checksum is wrong"),
        (lambda b: _summed(b[:257] + b"bogus\x00" + b[263:]), "unknown header format"),
        (lambda b: b[:100] + b"9999999\x00" + b[108:], "checksum is wrong"),
        (lambda b: b[:300], "ends inside a header"),
    ],
    ids=["checksum", "magic", "bad-number", "short"],
)
def test_broken_headers_are_refused(damage: object, match: str) -> None:
    block = tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT)
    with pytest.raises(InvalidArgument, match=match):
        tf.parse_header(damage(block))  # type: ignore[operator]


def test_a_non_octal_number_with_a_right_checksum_is_refused() -> None:
    block = tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT)
    with pytest.raises(InvalidArgument, match="mode is not a number"):
        tf.parse_header(_summed(block[:100] + b"0zz0000\x00" + block[108:]))


def _summed(block: bytes) -> bytes:
    """`block` with its checksum made right again."""
    blank = block[:148] + b" " * 8 + block[156:]
    return blank[:148] + b"%06o\x00 " % sum(blank) + blank[156:]


def test_zero_block_ends_the_archive() -> None:
    assert tf.parse_header(bytes(512)) is None


@pytest.mark.parametrize(
    ("records", "match"),
    [
        (b"5 a=b\n", "length does not match"),
        (b"x a=b\n", "has no length"),
        (b"8 nokey\n", "has no key"),
        (b"99 a=b\n", "length does not match"),
    ],
)
def test_bad_pax_records(records: bytes, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        tf.parse_pax(records)


@pytest.mark.parametrize(
    ("pax", "match"),
    [
        ({"size": b"-1"}, "PAX size is not a non-negative integer"),
        ({"mtime": b"inf"}, "PAX mtime is not a number"),
        ({"GNU.sparse.map": b"0,1"}, "is a sparse file"),
    ],
)
def test_bad_pax_values_and_sparse_files_are_refused(pax: dict[str, bytes], match: str) -> None:
    header = tf.parse_header(tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT))
    assert header is not None
    with pytest.raises(InvalidArgument, match=match):
        tf.apply_overrides(header, pax, None, None)
