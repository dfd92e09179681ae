"""The content store: verified blobs, staging areas and image metadata on disk.

    <state_dir>/content/
        lock                    flock: exclusive while blobs or metadata change
        blobs/<alg>/<hex>       every blob, shared by all images; only verified data
        ingest/<token>.lock     held (flock) by the process that owns ingest/<token>/
        ingest/<token>/         staging: files named by us, hashed while written
        images.json             metadata (the catalog), written atomically

A blob becomes visible only in `Transaction.add_blobs`, under the exclusive lock, by
renaming a staged file whose size and digest were computed while it was written and
checked against what the caller expected. A process killed at any moment leaves at
worst a staging dir (found by `prune_staging`: its flock is free) or a verified blob
no image names (found by the caller's garbage collection). OSErrors become vxn
errors here, once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from vxn.adapters.statedir import atomic_write, fsync_dir
from vxn.core.digest import ALGORITHMS, Digest
from vxn.errors import InvalidArgument, NotFound, Unavailable, VxnError

CHUNK = 1024 * 1024
_T = TypeVar("_T")


def os_error(op: str, state_dir: Path, e: OSError) -> VxnError:
    """The one translation of a filesystem error into a vxn error."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(
            f"{op}: no space left on device in {state_dir}; free space or move VXN_STATE_DIR"
        )
    where = f" ({e.filename})" if e.filename else ""
    return Unavailable(f"{op}: {e.strerror or e}{where}; check {state_dir} and its permissions")


