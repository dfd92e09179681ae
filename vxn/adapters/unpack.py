"""Flatten an image's layers into a new directory: read each layer once, plan, apply.

Each layer is streamed from the content store (no temp tarball), decompressed and
hashed by vxn.adapters.layerstream, split into entries by vxn.adapters.tarstream,
planned by vxn.core.flatten and applied by vxn.adapters.tree. At the end of each
layer the uncompressed digest must equal the config's diff_id, so a layer whose
compressed blob is intact but whose content is not what the config promised fails
the whole flatten. Limits (bytes, entries, one file's size) stop hostile layers
early; every failure names the layer digest and, where there is one, the entry.
The caller owns `dest`'s cleanup: it is only ever a fresh staging directory.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vxn.adapters.layerstream import LayerStream
from vxn.adapters.tarstream import TarReader
from vxn.adapters.tree import Tree
from vxn.core.digest import Digest
from vxn.core.flatten import (
    DevicePolicy,
    Entry,
    Kind,
    MakeDir,
    MakeNode,
    Planner,
    Symlink,
    WriteFile,
)
from vxn.core.tarformat import Member
from vxn.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
    VxnError,
)

XATTR_PREFIX = "SCHILY.xattr."
BLOCK = 4096
_KINDS = {
    b"0": Kind.FILE,
    b"7": Kind.FILE,  # contiguous: a regular file everywhere that matters
    b"5": Kind.DIR,
    b"2": Kind.SYMLINK,
    b"1": Kind.HARDLINK,
    b"3": Kind.CHAR,
    b"4": Kind.BLOCK,
    b"6": Kind.FIFO,
}
# The image's own data is never the cause of these: report them as the host's.
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE})
_CREATES = (WriteFile, MakeDir, Symlink, MakeNode)  # ops that make an inode
_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EOPNOTSUPP, errno.ENOTSUP})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on what an image may make; defaults fit any real image."""

    max_bytes: int = 64 << 30  # uncompressed, all layers together
    max_entries: int = 2_000_000  # tar entries, all layers together
    max_file_size: int = 16 << 30


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    digest: Digest  # the compressed blob, for messages
    diff_id: Digest
    blob: BinaryIO  # opened by the caller (so a concurrent rmi cannot pull it away)


@dataclass(slots=True)
class Stats:
    """What the tree holds, over-estimated (removals are not subtracted): sizes the disk."""

    entries: int = 0
    inodes: int = 0
    data_bytes: int = 0  # file data rounded up to whole blocks
    stream_bytes: int = 0


def flatten(
    layers: Sequence[Layer],
    dest: Path,
    *,
    devices: DevicePolicy = DevicePolicy.CREATE,
    limits: Limits | None = None,
    parent_fd: int | None = None,
) -> Stats:
    """Create `dest` (it must not exist) and flatten `layers` into it, bottom first.

    With `parent_fd`, `dest` is made in that directory (an fd the caller checked), by name.
    """
    if os.geteuid() != 0:
        raise FailedPrecondition(
            f"flatten into {dest}: needs root, to keep the image's owners and device nodes; "
            "run vxnd as root"
        )
    limits = limits or Limits()
    planner = Planner(devices)
    stats = Stats()
    name = dest.name if parent_fd is not None else dest
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        raise AlreadyExists(f"flatten: {dest} exists; give a new directory") from None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root_fd = os.open(name, flags, dir_fd=parent_fd)
    tree = Tree(root_fd)
    try:
        os.fchown(root_fd, 0, 0)
        os.fchmod(root_fd, 0o755)  # mkdir's mode went through the umask
        for layer in layers:
            _apply_layer(layer, planner, tree, stats, limits)
        for op in planner.finish():
            tree.apply(op, _no_data)
    except OSError as e:
        raise _host_error(dest, e) from e
    finally:
        tree.close()
        os.close(root_fd)
    return stats


