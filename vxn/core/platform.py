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

# Other spellings of an architecture -> (OCI architecture, the variant they imply)
_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "i386": ("386", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}
# A missing arm64 variant means v8; a missing arm one means v7 (what Docker assumes).
_ARM64_VARIANTS = {"": "v8", "8": "v8", "v8.0": "v8", "9": "v9", "9.0": "v9", "v9.0": "v9"}
_ARM_VARIANTS = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise InvalidArgument(
                f"invalid platform {text!r}: want os/arch[/variant], e.g. linux/amd64"
            )
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else ""
        return cls(os=os_, architecture=arch, variant=variant).normalized()

    @classmethod
    def for_machine(cls, machine: str, os: str = "linux") -> Platform:
        """The platform of a host, from `uname -m` (passed in: core reads nothing)."""
        try:
            arch, variant = _MACHINES[machine]
        except KeyError:
            raise InvalidArgument(
                f"unsupported host machine {machine!r}: name the platform with --platform"
            ) from None
        return cls(os=os, architecture=arch, variant=variant)

    def normalized(self) -> Platform:
        """Canonical spellings (containerd's table), so that equal platforms compare equal."""
        arch, variant = _ALIASES.get(self.architecture.lower(), (self.architecture.lower(), ""))
        variant = variant or self.variant.lower()
        if arch == "arm64":
            variant = _ARM64_VARIANTS.get(variant, variant)
        elif arch == "arm":
            variant = _ARM_VARIANTS.get(variant, variant)
        elif arch == "amd64" and variant == "v1":
            variant = ""  # v1 is the baseline every amd64 host runs
        return Platform(os=self.os.lower(), architecture=arch, variant=variant)

    def matches(self, other: Platform) -> bool:
        """Whether an image for `other` runs here; a missing variant matches the default one."""
        a, b = self.normalized(), other.normalized()
        return a.os == b.os and a.architecture == b.architecture and a.variant == b.variant

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base
