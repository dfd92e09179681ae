"""Image references, parsed the way Docker does (distribution/reference).

STUB: the interface is fixed; the body is being written.
"""

from __future__ import annotations

from dataclasses import dataclass

from vxn.core.digest import Digest

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A normalized reference: domain and path always set; tag and/or digest.

    `alpine` -> domain docker.io, path library/alpine, tag latest, digest None.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalize; raise InvalidArgument naming the text on error.

        Adds `:latest` only when neither tag nor digest is given.
        """
        raise NotImplementedError

    @property
    def name(self) -> str:
        """`domain/path`, e.g. `docker.io/library/alpine`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """What Docker shows: `alpine`, `user/app`, `localhost:5000/x`."""
        raise NotImplementedError

    def __str__(self) -> str:
        """The full normalized form: `docker.io/library/alpine:latest`, `h:5000/a/b:t@sha256:...`."""
        raise NotImplementedError
