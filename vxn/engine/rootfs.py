"""Root filesystems: one read-only base disk per image, built once, shared by all.

    <state_dir>/rootfs/
        <key>.ext4      a published disk (0444); <key> is vxn.core.rootfs.Key
        <key>.lock      flock: held by the process building <key>
        <key>.staging/  0700: the flattened tree and the disk being built
    /dev/shm/vxn-rootfs-<key>/   0700: the tree instead, on tmpfs, when it fits there

A request for a built disk costs one stat. A new one is built under its key's lock,
so concurrent requests (threads of one vxnd, or vxnd and vxn-oci-runtime) build it
once: the others wait and find it published. The staging dir is removed once the
disk is built or the build fails; one left by a killed builder is found by the next
holder of the lock, or by prune. The tree goes to tmpfs when the image fits there with
room to spare (a tree that lives for one mkfs need not go through the host disk's
journal); if tmpfs fills up or lacks an xattr kind, the build starts again on disk.
The layer files are opened under the content
store's shared lock (an rmi cannot pull them away mid-read), and the disk is
published under it again, only if the image still exists, by an atomic rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vxn.adapters.content import ContentStore, os_error
from vxn.adapters.diskimage import build_ext4
from vxn.adapters.statedir import fsync_dir
from vxn.adapters.unpack import Layer, Limits, Stats, flatten, hit_host_limit
from vxn.core.catalog import Catalog, ImageRecord
from vxn.core.digest import Digest
from vxn.core.flatten import DevicePolicy
from vxn.core.manifest import MAX_DOCUMENT_SIZE, Manifest, parse_config, parse_document
from vxn.core.rootfs import SUFFIX, Geometry, Key, ext4_geometry
from vxn.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    VxnError,
)

SCRATCH = Path("/dev/shm")  # tmpfs on every Linux; None in RootfsCache turns it off
SCRATCH_PREFIX = "vxn-rootfs-"
EXPANSION = 4  # uncompressed bytes planned per byte of image, to decide if it fits


@dataclass(frozen=True, slots=True, kw_only=True)
class RootfsInfo:
    path: Path
    built: bool  # by this request (False: it was in the cache)
    size: int  # bytes the disk takes on the host

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "built": self.built, "size": self.size}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackInfo:
    dir: Path
    entries: int


class RootfsCache:
    def __init__(
        self,
        root: Path,
        store: ContentStore,
        *,
        devices: DevicePolicy = DevicePolicy.CREATE,
        limits: Limits | None = None,
        scratch: Path | None = SCRATCH,
    ) -> None:
        self.root = root
        self.store = store
        self.devices = devices
        self.limits = limits or Limits()
        self.scratch = scratch if scratch is not None and scratch.is_dir() else None

    def path_of(self, manifest: Digest) -> Path:
        return self.root / f"{Key(manifest=manifest, devices=self.devices)}{SUFFIX}"

    def ensure(self, record: ImageRecord) -> RootfsInfo:
        """The image's disk, built first if it is not in the cache."""
        final = self.path_of(record.manifest)
        if final.exists():
            return self._info(final, False)
        key = final.name.removesuffix(SUFFIX)
        with self._translated(f"rootfs {record.manifest}"), self._key_lock(key):
            if final.exists():  # another builder finished while we waited
                return self._info(final, False)
            staging = self.root / f"{key}.staging"
            self._remove_staging(key)  # a killed builder's; we hold the lock
            try:
                os.mkdir(staging, 0o700)
                scratch = self._scratch(key, record)
                tree, stats = self._build_tree(record, staging, scratch)
                disk = staging / "disk"
                build_ext4(tree, disk, _geometry(stats), label=key)
                self._publish(record, disk, final)
            finally:
                self._remove_staging(key)
        return self._info(final, True)

    def unpack(self, record: ImageRecord, dest: Path, *, uid: int = 0) -> UnpackInfo:
        """Flatten into a new directory `dest`; on failure nothing is left there.

        We run as root for a client that may not be: unless `uid` (the client's) is 0,
        the parent must be a directory that `uid` owns, checked on the fd we then use.
        """
        if not dest.is_absolute():
            raise InvalidArgument(f"unpack: {dest} must be an absolute path")
        with self._translated(f"unpack {dest}"), _open_dir(dest.parent) as parent:
            owner = os.fstat(parent).st_uid
            if uid != 0 and owner != uid:
                raise FailedPrecondition(
                    f"unpack: {dest.parent} belongs to uid {owner}, not to you (uid {uid}); "
                    "unpack into a directory you own"
                )
            try:
                stats = self._flatten(record, dest, parent)
            except AlreadyExists:  # someone else's directory: never ours to remove
                raise AlreadyExists(f"unpack: {dest} exists; give a new directory") from None
            except BaseException:
                with contextlib.suppress(OSError):
                    shutil.rmtree(dest.name, dir_fd=parent)
                raise
        return UnpackInfo(dir=dest, entries=stats.entries)

    def state(self, manifest: Digest) -> dict[str, Any]:
        """What `vxn image inspect` shows under "Rootfs"."""
        path = self.path_of(manifest)
        try:
            size = path.stat().st_blocks * 512
        except FileNotFoundError:
            return {"Built": False, "Path": None, "Size": None, "Key": path.name}
        return {"Built": True, "Path": str(path), "Size": size, "Key": path.name}

    def remove(self, manifests: Iterable[Digest]) -> int:
        """Drop every disk (any version or policy) of these images; returns bytes freed."""
        doomed = set(manifests)
        return self._sweep(lambda key: key.manifest in doomed)

    def prune(self, keep: Iterable[Digest]) -> int:
        """Drop disks of images not in `keep`, stale versions and abandoned staging."""
        kept = set(keep)
        return self._sweep(lambda key: key.manifest not in kept or not key.current)

    # --- building ------------------------------------------------------------------------

    def _scratch(self, key: str, record: ImageRecord) -> Path | None:
        """A 0700 dir on tmpfs for the tree, when the image fits there with room to spare:
        a tree that lives for one mkfs need not cost the host disk's journal a write per
        file (2-6x faster for small-file images)."""
        if self.scratch is None:
            return None
        try:
            fs = os.statvfs(self.scratch)
            if record.size * EXPANSION > fs.f_bavail * fs.f_frsize // 2:
                return None
            path = self.scratch / f"{SCRATCH_PREFIX}{key}"
            os.mkdir(path, 0o700)  # a killed builder's was removed with its staging dir
        except OSError:
            return None  # no such fs, or someone else's name there: build on disk
        return path

    def _build_tree(
        self, record: ImageRecord, staging: Path, scratch: Path | None
    ) -> tuple[Path, Stats]:
        if scratch is not None:
            try:
                return scratch / "tree", self._flatten(record, scratch / "tree")
            except VxnError as e:
                if not hit_host_limit(e):
                    raise  # the image's fault: it would fail on disk too
                shutil.rmtree(scratch / "tree", ignore_errors=True)
        return staging / "tree", self._flatten(record, staging / "tree")

    def _flatten(self, record: ImageRecord, dest: Path, parent: int | None = None) -> Stats:
        with self._open_layers(record) as layers:
            return flatten(layers, dest, devices=self.devices, limits=self.limits, parent_fd=parent)

    @contextlib.contextmanager
    def _open_layers(self, record: ImageRecord) -> Iterator[list[Layer]]:
        layers: list[Layer] = []
        try:
            with self.store.locked(exclusive=False, op=f"rootfs {record.manifest}"):
                self._check_present(record)
                manifest, diff_ids = self._describe(record)
                for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
                    blob = self.store.open_blob(desc.digest)
                    layers.append(Layer(digest=desc.digest, diff_id=diff_id, blob=blob))
            yield layers
        finally:
            for layer in layers:
                layer.blob.close()

    def _describe(self, record: ImageRecord) -> tuple[Manifest, tuple[Digest, ...]]:
        manifest = parse_document(self.store.read_blob(record.manifest, MAX_DOCUMENT_SIZE))
        if not isinstance(manifest, Manifest):
            raise Internal(f"rootfs: {record.manifest} is not a manifest")
        config = parse_config(self.store.read_blob(record.config, MAX_DOCUMENT_SIZE))
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(
                f"image {record.manifest}: {len(manifest.layers)} layers but "
                f"{len(config.diff_ids)} diff_ids in its config; the image is malformed"
            )
        return manifest, config.diff_ids

    def _publish(self, record: ImageRecord, disk: Path, final: Path) -> None:
        # Under the store's shared lock, so an rmi (exclusive) is wholly before or after.
        with self.store.locked(exclusive=False, op=f"rootfs {record.manifest}"):
            self._check_present(record)
            os.rename(disk, final)
            fsync_dir(self.root)

    def _check_present(self, record: ImageRecord) -> None:
        catalog = Catalog.from_json(self.store.read_metadata())
        if record.manifest not in catalog.images:
            raise NotFound(f"image {record.manifest}: removed while its rootfs was being built")

    # --- housekeeping ----------------------------------------------------------------------

    def _sweep(self, doomed: Callable[[Key], bool]) -> int:
        freed = 0
        with self._translated("rootfs prune"):
            names = os.listdir(self.root) if self.root.is_dir() else []
            for name in sorted(names):
                stem, _, kind = name.rpartition(".")
                try:
                    key = Key.parse(stem)
                except InvalidArgument:
                    continue  # not ours
                if kind == "staging":
                    freed += self._remove_abandoned(stem)
                elif kind == SUFFIX[1:] and doomed(key):
                    freed += _unlink(self.root / name)
                if doomed(key):
                    self._remove_lock(stem)
        return freed

    def _remove_abandoned(self, key: str) -> int:
        with self._key_lock(key, wait=False) as held:
            return self._remove_staging(key) if held else 0  # else a live builder owns it

    def _remove_staging(self, key: str) -> int:
        """Under the key's lock: the staging dir and its scratch twin, if any."""
        freed = 0
        dirs = [self.root / f"{key}.staging"]
        if self.scratch is not None:
            dirs.append(self.scratch / f"{SCRATCH_PREFIX}{key}")
        for path in dirs:
            if path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.geteuid():
                freed += _tree_blocks(path)
                shutil.rmtree(path, ignore_errors=True)
        return freed

    def _remove_lock(self, key: str) -> None:
        lock = self.root / f"{key}.lock"
        if not lock.exists() or (self.root / f"{key}{SUFFIX}").exists():
            return
        with self._key_lock(key, wait=False) as held:
            if held:  # else a builder waits on it; its build will find the image gone
                lock.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _key_lock(self, key: str, *, wait: bool = True) -> Iterator[bool]:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _translated(self, op: str) -> Iterator[None]:
        try:
            yield
        except VxnError:
            raise
        except OSError as e:
            raise os_error(op, self.store.state_dir, e) from e

    def _info(self, path: Path, built: bool) -> RootfsInfo:
        size = path.stat().st_blocks * 512
        return RootfsInfo(path=path, built=built, size=size)


def _geometry(stats: Stats) -> Geometry:
    return ext4_geometry(stats.data_bytes, stats.inodes)


def _unlink(path: Path) -> int:
    try:
        size = path.stat().st_blocks * 512
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _tree_blocks(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@contextlib.contextmanager
def _open_dir(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"unpack: {path} is not a directory; create it first") from None
    try:
        yield fd
    finally:
        os.close(fd)
