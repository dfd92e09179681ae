"""Platform parsing, normalization and matching (containerd's spellings)."""

from __future__ import annotations

import pytest

from vxn.core.platform import Platform
from vxn.errors import InvalidArgument


def P(os: str, arch: str, variant: str = "") -> Platform:
    return Platform(os=os, architecture=arch, variant=variant)


@pytest.mark.parametrize(
    ("text", "want", "shown"),
    [
        ("linux/amd64", P("linux", "amd64"), "linux/amd64"),
        ("Linux/AMD64", P("linux", "amd64"), "linux/amd64"),
        (" linux/x86_64 ", P("linux", "amd64"), "linux/amd64"),
        ("linux/arm64", P("linux", "arm64", "v8"), "linux/arm64/v8"),
        ("linux/aarch64", P("linux", "arm64", "v8"), "linux/arm64/v8"),
        ("linux/arm64/8", P("linux", "arm64", "v8"), "linux/arm64/v8"),
        ("linux/arm", P("linux", "arm", "v7"), "linux/arm/v7"),
        ("linux/arm/v6", P("linux", "arm", "v6"), "linux/arm/v6"),
        ("linux/armhf", P("linux", "arm", "v7"), "linux/arm/v7"),
        ("linux/armel", P("linux", "arm", "v6"), "linux/arm/v6"),
        ("linux/i386", P("linux", "386"), "linux/386"),
        ("linux/amd64/v1", P("linux", "amd64"), "linux/amd64"),
        ("linux/amd64/v3", P("linux", "amd64", "v3"), "linux/amd64/v3"),
        ("linux/s390x", P("linux", "s390x"), "linux/s390x"),
        ("windows/amd64", P("windows", "amd64"), "windows/amd64"),
    ],
)
def test_parse(text: str, want: Platform, shown: str) -> None:
    assert Platform.parse(text) == want
    assert str(Platform.parse(text)) == shown
    assert Platform.parse(shown) == want


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux//v7"])
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Platform.parse(text)
    assert str(exc.value) == (
        f"invalid platform {text!r}: want os/arch[/variant], e.g. linux/amd64"
    )


@pytest.mark.parametrize(
    ("machine", "want"),
    [
        ("x86_64", P("linux", "amd64")),
        ("aarch64", P("linux", "arm64", "v8")),
        ("armv7l", P("linux", "arm", "v7")),
        ("i686", P("linux", "386")),
        ("riscv64", P("linux", "riscv64")),
    ],
)
def test_for_machine(machine: str, want: Platform) -> None:
    assert Platform.for_machine(machine) == want


def test_for_machine_unknown() -> None:
    with pytest.raises(InvalidArgument) as exc:
        Platform.for_machine("mips")
    assert str(exc.value) == ("unsupported host machine 'mips': name the platform with --platform")


@pytest.mark.parametrize(
    ("host", "image", "runs"),
    [
        (P("linux", "amd64"), P("linux", "amd64"), True),
        (P("linux", "amd64"), P("linux", "x86_64"), True),
        (P("linux", "amd64"), P("Linux", "AMD64"), True),
        (P("linux", "amd64"), P("linux", "arm64"), False),
        (P("linux", "amd64"), P("windows", "amd64"), False),
        (P("linux", "amd64"), P("linux", "amd64", "v3"), False),
        (P("linux", "arm64", "v8"), P("linux", "arm64"), True),
        (P("linux", "arm64"), P("linux", "aarch64", "v8"), True),
        (P("linux", "arm64"), P("linux", "arm64", "v9"), False),
        (P("linux", "arm", "v7"), P("linux", "arm"), True),
        (P("linux", "arm", "v7"), P("linux", "arm", "v6"), False),
        (P("linux", "arm"), P("linux", "armhf"), True),
        (P("unknown", "unknown"), P("linux", "amd64"), False),
    ],
)
def test_matches(host: Platform, image: Platform, runs: bool) -> None:
    assert host.matches(image) is runs
    assert image.matches(host) is runs
