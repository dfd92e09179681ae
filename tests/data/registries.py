"""What the registry fixtures (tests/integration/conftest.py) hold, for the tests to name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data import imagebuild as ib

USER, PASSWORD = "vxn", "secret"  # the Basic-auth registry's (and the token server's) user


@dataclass(frozen=True)
class Images:
    single: Path  # layout, ref.name v1
    multi: Path  # layout, ref.name multi (amd64 + arm64/v8 + an attestation)
    plain_multi: Path  # the same without the attestation, which v2s2 cannot hold
    v1: ib.Built
    index: ib.Json
    amd: ib.Built
    arm: ib.Built
