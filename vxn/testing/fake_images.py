"""An in-memory ImageService with the real one's interface and Docker's behaviour.

For tests of the API and the CLI. It knows no archive formats: `load` reads the
whole stream (in a worker thread, as the engine does), names the image by its
sha256, and records what it read.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import io
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.engine.images import ImageSummary, LoadedImage, PruneReport
from vxn.engine.pull import ProgressFn, PullEvent, PullOptions, PullResult
from vxn.engine.rootfs import RootfsInfo, UnpackInfo
from vxn.errors import FailedPrecondition, InvalidArgument, NotFound


@dataclass(slots=True, kw_only=True)
class FakeImage:
    id: str  # "sha256:..."
    manifest: str
    created: str | None = None
    size: int = 0
    names: list[str] = field(default_factory=list)  # full references, "docker.io/library/a:1"


def normalize(ref: str) -> str:
    """Docker's normalization, enough for tests: `alpine` -> `docker.io/library/alpine:latest`."""
    first, sep, _ = ref.partition("/")
    if not sep:
        ref = f"docker.io/library/{ref}"
    elif "." not in first and ":" not in first and first != "localhost":
        ref = f"docker.io/{ref}"
    if "@" not in ref and ":" not in ref.rpartition("/")[2]:
        ref += ":latest"
    return ref


def familiar(ref: str) -> tuple[str, str]:
    """`docker.io/library/alpine:3` -> (`alpine`, `3`)."""
    name, _, tag = ref.rpartition(":")
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name.removeprefix(prefix), tag
    return name, tag


class FakeImageService:
    def __init__(self, images: list[FakeImage] | None = None) -> None:
        self.images: list[FakeImage] = list(images or [])
        self.loads: list[tuple[bytes, str | None, Platform | None]] = []  # what load() read
        # What pull() finds, by full reference; and what it was asked.
        self.remote: dict[str, FakeImage] = {}
        self.pulls: list[tuple[str, Platform | None, PullOptions | None]] = []
        self.unpacked: list[tuple[str, Path, int]] = []  # what unpack() was asked, by whom

    async def load(
        self, stream: BinaryIO, *, name: str | None = None, platform: Platform | None = None
    ) -> builtins.list[LoadedImage]:
        data = await asyncio.to_thread(stream.read)
        self.loads.append((data, name, platform))
        if not data:
            raise InvalidArgument(
                "load: empty archive: pass an OCI layout, oci-archive or docker-archive"
            )
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        image = next((i for i in self.images if i.id == digest), None)
        if image is None:
            image = FakeImage(id=digest, manifest=digest, size=len(data))
            self.images.append(image)
        if name is None:
            return [LoadedImage(reference=None, id=digest)]
        self._name(image, normalize(name))
        return [LoadedImage(reference=normalize(name), id=digest)]

    async def list(self) -> builtins.list[ImageSummary]:
        return [row for image in self.images for row in _rows(image)]

    async def inspect(self, ref_or_id: str) -> dict[str, Any]:
        image = self._find(ref_or_id)
        return {
            "Id": image.id,
            "RepoTags": [":".join(familiar(n)) for n in image.names],
            "RepoDigests": [f"{familiar(n)[0]}@{image.manifest}" for n in image.names],
            "Created": image.created,
            "Size": image.size,
            "Os": "linux",
            "Architecture": "amd64",
        }

    async def tag(self, source: str, target: str) -> None:
        self._name(self._find(source), normalize(target))

    async def remove(self, ref_or_id: str, *, force: bool = False) -> builtins.list[str]:
        image = self._find(ref_or_id)
        by_name = normalize(ref_or_id) in image.names
        if not by_name and len(image.names) > 1 and not force:
            raise FailedPrecondition(
                f"image {ref_or_id}: referenced in multiple repositories; "
                "remove it by name, or use --force"
            )
        untag = [normalize(ref_or_id)] if by_name else list(image.names)
        lines = [f"Untagged: {':'.join(familiar(n))}" for n in untag]
        image.names = [n for n in image.names if n not in untag]
        if not image.names:
            self.images.remove(image)
            lines.append(f"Deleted: {image.id}")
        return lines

    async def prune(self) -> PruneReport:
        dangling = [i for i in self.images if not i.names]
        self.images = [i for i in self.images if i.names]
        return PruneReport(
            deleted=[i.id for i in dangling], reclaimed=sum(i.size for i in dangling)
        )

    async def store_size(self) -> int:
        return sum(i.size for i in self.images)

    async def pull(
        self,
        reference: str,
        *,
        platform: Platform | None = None,
        options: PullOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> PullResult:
        self.pulls.append((reference, platform, options))
        name = normalize(reference)
        remote = self.remote.get(name)
        if remote is None:
            raise NotFound(f"pull {name}: manifest: 404 MANIFEST_UNKNOWN: manifest unknown")
        short = remote.id.partition(":")[2][:12]
        for current in (remote.size // 2, remote.size):
            if progress is not None:
                progress(
                    PullEvent(id=short, status="Downloading", current=current, total=remote.size)
                )
        image = next((i for i in self.images if i.id == remote.id), None)
        if image is None:
            image = FakeImage(id=remote.id, manifest=remote.manifest, size=remote.size)
            self.images.append(image)
        up_to_date = name in image.names
        self._name(image, name)
        digest = Digest.parse(image.manifest)
        return PullResult(
            reference=name,
            digest=digest,
            manifest=digest,
            id=Digest.parse(image.id),
            up_to_date=up_to_date,
        )

    async def rootfs(self, ref_or_id: str) -> RootfsInfo:
        image = self._find(ref_or_id)
        path = Path(f"/fake/rootfs/{image.manifest.replace(':', '-')}.ext4")
        return RootfsInfo(path=path, built=False, size=image.size)

    async def unpack(self, ref_or_id: str, dest: Path, *, uid: int = 0) -> UnpackInfo:
        self._find(ref_or_id)
        self.unpacked.append((ref_or_id, dest, uid))
        return UnpackInfo(dir=dest, entries=1)

    def _find(self, ref_or_id: str) -> FakeImage:
        for image in self.images:
            hex_ = image.id.partition(":")[2]
            if normalize(ref_or_id) in image.names or ref_or_id in (image.id, hex_[:12], hex_):
                return image
        raise NotFound(f"image {ref_or_id}: no such image; see `vxn images`")

    def _name(self, image: FakeImage, ref: str) -> None:
        for other in self.images:
            if ref in other.names:
                other.names.remove(ref)
        image.names.append(ref)


def _rows(image: FakeImage) -> builtins.list[ImageSummary]:
    names = [familiar(n) for n in image.names] or [("<none>", "<none>")]
    return [
        ImageSummary(
            repository=repo,
            tag=tag,
            id=image.id,
            manifest=image.manifest,
            created=image.created,
            size=image.size,
        )
        for repo, tag in names
    ]


def tar_members(data: bytes) -> list[str]:
    """The member names of a tar a test sent through `vxn load`."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getnames()