@contextlib.contextmanager
def translated(op: str, state_dir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise os_error(op, state_dir, e) from e


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedBlob:
    """A file in a staging dir, with what was measured while it was written."""

    path: Path
    digest: Digest
    size: int
    head: bytes  # the first bytes, for sniffing compression


class BlobWriter:
    """Writes one staged file, hashing and counting as the bytes go by."""

    def __init__(self, path: Path, algorithm: str) -> None:
        self.path = path
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self._size = 0
        self._head = b""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        if len(self._head) < 8:
            self._head = (self._head + data[:8])[:8]
        self._hash.update(data)
        self._size += len(data)
        self._file.write(data)

    def finish(self) -> StagedBlob:
        """Flush to disk (fsync here, outside the store lock) and describe the file."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = Digest(algorithm=self._algorithm, hex=self._hash.hexdigest())
        return StagedBlob(path=self.path, digest=digest, size=self._size, head=self._head)

    def close(self) -> None:
        # Only reached on failure (finish closes first): the file is thrown away, and
        # flushing it again would only repeat the error being raised.
        with contextlib.suppress(OSError):
            self._file.close()


class Ingest:
    """One staging dir, flocked for its whole life; removed on close."""

    def __init__(self, store: ContentStore, op: str) -> None:
        self.store = store
        self.op = op
        self._names = itertools.count(1)  # next() is atomic: pulls stage from many threads
        self._lock_fd, self.dir = store._new_staging()

    def writer(self, algorithm: str = "sha256") -> BlobWriter:
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"{self.op}: digest algorithm {algorithm!r} is not supported")
        with self.translated():
            return BlobWriter(self.dir / str(next(self._names)), algorithm)

    def stage(self, source: BinaryIO, algorithm: str = "sha256") -> StagedBlob:
        """Copy a stream into a new staged file."""
        w = self.writer(algorithm)
        try:
            # Only the writes are ours to translate; read errors belong to the caller.
            while chunk := source.read(CHUNK):
                with self.translated():
                    w.write(chunk)
            with self.translated():
                return w.finish()
        finally:
            w.close()

    def stage_bytes(self, data: bytes) -> StagedBlob:
        w = self.writer()
        try:
            with self.translated():
                w.write(data)
                return w.finish()
        finally:
            w.close()

    def translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(self.op, self.store.state_dir)

    def close(self) -> None:
        # Remove the files, then the lock: a dir without a live lock is stale to prune.
        shutil.rmtree(self.dir, ignore_errors=True)
        lock_path = self.dir.with_name(self.dir.name + ".lock")
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(self._lock_fd)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class Transaction:
    """Changes made under the exclusive store lock; see ContentStore.transaction."""

    store: ContentStore
    op: str
    added: list[Path] = field(default_factory=list)
    committed: bool = False

    def read_metadata(self) -> bytes | None:
        return self.store.read_metadata()

    def add_blobs(self, blobs: Sequence[tuple[StagedBlob, Digest, int]]) -> None:
        """Publish staged blobs, each checked against (expected digest, expected size)."""
        for staged, digest, size in blobs:
            if staged.digest != digest or staged.size != size:
                raise InvalidArgument(
                    f"{self.op}: blob {digest}: staged {staged.digest} ({staged.size} bytes), "
                    f"expected {size} bytes"
                )
        for staged, digest, _ in blobs:
            target = self.store.blob_path(digest)
            if target.exists() or target in self.added:
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.rename(staged.path, target)
            self.added.append(target)
        for parent in {p.parent for p in self.added}:
            fsync_dir(parent)

    def write_metadata(self, data: bytes) -> None:
        atomic_write(self.store.metadata_path, data, mode=0o600)
        self.committed = True

    def delete_blobs(self, digests: Sequence[Digest]) -> int:
        """Remove blobs (after the metadata that stops naming them was written)."""
        freed = 0
        for digest in digests:
            path = self.store.blob_path(digest)
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
        return freed

    def rollback(self) -> None:
        for path in self.added:
            with contextlib.suppress(OSError):
                path.unlink()
        for parent in {p.parent for p in self.added}:
            with contextlib.suppress(OSError):
                fsync_dir(parent)


class ContentStore:
    METADATA = "images.json"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root.parent
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"
        self.metadata_path = root / self.METADATA
        self.lock_path = root / "lock"

    def ensure(self, op: str = "content store") -> None:
        with translated(op, self.state_dir):
            for path in (self.root, self.blobs_dir, self.ingest_dir):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- locking ---------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, *, exclusive: bool, op: str = "content store") -> Iterator[None]:
        """The store-wide flock: shared for consistent reads, exclusive for changes."""
        with translated(op, self.state_dir):
            self.ensure(op)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def transaction(self, op: str, body: Callable[[Transaction], _T]) -> _T:
        """Run `body` under the exclusive lock; if it fails before the metadata is
        written, every blob it added is removed, so the store is as it was."""
        with self.locked(exclusive=True, op=op):
            tx = Transaction(self, op)
            try:
                with translated(op, self.state_dir):
                    return body(tx)
            except BaseException:
                if not tx.committed:
                    tx.rollback()
                raise

    # --- staging ---------------------------------------------------------------------

    def ingest(self, op: str) -> Ingest:
        self.ensure(op)
        with translated(op, self.state_dir):
            return Ingest(self, op)

    def _new_staging(self) -> tuple[int, Path]:
        # The lock file comes first and is locked before the dir exists; a pruner
        # that unlinked it just before we locked it leaves st_nlink == 0: try again.
        while True:
            token = secrets.token_hex(8)
            lock_path = self.ingest_dir / f"{token}.lock"
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(lock_path, flags, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)
                continue
            try:
                path = self.ingest_dir / token
                path.mkdir(mode=0o700)
            except BaseException:
                lock_path.unlink(missing_ok=True)
                os.close(fd)
                raise
            return fd, path

    def prune_staging(self) -> int:
        """Remove staging dirs whose owner is gone, and metadata temp files left by a
        killed writer; returns the bytes freed. Call under the exclusive lock."""
        freed = 0
        with translated("prune", self.state_dir):
            names = sorted(os.listdir(self.ingest_dir)) if self.ingest_dir.exists() else []
            for token in sorted({n.removesuffix(".lock") for n in names}):
                freed += self._prune_one(token)
            # Every metadata writer holds the lock we hold, so any temp file is stale.
            for tmp in self.root.glob(f".{self.METADATA}.tmp*"):
                freed += tmp.stat().st_size
                tmp.unlink()
        return freed

    def _prune_one(self, token: str) -> int:
        path, lock_path = self.ingest_dir / token, self.ingest_dir / f"{token}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            # A dir is made only after its lock: no lock means its owner is gone.
            return _remove_tree(path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live process owns it
            if os.fstat(fd).st_nlink == 0:
                return 0  # another pruner got there first
            freed = _remove_tree(path)
            lock_path.unlink(missing_ok=True)
            return freed
        finally:
            os.close(fd)

    # --- reading ---------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        # Digest values are validated by construction; re-check: this builds a path.
        checked = Digest.parse(str(digest))
        return self.blobs_dir / checked.algorithm / checked.hex

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: Digest) -> BinaryIO:
        """The caller closes it."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(
                f"blob {digest}: not in the content store; load the image again"
            ) from None
        except OSError as e:
            raise os_error(f"read blob {digest}", self.state_dir, e) from e

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """A small document; refuses blobs over `limit` bytes."""
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"blob {digest}: over the {limit}-byte limit for a document")
        return data

    def blobs(self) -> list[Digest]:
        found = []
        with translated("content store", self.state_dir):
            for alg in ALGORITHMS:
                folder = self.blobs_dir / alg
                names = os.listdir(folder) if folder.is_dir() else []
                for name in names:
                    with contextlib.suppress(InvalidArgument):  # strays are not blobs
                        found.append(Digest.parse(f"{alg}:{name}"))
        return found

    def read_metadata(self) -> bytes | None:
        try:
            return self.metadata_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise os_error("content store", self.state_dir, e) from e

    def size(self) -> int:
        """Bytes of every file under the content dir."""
        with translated("content store", self.state_dir):
            return _tree_size(self.root)


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove_tree(path: Path) -> int:
    freed = _tree_size(path) if path.is_dir() else 0
    shutil.rmtree(path, ignore_errors=True)
    return freed
