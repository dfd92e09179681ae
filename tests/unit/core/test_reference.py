"""Reference parsing: Docker's normalization, round-trips and every rule's error."""

from __future__ import annotations

import dataclasses

import pytest

from vxn.core.digest import Digest
from vxn.core.reference import Reference
from vxn.errors import InvalidArgument

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
D = Digest.parse(DIGEST)

# text -> (domain, path, tag, digest, str(), familiar_name)
VALID: list[tuple[str, str, str, str | None, Digest | None, str, str]] = [
    ("alpine", "docker.io", "library/alpine", "latest", None,
     "docker.io/library/alpine:latest", "alpine"),
    ("alpine:3.20", "docker.io", "library/alpine", "3.20", None,
     "docker.io/library/alpine:3.20", "alpine"),
    ("user/app", "docker.io", "user/app", "latest", None,
     "docker.io/user/app:latest", "user/app"),
    ("user/app:v1", "docker.io", "user/app", "v1", None, "docker.io/user/app:v1", "user/app"),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None,
     "docker.io/library/alpine:latest", "alpine"),
    ("docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", None,
     "docker.io/library/alpine:edge", "alpine"),
    ("index.docker.io/x", "docker.io", "library/x", "latest", None,
     "docker.io/library/x:latest", "x"),
    ("index.docker.io/u/x:1", "docker.io", "u/x", "1", None, "docker.io/u/x:1", "u/x"),
    ("library/a/b", "docker.io", "library/a/b", "latest", None,
     "docker.io/library/a/b:latest", "library/a/b"),
    ("host:5000/a/b:t", "host:5000", "a/b", "t", None, "host:5000/a/b:t", "host:5000/a/b"),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest", "localhost/x"),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None,
     "localhost:5000/x:latest", "localhost:5000/x"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None, "[::1]:5000/x:latest", "[::1]:5000/x"),
    ("[fe80::1]/x:y", "[fe80::1]", "x", "y", None, "[fe80::1]/x:y", "[fe80::1]/x"),
    ("192.168.1.1:5000/x", "192.168.1.1:5000", "x", "latest", None,
     "192.168.1.1:5000/x:latest", "192.168.1.1:5000/x"),
    ("quay.io/org/sub/img:1.0", "quay.io", "org/sub/img", "1.0", None,
     "quay.io/org/sub/img:1.0", "quay.io/org/sub/img"),
    ("ghcr.io/o/p", "ghcr.io", "o/p", "latest", None, "ghcr.io/o/p:latest", "ghcr.io/o/p"),
    ("my-registry.example.com/x", "my-registry.example.com", "x", "latest", None,
     "my-registry.example.com/x:latest", "my-registry.example.com/x"),
    ("Foo/bar", "Foo", "bar", "latest", None, "Foo/bar:latest", "Foo/bar"),
    ("a__b/c-d--e/f.g_h:V1.0-x_Y", "docker.io", "a__b/c-d--e/f.g_h", "V1.0-x_Y", None,
     "docker.io/a__b/c-d--e/f.g_h:V1.0-x_Y", "a__b/c-d--e/f.g_h"),
    ("alpine:_", "docker.io", "library/alpine", "_", None, "docker.io/library/alpine:_", "alpine"),
    ("alpine:" + "t" * 128, "docker.io", "library/alpine", "t" * 128, None,
     "docker.io/library/alpine:" + "t" * 128, "alpine"),
    (f"alpine@{DIGEST}", "docker.io", "library/alpine", None, D,
     f"docker.io/library/alpine@{DIGEST}", "alpine"),
    (f"alpine:3@{DIGEST}", "docker.io", "library/alpine", "3", D,
     f"docker.io/library/alpine:3@{DIGEST}", "alpine"),
    (f"h:5/a/b:t@{DIGEST}", "h:5", "a/b", "t", D, f"h:5/a/b:t@{DIGEST}", "h:5/a/b"),
    # Docker reads a port-looking suffix without a '/' as a tag.
    ("localhost:5000", "docker.io", "library/localhost", "5000", None,
     "docker.io/library/localhost:5000", "localhost"),
    # Docker would show `foo.bar/x`, which parses as a registry; we keep the domain.
    ("docker.io/foo.bar/x", "docker.io", "foo.bar/x", "latest", None,
     "docker.io/foo.bar/x:latest", "docker.io/foo.bar/x"),
    ("docker.io/localhost/x", "docker.io", "localhost/x", "latest", None,
     "docker.io/localhost/x:latest", "docker.io/localhost/x"),
    ("a/" + "b" * 243, "docker.io", "a/" + "b" * 243, "latest", None,
     "docker.io/a/" + "b" * 243 + ":latest", "a/" + "b" * 243),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "full", "familiar_name"),
    VALID,
    ids=[v[0][:40] for v in VALID],
)
def test_parse_valid(
    text: str,
    domain: str,
    path: str,
    tag: str | None,
    digest: Digest | None,
    full: str,
    familiar_name: str,
) -> None:
    ref = Reference.parse(text)
    assert ref == Reference(domain=domain, path=path, tag=tag, digest=digest)
    assert str(ref) == full
    assert ref.name == f"{domain}/{path}"
    assert ref.familiar_name == familiar_name
    # Both round-trips: parsed values survive str() and the familiar form.
    assert Reference.parse(full) == ref
    assert str(Reference.parse(full)) == full
    assert Reference.parse(ref.familiar) == ref


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("alpine", "alpine:latest"),
        ("docker.io/library/alpine:3.20", "alpine:3.20"),
        (f"alpine@{DIGEST}", f"alpine@{DIGEST}"),
        (f"user/app:v1@{DIGEST}", f"user/app:v1@{DIGEST}"),
        ("localhost:5000/x:t", "localhost:5000/x:t"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    assert Reference.parse(text).familiar == familiar


@pytest.mark.parametrize(
    ("text", "registry", "obj"),
    [
        ("alpine", "registry-1.docker.io", "latest"),
        ("index.docker.io/u/x:2", "registry-1.docker.io", "2"),
        ("localhost:5000/x:t", "localhost:5000", "t"),
        (f"q.io/x:t@{DIGEST}", "q.io", DIGEST),
    ],
)
def test_registry_and_object(text: str, registry: str, obj: str) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.object) == (registry, obj)


