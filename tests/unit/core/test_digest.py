"""Digest parsing: only well-formed sha256/sha512 digests may name a blob."""

from __future__ import annotations

import pytest

from vxn.core.digest import Digest
from vxn.errors import InvalidArgument

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "algorithm", "short"),
    [
        (f"sha256:{HEX}", "sha256", "0123456789ab"),
        (f"sha512:{HEX * 2}", "sha512", "0123456789ab"),
        ("sha256:" + "f" * 64, "sha256", "f" * 12),
    ],
)
def test_parse(text: str, algorithm: str, short: str) -> None:
    d = Digest.parse(text)
    assert (d.algorithm, d.hex, d.short, str(d)) == (algorithm, text.split(":")[1], short, text)


SHA256_RULE = "want sha256:<64 lowercase hex digits>"
GENERIC_RULE = "want sha256:<64 hex digits>"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", GENERIC_RULE),
        (HEX, GENERIC_RULE),
        (f"md5:{HEX}", GENERIC_RULE),
        (f"SHA256:{HEX}", GENERIC_RULE),
        (f":{HEX}", GENERIC_RULE),
        ("sha256:", SHA256_RULE),
        (f"sha256:{HEX[:-1]}", SHA256_RULE),
        (f"sha256:{HEX}0", SHA256_RULE),
        (f"sha256:{HEX.upper()}", SHA256_RULE),
        (f"sha256:{HEX[:-1]}g", SHA256_RULE),
        (f"sha256:../{HEX[3:]}", SHA256_RULE),
        (f"sha256:{HEX}\n", SHA256_RULE),
        (f"sha512:{HEX}", "want sha512:<128 lowercase hex digits>"),
    ],
)
def test_parse_invalid(text: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Digest.parse(text)
    assert str(exc.value) == f"invalid digest {text!r}: {rule}"
