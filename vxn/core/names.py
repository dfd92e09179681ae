"""Container names and references, pure (docs/CONTAINERS.md 2).

A name is `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, unique; when none is given, a Docker-style
`adjective_surname` is made up (with a number when taken). A reference is a full id,
a name, or a unique id prefix, tried in that order, as Docker does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Container, Iterable, Sequence

from vxn.errors import InvalidArgument, NotFound

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
ADJECTIVES = (
    "brave", "calm", "clever", "eager", "fond", "gentle", "happy", "jolly", "keen", "kind",
    "lucid", "merry", "nimble", "patient", "proud", "quiet", "quirky", "sharp", "steady",
    "sunny", "swift", "tender", "upbeat", "vivid", "wise", "witty", "zealous", "bold",
)  # fmt: skip
SURNAMES = (
    "babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "hypatia", "kepler",
    "knuth", "lamport", "liskov", "lovelace", "maxwell", "noether", "pascal", "ritchie",
    "shannon", "thompson", "turing", "wirth", "hamilton", "goldberg", "perlman", "allen",
)  # fmt: skip
_TRIES = 20


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidArgument(
            f"container name {name!r}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters"
        )
    return name


def generate(taken: Container[str], choose: Callable[[Sequence[str]], str] = random.choice) -> str:
    """A free `adjective_surname`; after a few collisions, with a number appended."""
    for attempt in range(_TRIES * 2):
        name = f"{choose(ADJECTIVES)}_{choose(SURNAMES)}"
        if attempt >= _TRIES:
            name += str(attempt - _TRIES + 2)
        if name not in taken:
            return name
    raise InvalidArgument("container name: no free generated name; give one with --name")


def resolve(ref: str, containers: Iterable[tuple[str, str]]) -> str:
    """The id `ref` means among `(id, name)` pairs: full id, then name, then id prefix."""
    pairs = list(containers)
    if any(cid == ref for cid, _ in pairs):
        return ref
    for cid, name in pairs:
        if name == ref:
            return cid
    matches = [cid for cid, _ in pairs if ref and cid.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(sorted(m[:12] for m in matches)[:4])
        raise InvalidArgument(
            f"container {ref}: ambiguous: the id prefix matches {len(matches)} containers "
            f"({shown}); give more of the id, or the name"
        )
    raise NotFound(f"container {ref}: no such container; see `vxn ps -a`")
