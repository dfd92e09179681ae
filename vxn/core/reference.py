"""Image references, parsed and normalized the way Docker does (distribution/reference).

Owns the grammar `[domain/]path[:tag][@digest]`, Docker Hub's defaults (`docker.io`,
`library/`, `latest`) and the familiar form Docker prints. Our own code, same semantics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vxn.core.digest import Digest
from vxn.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
# The name Docker accepts for Hub and rewrites to DEFAULT_DOMAIN.
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
# The host that actually serves Docker Hub's registry API.
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_COMPONENT_RE = re.compile(_COMPONENT)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
# Go's \w is ASCII-only; Python's is not, so spell it out.
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")

_TAG_RULE = "1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
_PATH_RULE = "lowercase letters and digits, separated by '.', '_', '__' or '-'"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A normalized reference: domain and path always set; tag and/or digest.

    `alpine` -> domain docker.io, path library/alpine, tag latest, digest None.
    Constructing one directly checks the syntax; only `parse` applies Docker's defaults.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        _check(self.domain, self.path, self.tag, text=str(self))

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalize; raise InvalidArgument naming the text on error.

        Adds `:latest` only when neither tag nor digest is given.
        """
        if not text:
            raise _invalid(text, "empty; give an image name such as alpine:3.20")
        if _IMAGE_ID_RE.fullmatch(text):
            raise _invalid(text, "a 64-hex-digit string is an image ID, not a name")
        rest, at, digest_text = text.partition("@")
        digest = _parse_digest(text, digest_text) if at else None
        domain, remainder = _split_domain(rest)
        path, colon, tag_text = remainder.partition(":")
        if colon and not tag_text:
            raise _invalid(text, "the tag after ':' is empty; give a tag or drop the ':'")
        tag = tag_text if colon else None
        if domain == DEFAULT_DOMAIN and path and "/" not in path:
            path = OFFICIAL_PREFIX + path
        _check(domain, path, tag, text=text)
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """`domain/path`, e.g. `docker.io/library/alpine`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """What Docker shows: `alpine`, `user/app`, `localhost:5000/x`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        short = path.removeprefix(OFFICIAL_PREFIX)
        if path.startswith(OFFICIAL_PREFIX) and "/" not in short:
            path = short
        # Docker would print `docker.io/foo.bar/x` as `foo.bar/x`, which then parses
        # as a registry host; keep the domain so the familiar form round-trips.
        first = path.split("/", 1)[0]
        return path if "/" not in path or not _looks_like_domain(first) else self.name

    @property
    def familiar(self) -> str:
        """The familiar name with tag and/or digest: `alpine:3.20`, `user/app@sha256:...`."""
        return self.familiar_name + self._suffix()

    @property
    def registry(self) -> str:
        """The host[:port] to contact: Docker Hub's API lives on its own host."""
        return DOCKER_HUB_REGISTRY if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        """The full normalized form: `docker.io/library/alpine:latest`, `h:5/a/b:t@sha256:...`."""
        return self.name + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest


def _looks_like_domain(component: str) -> bool:
    # Docker's rule for the first component of a name.
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


def _split_domain(name: str) -> tuple[str, str]:
    """(domain, rest-with-tag); the domain is the default unless the first part looks like one."""
    first, slash, rest = name.partition("/")
    if not slash or not _looks_like_domain(first):
        return DEFAULT_DOMAIN, name
    if first == LEGACY_DEFAULT_DOMAIN:
        return DEFAULT_DOMAIN, rest
    return first, rest


def _parse_digest(text: str, digest_text: str) -> Digest:
    if not digest_text:
        raise _invalid(text, "the digest after '@' is empty; give sha256:<64 hex digits>")
    try:
        return Digest.parse(digest_text)
    except InvalidArgument:
        raise _invalid(
            text, f"digest {_cut(digest_text)!r} is not sha256:<64 lowercase hex digits>"
        ) from None


def _check(domain: str, path: str, tag: str | None, *, text: str) -> None:
    """Syntax of each part and the total name length; `text` is only for messages."""
    length = len(domain) + 1 + len(path)
    if length > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(
            text, f"the name is {length} characters; shorten it to {NAME_TOTAL_LENGTH_MAX}"
        )
    if not _DOMAIN_RE.fullmatch(domain):
        raise _invalid(text, f"registry host {domain!r} is not a valid host[:port]")
    if not path:
        raise _invalid(text, "the repository name is empty")
    if path.lower() != path:
        raise _invalid(text, "repository name must be lowercase")
    for component in path.split("/"):
        if not component:
            raise _invalid(text, "the repository name has an empty part; remove the extra '/'")
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise _invalid(text, f"repository name part {component!r} must be {_PATH_RULE}")
    if tag is not None and not _TAG_RE.fullmatch(tag):
        raise _invalid(text, f"tag {_cut(tag)!r} must be {_TAG_RULE}")


def _cut(text: str, limit: int = 200) -> str:
    # References can come from untrusted archives: keep messages short.
    return text if len(text) <= limit else text[:limit] + "…"


def _invalid(text: str, why: str) -> InvalidArgument:
    shown = _cut(text).replace("\n", "\\n").replace("\r", "\\r")
    return InvalidArgument(f'invalid reference "{shown}": {why}')
