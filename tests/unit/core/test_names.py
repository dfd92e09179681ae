"""Container names: validation, Docker-style generation, and reference resolution."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from vxn.core.names import ADJECTIVES, SURNAMES, check_name, generate, resolve
from vxn.errors import InvalidArgument, NotFound

A = "3f2a" + "0" * 60
B = "3f9b" + "1" * 60
C = "c0ffee" + "2" * 58
PAIRS = [(A, "web"), (B, "db"), (C, "3f9b")]


@pytest.mark.parametrize("name", ["web", "a", "A.b-c_9", "x" * 128])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-x", "_x", "a b", "a/b", "x" * 129, "ü", "web\n", "..", ".x", "a\x00"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"want \[a-zA-Z0-9\]"):
        check_name(name)


def test_generated_names_are_adjective_surname_and_free() -> None:
    name = generate(set())
    adjective, surname = name.split("_")
    assert (adjective in ADJECTIVES, surname in SURNAMES) == (True, True)
    check_name(name)


def test_a_taken_generated_name_gets_a_number() -> None:
    first = iter(itertools.cycle(["brave", "curie"]))

    def choose(words: Sequence[str]) -> str:
        return next(first)

    assert generate({"brave_curie"}, choose) == "brave_curie2"
    assert generate({"brave_curie", "brave_curie2"}, choose) == "brave_curie3"


def test_resolve_full_id_then_name_then_prefix() -> None:
    assert resolve(A, PAIRS) == A
    assert resolve("web", PAIRS) == A
    assert resolve("3f9b", PAIRS) == C  # a name wins over an id prefix, as in Docker
    assert resolve("c0f", PAIRS) == C
    assert resolve("3f2", PAIRS) == A


def test_an_ambiguous_prefix_says_so() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve("3f", PAIRS)
    assert str(caught.value) == (
        "container 3f: ambiguous: the id prefix matches 2 containers "
        f"({A[:12]}, {B[:12]}); give more of the id, or the name"
    )


@pytest.mark.parametrize("ref", ["nope", "", "ff"])
def test_unknown_refs_are_not_found(ref: str) -> None:
    with pytest.raises(NotFound, match="no such container; see `vxn ps -a`"):
        resolve(ref, PAIRS)