LOWER = "repository name must be lowercase"
PART = "must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
TAG = "must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
BAD_DIGEST = "is not sha256:<64 lowercase hex digits>"
EMPTY_PART = "the repository name has an empty part; remove the extra '/'"

INVALID: list[tuple[str, str]] = [
    ("", "empty; give an image name such as alpine:3.20"),
    ("Alpine:3", LOWER),
    ("ALPINE", LOWER),
    ("host/Foo", LOWER),
    ("localhost:5000/App:1", LOWER),
    ("x:", "the tag after ':' is empty; give a tag or drop the ':'"),
    ("host:5000/x:", "the tag after ':' is empty; give a tag or drop the ':'"),
    ("x:-a", f"tag '-a' {TAG}"),
    ("x:.a", f"tag '.a' {TAG}"),
    ("x:a+b", f"tag 'a+b' {TAG}"),
    # A ':' before the first '/' makes that part a registry host.
    ("x:a/b", "registry host 'x:a' is not a valid host[:port]"),
    ("x:tÿ", f"tag 'tÿ' {TAG}"),
    ("a:b:c", f"tag 'b:c' {TAG}"),
    ("x:" + "t" * 129, f"tag '{'t' * 129}' {TAG}"),
    ("x@", "the digest after '@' is empty; give sha256:<64 hex digits>"),
    ("x@sha256:zz", f"digest 'sha256:zz' {BAD_DIGEST}"),
    (f"x@{DIGEST.upper()}", f"digest '{DIGEST.upper()}' {BAD_DIGEST}"),
    (f"x@md5:{HEX}", f"digest 'md5:{HEX}' {BAD_DIGEST}"),
    (f"x@{DIGEST}@{DIGEST}", f"digest '{DIGEST}@{DIGEST}' {BAD_DIGEST}"),
    (f"x:@{DIGEST}", "the tag after ':' is empty; give a tag or drop the ':'"),
    (HEX * 1, "a 64-hex-digit string is an image ID, not a name"),
    ("a//b", EMPTY_PART),
    ("a/", EMPTY_PART),
    ("/a", EMPTY_PART),
    ("host:5000/", "the repository name is empty"),
    ("-a", f"repository name part '-a' {PART}"),
    ("a-", f"repository name part 'a-' {PART}"),
    ("a..b", f"repository name part 'a..b' {PART}"),
    ("a___b", f"repository name part 'a___b' {PART}"),
    ("_a", f"repository name part '_a' {PART}"),
    ("a b", f"repository name part 'a b' {PART}"),
    ("a\nb", f"repository name part 'a\\nb' {PART}"),
    ("h:abc/x", "registry host 'h:abc' is not a valid host[:port]"),
    ("-h.io/x", "registry host '-h.io' is not a valid host[:port]"),
    ("h_1.io/x", "registry host 'h_1.io' is not a valid host[:port]"),
    ("h..io/x", "registry host 'h..io' is not a valid host[:port]"),
    ("[zz::1]/x", "registry host '[zz::1]' is not a valid host[:port]"),
    ("h.io:/x", "registry host 'h.io:' is not a valid host[:port]"),
    ("a/" + "b" * 244, "the name is 256 characters; shorten it to 255"),
    ("h.io/" + "b" * 251, "the name is 256 characters; shorten it to 255"),
]


@pytest.mark.parametrize(("text", "why"), INVALID, ids=[t[:40] for t, _ in INVALID])
def test_parse_invalid(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Reference.parse(text)
    shown = (text if len(text) <= 200 else text[:200] + "…").replace("\n", "\\n")
    assert str(exc.value) == f'invalid reference "{shown}": {why}'


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a" * 400, "the name is 418 characters; shorten it to 255"),
        ("a:" + "t" * 300, f"tag '{'t' * 200}…' {TAG}"),
        ("a@" + "d" * 300, f"digest '{'d' * 200}…' {BAD_DIGEST}"),
    ],
)
def test_long_text_is_cut_in_the_message(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Reference.parse(text)
    assert str(exc.value) == f'invalid reference "{text[:200]}…": {why}'


@pytest.mark.parametrize(
    ("domain", "path", "tag", "message"),
    [
        ("docker.io", "Library/x", "1", f'"docker.io/Library/x:1": {LOWER}'),
        (
            "bad host",
            "x",
            "1",
            "\"bad host/x:1\": registry host 'bad host' is not a valid host[:port]",
        ),
        ("q.io", "x", "", f"\"q.io/x:\": tag '' {TAG}"),
        ("q.io", "", "1", '"q.io/:1": the repository name is empty'),
    ],
)
def test_direct_construction_is_checked(domain: str, path: str, tag: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Reference(domain=domain, path=path, tag=tag)
    assert str(exc.value) == f"invalid reference {message}"


def test_is_frozen() -> None:
    ref = Reference.parse("alpine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "3"  # type: ignore[misc]
