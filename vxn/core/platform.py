"""Platforms (`os/arch[/variant]`): parsing, the Dom0's own, and matching."""

from __future__ import annotations

from dataclasses import dataclass

from vxn.errors import InvalidArgument

# `uname -m` -> (OCI architecture, variant)
_MACHINES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
    "riscv64": ("riscv64", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}: want os/arch[/variant], e.g. linux/amd64")
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else ""
        return cls(os=os_, architecture=arch, variant=variant).normalized()

    @classmethod
    def for_machine(cls, machine: str, os: str = "linux") -> Platform:
        """The platform of a host, from `uname -m` (passed in: core reads nothing)."""
        try:
            arch, variant = _MACHINES[machine]
        except KeyError:
            raise InvalidArgument(f"unsupported host machine {machine!r}") from None
        return cls(os=os, architecture=arch, variant=variant)

    def normalized(self) -> Platform:
        arch, variant = self.architecture, self.variant
        if arch in ("aarch64", "arm64"):
            arch, variant = "arm64", variant or "v8"
        elif arch in ("x86_64", "x86-64"):
            arch = "amd64"
        elif arch == "arm" and not variant:
            variant = "v7"
        return Platform(os=self.os, architecture=arch, variant=variant)

    def matches(self, other: Platform) -> bool:
        """Whether an image for `other` runs here; a missing variant matches the default one."""
        a, b = self.normalized(), other.normalized()
        return a.os == b.os and a.architecture == b.architecture and a.variant == b.variant

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base
