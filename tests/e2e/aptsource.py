"""Which Debian mirror, suite and keyring apt on this machine already uses.

The tier may only talk to the mirror apt is configured for, so nothing here
names a host: it is read from /etc/apt (deb822 `.sources` or one-line lists).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    keyring: Path | None


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:  # continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def _candidates(apt_dir: Path) -> list[tuple[str, list[str], list[str], str | None]]:
    """(uri, suites, components, signed-by) for every enabled `deb` entry."""
    found: list[tuple[str, list[str], list[str], str | None]] = []
    parts = apt_dir / "sources.list.d"
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        for st in _deb822_stanzas(path.read_text()):
            if "deb" not in st.get("types", "").split() or st.get("enabled") == "no":
                continue
            for uri in st.get("uris", "").split():
                found.append(
                    (
                        uri,
                        st.get("suites", "").split(),
                        st.get("components", "").split(),
                        st.get("signed-by"),
                    )
                )
    lists = [apt_dir / "sources.list"]
    lists += sorted(parts.glob("*.list")) if parts.is_dir() else []
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
            if not m:
                continue
            opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
            found.append((m.group(2), [m.group(3)], m.group(4).split(), opts.get("signed-by")))
    return found


def configured_source(apt_dir: Path = APT_DIR) -> AptSource:
    """The entry serving a release suite (no `-updates`/`-security`) with `main`.

    VXN_E2E_MIRROR / VXN_E2E_SUITE override it (e.g. for a host that is not Debian).
    """
    uri = os.environ.get("VXN_E2E_MIRROR")
    suite = os.environ.get("VXN_E2E_SUITE")
    keyring: Path | None = DEFAULT_KEYRING if DEFAULT_KEYRING.is_file() else None
    if uri and suite:
        return AptSource(uri, suite, keyring)
    for c_uri, suites, components, signed_by in _candidates(apt_dir):
        release = [s for s in suites if "-" not in s and "/" not in s]
        if release and "main" in components:
            if signed_by and Path(signed_by).is_file():
                keyring = Path(signed_by)
            return AptSource(uri or c_uri, suite or release[0], keyring)
    raise RuntimeError(f"no Debian release suite with 'main' found in {apt_dir}")
