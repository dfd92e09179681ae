"""Content digests (`sha256:<64 hex>`), validated before they touch a path."""

from __future__ import annotations

from dataclasses import dataclass

from vxn.errors import InvalidArgument

# algorithm -> hex length. Only these can name a blob in the store.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, hex_ = text.partition(":")
        length = ALGORITHMS.get(algorithm)
        if not sep or length is None:
            raise InvalidArgument(f"invalid digest {text!r}: want sha256:<64 hex digits>")
        if len(hex_) != length or not set(hex_) <= _HEX:
            raise InvalidArgument(
                f"invalid digest {text!r}: want {algorithm}:<{length} lowercase hex digits>"
            )
        return cls(algorithm=algorithm, hex=hex_)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The 12-hex-digit form Docker shows as an IMAGE ID."""
        return self.hex[:12]
