"""The lifecycle table: the legal paths, and errors that name container, op and state."""

from __future__ import annotations

import pytest

from vxn.core.lifecycle import OPS, TABLE, St, allowed, transition
from vxn.errors import FailedPrecondition


def test_the_docker_path_created_running_exited_started_again() -> None:
    state = St.CREATED
    for op, want in [
        ("attach", St.CREATED),
        ("start", St.RUNNING),
        ("stop", St.RUNNING),  # a request: the exit moves it on
        ("exit", St.EXITED),
        ("start", St.RUNNING),
        ("restart", St.RESTARTING),
        ("exit", St.RESTARTING),
        ("start", St.RUNNING),
        ("pause", St.PAUSED),
        ("unpause", St.RUNNING),
        ("exit", St.EXITED),
        ("remove", St.REMOVING),
    ]:
        state = transition(state, op, "web (3f2a1b2c3d4e)")
        assert state is want, op


@pytest.mark.parametrize(
    ("state", "op", "message"),
    [
        ("exited", "exec", "container web (3f2a): cannot exec: it is exited; start it first"),
        ("created", "kill", "container web (3f2a): cannot kill: it is created; start it first"),
        ("paused", "exec", "container web (3f2a): cannot exec: it is paused; unpause it first"),
        ("running", "unpause", "container web (3f2a): cannot unpause: it is running; stop it"),
        ("removing", "start", "container web (3f2a): cannot start: it is removing; it is being"),
        ("exited", "attach", "container web (3f2a): cannot attach: it is exited; start it first"),
    ],
)
def test_illegal_ops_name_the_container_op_and_state(state: str, op: str, message: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        transition(state, op, "web (3f2a)")
    assert str(caught.value).startswith(message)
    assert not allowed(state, op)


def test_every_state_can_be_removed_but_removing_and_every_entry_is_known() -> None:
    for state in St:
        assert allowed(state, "remove") == (state is not St.REMOVING)
    assert {op for _, op in TABLE} <= set(OPS)
    with pytest.raises(ValueError, match="unknown op 'fly'"):
        transition("running", "fly", "x")


@pytest.mark.parametrize(
    ("state", "want"),
    [
        (St.CREATED, St.EXITED),  # its first start failed
        (St.RUNNING, St.EXITED),  # its guest vanished while no vxnd watched
        (St.PAUSED, St.EXITED),
        (St.RESTARTING, St.EXITED),  # the new run could not start: not stuck restarting
        (St.EXITED, St.EXITED),  # a new start failed
    ],
)
def test_a_run_that_is_over_with_no_start_to_follow_is_exited(state: St, want: St) -> None:
    assert transition(state, "fail", "web (3f2a)") is want


def test_a_restart_goes_through_restarting_whatever_ends_the_old_run() -> None:
    for first in (St.CREATED, St.RUNNING, St.EXITED):
        assert transition(first, "restart", "x") is St.RESTARTING
    assert transition(St.RESTARTING, "exit", "x") is St.RESTARTING  # the old run ends
    assert transition(St.RESTARTING, "kill", "x") is St.RESTARTING
    assert transition(St.RESTARTING, "adopt", "x") is St.RUNNING  # vxnd died mid-restart
    assert transition(St.REMOVING, "exit", "x") is St.REMOVING  # rm -f: the run ends
    for op in ("exec", "attach", "restart", "pause"):
        assert not allowed(St.RESTARTING, op)


def test_only_a_live_guest_can_be_adopted() -> None:
    # A created container's guest has no nonce on record yet: it is destroyed, not adopted.
    adoptable = {state for state in St if allowed(state, "adopt")}
    assert adoptable == {St.RUNNING, St.PAUSED, St.RESTARTING}
