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