def _apply_layer(layer: Layer, planner: Planner, tree: Tree, stats: Stats, limits: Limits) -> None:
    label = str(layer.digest)
    planner.begin_layer(label)
    budget = limits.max_bytes - stats.stream_bytes
    with LayerStream(layer.blob, label, budget) as stream:
        tar = TarReader(stream.chunk)
        while (member := _next(tar, label)) is not None:
            stats.entries += 1
            if stats.entries > limits.max_entries:
                raise InvalidArgument(
                    f"layer {label}: over {limits.max_entries} entries in the image; "
                    "refused (raise the entry limit if the image is genuine)"
                )
            _apply_entry(_entry(member, label, limits), label, planner, tree, tar, stats)
        stream.drain()  # the diff_id covers the end-of-archive padding too
        stats.stream_bytes += stream.size
        got = stream.digest()
    if got != layer.diff_id:
        raise InvalidArgument(
            f"layer {label}: uncompressed content is {got}, but the image config says "
            f"{layer.diff_id}; the image is corrupt or was tampered with"
        )


def _next(tar: TarReader, label: str) -> Member | None:
    try:
        return tar.next()
    except InvalidArgument as e:
        if str(e).startswith("layer "):
            raise  # the stream's own error already names the layer
        raise InvalidArgument(f"layer {label}: {e}") from None


def _apply_entry(
    entry: Entry, label: str, planner: Planner, tree: Tree, tar: TarReader, stats: Stats
) -> None:
    for op in planner.plan(entry):
        try:
            tree.apply(op, tar.read)
        except (OSError, EOFError) as e:
            raise _entry_error(label, entry.name, e) from e
        except InvalidArgument as e:  # the tar ended inside this entry's data
            if str(e).startswith("layer "):
                raise
            raise InvalidArgument(f"layer {label}: entry {entry.name!r}: {e}") from None
        if isinstance(op, WriteFile):
            stats.data_bytes += -(-op.size // BLOCK) * BLOCK
        if isinstance(op, _CREATES):
            stats.inodes += 1


def _entry(member: Member, label: str, limits: Limits) -> Entry:
    h = member.header
    kind = _KINDS.get(h.type)
    if kind is Kind.FILE and h.name.endswith("/"):
        kind = Kind.DIR  # a pre-POSIX directory
    where = f"layer {label}: entry {h.name!r}"
    if kind is None:
        raise InvalidArgument(f"{where} is of tar type {h.type!r}; refused")
    if kind is Kind.FILE and h.size > limits.max_file_size:
        raise InvalidArgument(
            f"{where} is {h.size} bytes, over the {limits.max_file_size}-byte file limit"
        )
    xattrs = {
        key.removeprefix(XATTR_PREFIX): value
        for key, value in member.pax.items()
        if key.startswith(XATTR_PREFIX)
    }
    return Entry(
        name=h.name,
        kind=kind,
        mode=h.mode,
        uid=h.uid,
        gid=h.gid,
        mtime=h.mtime,
        size=h.size if kind is Kind.FILE else 0,
        link=h.link,
        major=h.major,
        minor=h.minor,
        xattrs=xattrs,
    )


def hit_host_limit(e: VxnError) -> bool:
    """Whether a flatten failed on the filesystem's limits (full, or no xattrs of a kind),
    not on the image: then it may succeed elsewhere."""
    cause = e.__cause__
    return isinstance(cause, OSError) and cause.errno in _LIMIT_ERRNOS


def _no_data(n: int) -> bytes:
    return b""


def _entry_error(label: str, name: str, e: BaseException) -> VxnError:
    if isinstance(e, OSError) and e.errno in _HOST_ERRNOS:
        return Unavailable(f"layer {label}: entry {name!r}: {e.strerror}; free space or retry")
    reason = e.strerror if isinstance(e, OSError) else str(e)
    return InvalidArgument(f"layer {label}: entry {name!r}: cannot be applied ({reason})")


def _host_error(dest: Path, e: OSError) -> VxnError:
    if e.errno in _HOST_ERRNOS:
        return Unavailable(f"flatten into {dest}: {e.strerror}; free space in {dest.parent}")
    return InvalidArgument(f"flatten into {dest}: {e.strerror or e}")
