"""Reading an image archive from a stream: an OCI layout as a tar (oci-archive, or a
layout dir the CLI tars on the fly) or a docker-archive (`docker save`), maybe gzip'd.

The archive is untrusted. Each regular member is read once, in archive order:
`blobs/<alg>/<hex>` is hashed into staging and must match its name at once; the
small JSON members that say what the archive holds are kept in memory (capped);
anything else (docker's `<id>/layer.tar`) is hashed into staging too. Staged files
are named by the content store, never by the archive, and nothing is ever extracted.
Links (docker saves duplicate layers as symlinks) are resolved by archive name only.
tarfile's and the stream's exceptions are translated here, once.
"""

from __future__ import annotations

import posixpath
import re
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, cast

from vxn.adapters.layerstream import LayerStream
from vxn.core.digest import Digest
from vxn.core.manifest import MAX_DOCUMENT_SIZE
from vxn.errors import InvalidArgument, VxnError

if TYPE_CHECKING:
    from vxn.adapters.content import Ingest, StagedBlob

MAX_ENTRIES = 100_000
MAX_DOCUMENTS_TOTAL = 64 * 1024 * 1024
MAX_LINK_DEPTH = 16
TAR_BUFSIZE = 1024 * 1024

# Top-level members that describe the archive; read into memory, not staged.
_DOCUMENT_NAMES = frozenset({"index.json", "oci-layout", "manifest.json", "repositories"})
_CONFIG_NAME = re.compile(r"[0-9a-f]{64}\.json")
_BLOB_NAME = re.compile(r"blobs/([a-z0-9]+)/([^/]+)")
_KINDS = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}


@dataclass(slots=True)
class ArchiveContents:
    """What an archive held: documents in memory, other files staged, links by name."""

    documents: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, StagedBlob] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # name -> target member name

    def member(self, name: str) -> StagedBlob | None:
        """The staged file for a member name, following links by name."""
        name = _clean(name, name)
        for _ in range(MAX_LINK_DEPTH):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                return None
            name = self.links[name]
        raise InvalidArgument(f"load: archive member {name}: too many levels of links")

    def blob(self, digest: Digest) -> StagedBlob | None:
        return self.member(f"blobs/{digest.algorithm}/{digest.hex}")


def read_archive(stream: BinaryIO, ingest: Ingest) -> ArchiveContents:
    """Read the whole archive into `ingest`; raise InvalidArgument on hostile input."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*", bufsize=TAR_BUFSIZE) as tar:
            return _read_members(tar, ingest)
    except VxnError:
        raise
    except (tarfile.ReadError, EOFError, zlib.error) as e:
        if "unexpected end of data" in str(e) or isinstance(e, EOFError):
            raise InvalidArgument(
                f"load: archive is truncated ({e}); copy or save it again"
            ) from None
        if "compressed" in str(e) or isinstance(e, zlib.error):
            raise InvalidArgument(
                f"load: archive is corrupt ({e}); copy or save it again"
            ) from None
        raise InvalidArgument(
            f"load: input is not a tar archive ({e}); give an oci-archive, an OCI layout "
            "as a tar, or a docker-archive (optionally gzip'd)"
        ) from None
    except tarfile.TarError as e:
        raise InvalidArgument(f"load: archive is malformed ({e})") from None
    except OSError as e:
        raise InvalidArgument(f"load: cannot read the input: {e.strerror or e}") from None


def _read_members(tar: tarfile.TarFile, ingest: Ingest) -> ArchiveContents:
    out = ArchiveContents()
    seen: set[str] = set()
    in_memory = 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_ENTRIES:
            raise InvalidArgument(f"load: archive has over {MAX_ENTRIES} entries; not an image")
        name = _clean(member.name, member.name)
        if member.isdir() or not name:
            continue
        if name in seen:
            raise InvalidArgument(f"load: archive member {name} appears twice; save it again")
        seen.add(name)
        if member.issym() or member.islnk():
            out.links[name] = _link_target(name, member)
        elif not member.isreg():
            kind = _KINDS.get(member.type, f"of tar type {member.type!r}")
            raise InvalidArgument(
                f"load: archive member {name} is {kind}; an image archive holds only "
                "files, directories and links"
            )
        elif name in _DOCUMENT_NAMES or _CONFIG_NAME.fullmatch(name):
            data = _read_document(tar, member, name)
            in_memory += len(data)
            if in_memory > MAX_DOCUMENTS_TOTAL:
                raise InvalidArgument(f"load: archive documents exceed {MAX_DOCUMENTS_TOTAL} bytes")
            out.documents[name] = data
        else:
            out.files[name] = _stage(tar, member, name, ingest)
    return out


def _clean(raw: str, shown: str) -> str:
    """A member name made relative and canonical; refuses absolute and `..` names."""
    if raw.startswith("/") or "\\" in raw or "\x00" in raw:
        raise InvalidArgument(f"load: archive member {shown!r}: absolute or odd path; refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"load: archive member {shown!r}: path has '..'; refused")
    return "/".join(parts)


def _link_target(name: str, member: tarfile.TarInfo) -> str:
    # Symlink targets are relative to the link's dir; hardlink targets to the root.
    target = member.linkname
    if member.issym():
        if target.startswith("/"):
            raise InvalidArgument(f"load: archive member {name}: link to an absolute path")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return _clean(target, f"{name} -> {member.linkname}")


def _read_document(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    if member.size > MAX_DOCUMENT_SIZE:
        raise InvalidArgument(
            f"load: archive member {name} is {member.size} bytes, over the "
            f"{MAX_DOCUMENT_SIZE}-byte limit for a document"
        )
    f = tar.extractfile(member)
    assert f is not None  # a regular member always has data
    with f:
        return f.read()


def _stage(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, ingest: Ingest) -> StagedBlob:
    expected: Digest | None = None
    algorithm = "sha256"
    blob = _BLOB_NAME.fullmatch(name)
    if blob:
        try:
            expected = Digest.parse(f"{blob[1]}:{blob[2]}")
        except InvalidArgument:
            raise InvalidArgument(
                f"load: archive member {name}: not named by a digest (blobs/sha256/<64 hex>)"
            ) from None
        algorithm = expected.algorithm
    f = tar.extractfile(member)
    assert f is not None
    with f:
        staged = ingest.stage(cast(BinaryIO, f), algorithm)
    if expected is not None and staged.digest != expected:
        raise InvalidArgument(f"load: blob {expected}: digest mismatch (got {staged.digest})")
    return staged


def sniff_compression(head: bytes) -> str:
    """The compression of a layer ("gzip", "zstd", or "" for plain tar) by its magic."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return ""


def diff_id(staged: StagedBlob, compression: str) -> Digest:
    """The sha256 of a staged layer's uncompressed stream (what a config's diff_ids name),
    decompressed as the rootfs builder does (vxn.adapters.layerstream)."""
    if not compression:
        return staged.digest
    # Hashing keeps no bytes, so the stream needs no size cap.
    with staged.path.open("rb") as f, LayerStream(f, str(staged.digest), sys.maxsize) as layer:
        try:
            layer.drain()
        except InvalidArgument as e:
            raise InvalidArgument(f"load: {e}") from None
        return layer.digest()
