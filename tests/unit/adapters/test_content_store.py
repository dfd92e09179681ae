"""The content store: staging, the commit protocol, rollback, locks, stale staging."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
from pathlib import Path

import pytest

from vxn.adapters import content as content_mod
from vxn.adapters.content import ContentStore, Transaction, os_error
from vxn.core.digest import Digest
from vxn.errors import InvalidArgument, NotFound, Unavailable


def digest_of(data: bytes) -> Digest:
    return Digest(algorithm="sha256", hex=hashlib.sha256(data).hexdigest())


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    s = ContentStore(tmp_path / "state" / "content")
    s.ensure()
    return s


def test_staging_hashes_counts_and_names_files_itself(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        staged = ingest.stage(io.BytesIO(b"hello world"))
        assert staged.digest == digest_of(b"hello world")
        assert staged.size == 11
        assert staged.head == b"hello wo"
        assert staged.path == ingest.dir / "1"
        assert staged.path.read_bytes() == b"hello world"
        assert sorted(os.listdir(store.ingest_dir)) == [ingest.dir.name, ingest.dir.name + ".lock"]
    assert os.listdir(store.ingest_dir) == []


def test_commit_publishes_verified_blobs_and_metadata(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        a, b = ingest.stage_bytes(b"aaa"), ingest.stage_bytes(b"bbbb")

        def body(tx: Transaction) -> str:
            tx.add_blobs([(a, a.digest, 3), (b, b.digest, 4)])
            tx.write_metadata(b'{"x":1}')
            return "done"

        assert store.transaction("load", body) == "done"
    assert store.blob_path(a.digest).read_bytes() == b"aaa"
    assert store.blob_path(b.digest).read_bytes() == b"bbbb"
    assert store.read_metadata() == b'{"x":1}'
    assert sorted(map(str, store.blobs())) == sorted([str(a.digest), str(b.digest)])


def test_commit_skips_blobs_already_present(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        first = ingest.stage_bytes(b"same")
        store.transaction("load", lambda tx: tx.add_blobs([(first, first.digest, 4)]))
    inode = store.blob_path(first.digest).stat().st_ino
    with store.ingest("load") as ingest:
        again = ingest.stage_bytes(b"same")
        tx_added: list[Path] = []

        def body(tx: Transaction) -> None:
            tx.add_blobs([(again, again.digest, 4)])
            tx_added.extend(tx.added)

        store.transaction("load", body)
    assert tx_added == []
    assert store.blob_path(first.digest).stat().st_ino == inode


@pytest.mark.parametrize(("want_digest", "want_size"), [("other", 3), ("same", 4)])
def test_commit_refuses_a_blob_that_differs_from_its_descriptor(
    store: ContentStore, want_digest: str, want_size: int
) -> None:
    with store.ingest("load") as ingest:
        staged = ingest.stage_bytes(b"abc")
        expected = digest_of(b"xyz") if want_digest == "other" else staged.digest
        with pytest.raises(InvalidArgument) as e:
            store.transaction("load", lambda tx: tx.add_blobs([(staged, expected, want_size)]))
    assert str(e.value) == (
        f"load: blob {expected}: staged {staged.digest} (3 bytes), expected {want_size} bytes"
    )
    assert store.blobs() == []


def test_failed_commit_removes_only_the_blobs_it_added(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        old = ingest.stage_bytes(b"old")
        store.transaction("load", lambda tx: tx.add_blobs([(old, old.digest, 3)]))
        store.transaction("load", lambda tx: tx.write_metadata(b"before"))
    with store.ingest("load") as ingest:
        old2, new = ingest.stage_bytes(b"old"), ingest.stage_bytes(b"new")

        def body(tx: Transaction) -> None:
            tx.add_blobs([(old2, old2.digest, 3), (new, new.digest, 3)])
            assert store.has_blob(new.digest)
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            store.transaction("load", body)
    assert [str(d) for d in store.blobs()] == [str(old.digest)]
    assert store.read_metadata() == b"before"


def test_a_failure_after_the_metadata_write_keeps_the_blobs(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        blob = ingest.stage_bytes(b"kept")

        def body(tx: Transaction) -> None:
            tx.add_blobs([(blob, blob.digest, 4)])
            tx.write_metadata(b"names it")
            raise RuntimeError("late")

        with pytest.raises(RuntimeError):
            store.transaction("load", body)
    assert store.has_blob(blob.digest)


def test_delete_blobs_counts_freed_bytes_and_ignores_missing(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        blob = ingest.stage_bytes(b"12345")
        store.transaction("load", lambda tx: tx.add_blobs([(blob, blob.digest, 5)]))
    freed = store.transaction("rmi", lambda tx: tx.delete_blobs([blob.digest, digest_of(b"x")]))
    assert freed == 5
    assert not store.has_blob(blob.digest)


def test_exclusive_lock_excludes_others_and_shared_locks_share(store: ContentStore) -> None:
    def try_lock(kind: int) -> bool:
        fd = os.open(store.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with store.locked(exclusive=True):
        assert not try_lock(fcntl.LOCK_SH)
    with store.locked(exclusive=False):
        assert try_lock(fcntl.LOCK_SH)
        assert not try_lock(fcntl.LOCK_EX)
    assert try_lock(fcntl.LOCK_EX)


def test_prune_staging_removes_only_dead_staging(store: ContentStore) -> None:
    stale = store.ingest_dir / "deadbeef"
    stale.mkdir()
    (stale / "1").write_bytes(b"x" * 100)
    (store.ingest_dir / "deadbeef.lock").write_bytes(b"")  # nobody holds it
    orphan = store.ingest_dir / "0000"  # a dir whose lock is gone
    orphan.mkdir()
    (orphan / "1").write_bytes(b"y" * 10)
    tmp = store.root / ".images.json.tmp999"
    tmp.write_bytes(b"zz")
    with store.ingest("load") as live:
        live.stage_bytes(b"live data")
        assert store.prune_staging() == 112
        assert sorted(os.listdir(store.ingest_dir)) == [live.dir.name, live.dir.name + ".lock"]
    assert not tmp.exists()


def test_new_staging_retries_when_a_pruner_took_its_lock_file(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_flock = fcntl.flock
    calls: list[int] = []

    def racing_flock(fd: int, op: int) -> None:
        if not calls:  # a pruner unlinks the fresh lock file before we lock it
            path = next(p for p in store.ingest_dir.iterdir() if p.name.endswith(".lock"))
            path.unlink()
        calls.append(op)
        real_flock(fd, op)

    monkeypatch.setattr(content_mod.fcntl, "flock", racing_flock)
    with store.ingest("load") as ingest:
        assert len(calls) == 2
        assert (ingest.dir.parent / (ingest.dir.name + ".lock")).exists()


def test_blob_paths_are_built_from_valid_digests_only(store: ContentStore) -> None:
    bad = Digest(algorithm="sha256", hex="../../../etc/passwd")
    with pytest.raises(InvalidArgument, match="invalid digest"):
        store.blob_path(bad)


def test_reading_missing_and_oversize_blobs(store: ContentStore) -> None:
    missing = digest_of(b"nope")
    with pytest.raises(NotFound) as e:
        store.open_blob(missing)
    assert str(e.value) == f"blob {missing}: not in the content store; load the image again"
    with store.ingest("load") as ingest:
        blob = ingest.stage_bytes(b"0123456789")
        store.transaction("load", lambda tx: tx.add_blobs([(blob, blob.digest, 10)]))
    assert store.read_blob(blob.digest, 10) == b"0123456789"
    with pytest.raises(InvalidArgument) as e2:
        store.read_blob(blob.digest, 9)
    assert str(e2.value) == f"blob {blob.digest}: over the 9-byte limit for a document"


def test_os_errors_are_translated_once(tmp_path: Path) -> None:
    full = os_error("load", tmp_path, OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, Unavailable)
    assert str(full) == (
        f"load: no space left on device in {tmp_path}; free space or move VXN_STATE_DIR"
    )
    denied = os_error("tag x", tmp_path, PermissionError(errno.EACCES, "Permission denied", "/p"))
    assert str(denied) == f"tag x: Permission denied (/p); check {tmp_path} and its permissions"


def test_a_full_disk_while_staging_is_unavailable(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(self: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(content_mod.BlobWriter, "write", no_space)
    with store.ingest("load") as ingest, pytest.raises(Unavailable) as e:
        ingest.stage(io.BytesIO(b"data"))
    assert str(e.value).startswith("load: no space left on device in ")


def test_read_errors_of_the_source_are_not_disk_errors(store: ContentStore) -> None:
    class Broken(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

    with store.ingest("load") as ingest, pytest.raises(OSError, match="Input/output"):
        ingest.stage(Broken())  # type: ignore[arg-type]


def test_size_counts_every_file(store: ContentStore) -> None:
    with store.ingest("load") as ingest:
        blob = ingest.stage_bytes(b"x" * 1000)
        store.transaction("load", lambda tx: tx.add_blobs([(blob, blob.digest, 1000)]))
    store.transaction("load", lambda tx: tx.write_metadata(b"12"))
    assert store.size() == 1002  # the lock file is empty
