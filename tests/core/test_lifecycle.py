from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from itsm_bridge import lifecycle
from itsm_bridge.lifecycle import (
    NEEDS,
    STEPS,
    TRANSITIONS,
    IllegalTransition,
    check_transition,
    ready_steps,
)
from itsm_bridge.models import ReleaseState as S
from itsm_bridge.store import StepRow

LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_every_legal_transition_is_accepted(current: S, target: S) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PLANNED, S.IMPLEMENTING),  # no deployment before the plan is complete
        (S.BLOCKED, S.SCHEDULED),  # a blocked release is planned again first
        (S.IMPLEMENTING, S.CANCELLED),  # once deploying, only a rollback undoes it
        (S.VERIFYING, S.CLOSED),
        (S.FAILED, S.CLOSED),  # a failure is always rolled back
        (S.ROLLED_BACK, S.SUCCEEDED),
        (S.CLOSED, S.PLANNED),
        (S.CANCELLED, S.PLANNED),
    ],
)
def test_illegal_transitions_are_refused(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}"):
        check_transition(current, target)


def test_every_state_is_reachable_from_planned() -> None:
    seen, todo = {S.PLANNED}, [S.PLANNED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(S)


def test_steps_form_a_dag_in_which_build_and_plan_are_independent() -> None:
    assert [n for n, _ in STEPS] == list(range(1, 19))
    statuses = {n: "pending" for n, _ in STEPS}
    assert ready_steps(statuses) == [1, 2, 3, 4, 8]
    statuses.update({3: "done", 8: "done"})
    assert 5 in ready_steps(statuses)
    assert 4 in ready_steps(statuses)  # the build does not wait for the plan branch
    for number, needs in NEEDS.items():
        assert all(need != number for need in needs)


def test_evaluation_waits_for_build_and_tasks() -> None:
    statuses = {n: "done" for n, _ in STEPS if n <= 10}
    statuses.update({n: "pending" for n, _ in STEPS if n > 10})
    statuses[7] = "pending"
    statuses[4] = "running"
    assert 7 not in ready_steps(statuses)
    statuses[4] = "done"
    assert ready_steps(statuses) == [7]


def test_failed_steps_end_their_dependants_wait() -> None:
    statuses = {n: "done" for n, _ in STEPS}
    statuses.update(
        {13: "failed", 14: "pending", 15: "pending", 16: "pending", 17: "pending", 18: "pending"}
    )
    assert ready_steps(statuses) == [14]


def test_the_next_step_is_the_first_ready_one_not_waiting_for_later() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    later = now + timedelta(minutes=5)
    steps = [StepRow(number=n, name=name, status="done") for n, name in lifecycle.STEPS]
    for step in steps[12:]:
        step.status = "pending"  # verifying: 13 watches, the rest waits for it
    steps[12].status, steps[12].state = "waiting", {"retry_at": later.isoformat()}
    assert lifecycle.next_step(S.VERIFYING, steps, set(), now) == (None, later)
    assert lifecycle.next_step(S.VERIFYING, steps, set(), later) == (steps[12], None)
    assert lifecycle.next_step(S.VERIFYING, steps, {13}, later) == (None, later)
    assert lifecycle.next_step(S.CLOSED, steps, set(), later) == (None, None)
    assert lifecycle.next_step(S.BLOCKED, steps, set(), later) == (None, None)
