"""The image catalog: serialisation, resolving names and ids, and the rmi/prune plans."""

from __future__ import annotations

import json

import pytest

from vxn.core.catalog import Catalog, ImageRecord, plan_prune, plan_remove, unreferenced
from vxn.core.digest import Digest
from vxn.errors import FailedPrecondition, Internal, InvalidArgument, NotFound


def d(c: str) -> Digest:
    return Digest(algorithm="sha256", hex=c * 64)


def record(m: str, c: str, *blobs: str, index: str | None = None) -> ImageRecord:
    return ImageRecord(
        manifest=d(m),
        config=d(c),
        index=d(index) if index else None,
        blobs=frozenset({d(m), d(c), *(d(b) for b in blobs)}),
        size=10,
        created="2024-01-01T00:00:00Z",
    )


A = record("a", "1", "7", "8")
B = record("b", "2", "7", "9")


def catalog() -> Catalog:
    return (
        Catalog()
        .with_image(A)
        .with_image(B)
        .with_ref("docker.io/library/alpine:latest", A.manifest)
        .with_ref("docker.io/library/alpine:3", A.manifest)
        .with_ref("example.com/b:1", B.manifest)
    )


def test_json_round_trips_and_an_absent_file_is_empty() -> None:
    assert Catalog.from_json(None) == Catalog()
    assert Catalog.from_json(catalog().to_json()) == catalog()


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (b"[", "JSONDecodeError"),
        (b'{"version": 2, "images": {}, "refs": {}}', "ValueError: version 2, want 1"),
        (b'{"version": 1, "images": {"x": {}}, "refs": {}}', "InvalidArgument"),
        (
            json.dumps({"version": 1, "images": {}, "refs": {"a:1": str(d("a"))}}).encode(),
            "a name points to a missing image",
        ),
    ],
)
def test_corrupt_metadata_is_internal(doc: bytes, why: str) -> None:
    with pytest.raises(Internal, match=f"^image metadata is corrupt \\({why}"):
        Catalog.from_json(doc)


@pytest.mark.parametrize(
    ("text", "manifest", "by_name"),
    [
        ("alpine", "a", True),
        ("docker.io/library/alpine:3", "a", True),
        ("example.com/b:1", "b", True),
        ("1" * 64, "a", False),
        ("2222", "b", False),
        ("sha256:" + "1" * 10, "a", False),
        ("bbbbbbbb", "b", False),
        (f"alpine@{d('a')}", "a", False),
    ],
)
def test_resolve_names_ids_and_digests(text: str, manifest: str, by_name: bool) -> None:
    found = catalog().resolve(text)
    assert found.image.manifest == d(manifest)
    assert (found.reference is not None) == by_name


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("nginx", NotFound, "image nginx: no such image; see `vxn images`, or load or pull it"),
        (
            f"nginx@{d('a')}",
            NotFound,
            f"image nginx@{d('a')}: no such image; see `vxn images`, or load or pull it",
        ),
        (
            "sha256:zz12",
            InvalidArgument,
            "image id 'sha256:zz12': want sha256:<4 to 64 lowercase hex digits>",
        ),
        ("abc", NotFound, "image abc: no such image; see `vxn images`, or load or pull it"),
    ],
)
def test_resolve_errors(text: str, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind) as e:
        catalog().resolve(text)
    assert str(e.value) == message


def test_an_id_prefix_matching_two_images_is_ambiguous() -> None:
    twin = record("c", "1")  # the same config under another manifest
    with pytest.raises(InvalidArgument) as e:
        catalog().with_image(twin).resolve("1111")
    assert str(e.value) == "image id 1111: matches 2 images; give more digits or a name"


def test_loading_a_manifest_again_keeps_both_loads_blobs() -> None:
    again = record("a", "1", "6", index="f")
    merged = catalog().with_image(again).images[d("a")]
    assert merged.blobs == A.blobs | {d("6")}
    assert merged.index == d("f")
    assert catalog().with_image(again).with_image(A).images[d("a")].index == d("f")


def test_naming_a_missing_image_is_an_internal_error() -> None:
    with pytest.raises(Internal, match="no image"):
        Catalog().with_ref("docker.io/library/x:1", d("a"))


def test_remove_by_name_with_other_names_only_untags() -> None:
    plan = plan_remove(catalog(), "alpine:3", force=False, users={})
    assert plan.lines == ("Untagged: alpine:3",)
    assert plan.catalog.names_of(A.manifest) == ["docker.io/library/alpine:latest"]
    assert plan.deleted == ()


def test_remove_by_name_of_the_last_name_deletes_unshared_blobs() -> None:
    plan = plan_remove(catalog(), "example.com/b:1", force=False, users={})
    assert plan.lines == ("Untagged: example.com/b:1", f"Deleted: {d('2')}")
    assert plan.orphaned_blobs() == [d("2"), d("9"), d("b")]  # 7 is shared with A
    assert B.manifest not in plan.catalog.images


def test_remove_by_id_with_several_names_needs_force() -> None:
    with pytest.raises(FailedPrecondition) as e:
        plan_remove(catalog(), "1111", force=False, users={})
    assert str(e.value) == (
        f"image {d('1')} is referenced in 2 names (alpine:3, alpine:latest); "
        "remove them by name or use -f"
    )
    plan = plan_remove(catalog(), "1111", force=True, users={})
    assert plan.lines == ("Untagged: alpine:3", "Untagged: alpine:latest", f"Deleted: {d('1')}")


def test_remove_of_an_image_in_use_needs_force() -> None:
    users = {B.manifest: "web1"}
    with pytest.raises(FailedPrecondition) as e:
        plan_remove(catalog(), "example.com/b:1", force=False, users=users)
    assert str(e.value) == (
        "image example.com/b:1 is in use by container web1; stop and remove it first or use -f"
    )
    unnamed = catalog().without_ref("example.com/b:1")
    with pytest.raises(FailedPrecondition, match=f"^image {d('2')} is in use by container web1"):
        plan_remove(unnamed, "2222", force=False, users=users)
    assert plan_remove(unnamed, "2222", force=True, users=users).deleted == (B,)


def test_prune_deletes_unnamed_images_no_container_uses() -> None:
    c = record("c", "3", "7")
    cat = catalog().with_image(c).without_ref("example.com/b:1")
    plan = plan_prune(cat, users={B.manifest: "web1"})
    assert plan.deleted == (c,)
    assert set(plan.catalog.images) == {A.manifest, B.manifest}
    assert plan.orphaned_blobs() == [d("3"), d("c")]


def test_unreferenced_lists_blobs_no_image_holds() -> None:
    assert unreferenced(catalog(), [d("7"), d("e"), d("a"), d("5")]) == [d("5"), d("e")]


def test_an_image_pulled_by_digest_is_found_by_that_name() -> None:
    pinned = f"example.com/c@{B.manifest}"
    cat = Catalog().with_image(B).with_ref(pinned, B.manifest)
    assert Catalog.from_json(cat.to_json()) == cat
    assert cat.resolve(pinned).image == B
    with pytest.raises(NotFound):
        cat.resolve(f"example.com/other@{B.manifest}")
