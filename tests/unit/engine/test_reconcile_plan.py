"""The reconcile planner: which guests a starting vxnd adopts or destroys, and which
of its containers it records as vanished or finishes removing. Pure: literals in,
steps out."""

from __future__ import annotations

from typing import Any

import pytest

from vxn.adapters.hypervisor import GuestInfo
from vxn.core.vm import State
from vxn.engine.reconcile import Step, of_container, owned, plan

OWNER = "a" * 32


def guest(name: str, cid: str = "", *, origin: str = "vxn", owner: str = OWNER) -> GuestInfo:
    labels = {"id": cid, "origin": origin, "owner": owner} if origin else {}
    return GuestInfo(name=name, state=State.RUNNING, backend="qemu", labels=labels)


def record(cid: str, state: str, backend: str = "qemu") -> dict[str, Any]:
    return {"id": cid, "state": state, "backend": backend, "guest": cid[:4]}


@pytest.mark.parametrize(
    ("labels", "ours"),
    [
        ({"origin": "vxn", "owner": OWNER}, True),
        ({"origin": "vxn", "owner": "b" * 32}, False),  # another state dir's vxnd
        ({"origin": "oci-runtime", "owner": OWNER}, False),
        ({"owner": OWNER}, False),
        ({}, False),
    ],
)
def test_only_guests_of_this_state_dirs_vxnd_are_owned(labels: dict[str, str], ours: bool) -> None:
    assert owned(labels, OWNER) is ours


def test_a_guest_is_a_containers_only_with_its_id_and_while_it_exists() -> None:
    rec = record("c1xx", "running")
    assert of_container(guest("c1xx", "c1xx"), rec, OWNER)
    assert not of_container(guest("c1xx", "c2xx"), rec, OWNER)
    assert not of_container(guest("c1xx", "c1xx", owner="b" * 32), rec, OWNER)
    gone = GuestInfo(name="c1xx", state=State.GONE, backend="qemu", labels={"id": "c1xx"})
    assert not of_container(gone, rec, OWNER)


def test_guests_of_live_containers_are_adopted_and_the_rest_of_ours_destroyed() -> None:
    records = {
        "runs": record("runs", "running"),
        "paus": record("paus", "paused"),
        "rest": record("rest", "restarting"),
        "exit": record("exit", "exited"),
        "move": record("move", "running") | {"guest": "else"},
    }
    listed = {
        "qemu": [
            guest("runs", "runs"),
            guest("paus", "paus"),
            guest("rest", "rest"),
            guest("exit", "exit"),  # its container exited: nothing to adopt
            guest("nope", "nope"),  # no record at all
            guest("move", "move"),  # the record names another guest
            guest("othr", "runs", owner="b" * 32),  # never touched, whatever it claims
            guest("fore", origin=""),
        ]
    }
    assert plan(records, listed, OWNER, supervised=()) == [
        Step("adopt", "qemu", "runs"),
        Step("adopt", "qemu", "paus"),
        Step("adopt", "qemu", "rest"),
        Step("destroy", "qemu", "exit"),
        Step("destroy", "qemu", "nope"),
        Step("destroy", "qemu", "move"),
        Step("vanished", "qemu", "move"),  # live, but its own guest is gone
    ]


def test_live_containers_without_a_guest_vanished_unless_their_backend_is_down() -> None:
    records = {
        "gone": record("gone", "running"),
        "down": record("down", "running", backend="xen"),
        "kept": record("kept", "running"),
        "done": record("done", "exited"),
        "made": record("made", "created"),
    }
    steps = plan(records, {"qemu": []}, OWNER, supervised={"kept"})
    assert steps == [Step("vanished", "qemu", "gone")]


def test_removals_a_dead_vxnd_left_are_finished_on_a_backend_that_answers() -> None:
    records = {"rmqe": record("rmqe", "removing"), "rmxe": record("rmxe", "removing", "xen")}
    listed = {"qemu": [guest("rmqe", "rmqe")]}
    assert plan(records, listed, OWNER, supervised=()) == [
        Step("destroy", "qemu", "rmqe"),
        Step("finish_removal", "qemu", "rmqe"),
    ]


def test_every_answering_backend_is_planned_in_the_order_given() -> None:
    records = {"onxe": record("onxe", "running", "xen"), "onqe": record("onqe", "running")}
    listed = {"qemu": [guest("onqe", "onqe")], "xen": [guest("onxe", "onxe")]}
    assert plan(records, listed, OWNER, supervised=()) == [
        Step("adopt", "qemu", "onqe"),
        Step("adopt", "xen", "onxe"),
    ]
