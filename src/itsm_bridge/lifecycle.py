"""The 18 steps, the order they depend on, and the legal release-state transitions.

Pure data and checks: `process.py` drives releases through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from itsm_bridge.models import ReleaseState as S


class StepLike(Protocol):
    """What choosing the next step reads of a step row (`store.StepRow`)."""

    number: int
    status: str
    state: dict[str, Any]


Step = TypeVar("Step", bound=StepLike)

STEPS: tuple[tuple[int, str], ...] = (
    (1, "demand"),
    (2, "problem"),
    (3, "backlog"),
    (4, "build"),
    (5, "schedule"),
    (6, "change"),
    (7, "evaluate"),
    (8, "cmdb"),
    (9, "tasks"),
    (10, "notes"),
    (11, "deploy"),
    (12, "smoke_test"),
    (13, "detect"),
    (14, "rollback"),
    (15, "notify"),
    (16, "post_mortem"),
    (17, "service_levels"),
    (18, "early_life_support"),
)
STEP_NAMES = dict(STEPS)

# A step runs once every step it needs is finished (done or skipped). Steps 3-4 (backlog,
# build) and 5-10 (plan) are two independent branches; the CMDB walk comes before scheduling
# so that CI-specific calendars apply, and the notes before the change, whose description
# they fill. Evaluation waits for the build's test results and for the tasks.
NEEDS: dict[int, tuple[int, ...]] = {
    1: (),
    2: (),
    3: (),
    4: (),
    8: (),
    5: (8,),
    10: (3, 5),
    6: (5, 8, 10),
    9: (6,),
    7: (4, 6, 9),
    11: (1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
    12: (11,),
    13: (12,),
    14: (13,),
    15: (14,),
    16: (15,),
    17: (16,),
    18: (17,),
}
PLANNING_STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
ROLLBACK_STEP = 14
SUPPORT_STEP = 18  # early life support
FINISHED = ("done", "skipped")

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PLANNED: frozenset({S.SCHEDULED, S.BLOCKED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.IMPLEMENTING, S.PLANNED, S.BLOCKED, S.CANCELLED}),
    S.BLOCKED: frozenset({S.PLANNED, S.CANCELLED}),
    S.IMPLEMENTING: frozenset({S.VERIFYING, S.FAILED}),
    S.VERIFYING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset({S.EARLY_LIFE_SUPPORT, S.CLOSED, S.FAILED}),
    S.EARLY_LIFE_SUPPORT: frozenset({S.CLOSED, S.FAILED}),
    S.FAILED: frozenset({S.ROLLING_BACK}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
    S.CANCELLED: frozenset(),
}
TERMINAL = frozenset({S.CLOSED, S.CANCELLED})
# States in which a failure signal (or `release rollback`) rolls the release back.
DEPLOYED = frozenset({S.IMPLEMENTING, S.VERIFYING, S.SUCCEEDED, S.EARLY_LIFE_SUPPORT})
CANCELLABLE = frozenset({S.PLANNED, S.SCHEDULED, S.BLOCKED})


class IllegalTransition(ValueError):
    """A state change the lifecycle does not allow."""


def check_transition(current: S, target: S) -> None:
    """Raise `IllegalTransition` unless `current -> target` is in the lifecycle."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise IllegalTransition(
            f"a release cannot go from {current.value} to {target.value} (allowed: {allowed})"
        )


def ready_steps(statuses: dict[int, str]) -> list[int]:
    """Steps not yet finished whose prerequisites have ended, in step order.

    A failed prerequisite has ended too: a blocked release runs nothing until a human resets
    its failed steps, and a failed release goes on to its rollback and close-out steps. The
    one exception is the rollback itself: nothing after it runs until it is done.
    """
    ended = (*FINISHED, "failed")

    def satisfied(need: int) -> bool:
        return statuses[need] in (FINISHED if need == ROLLBACK_STEP else ended)

    return [
        number
        for number, _ in STEPS
        if statuses[number] not in ended and all(satisfied(need) for need in NEEDS[number])
    ]


def next_step(
    state: S, steps: Sequence[Step], waited: set[int], now: datetime
) -> tuple[Step | None, datetime | None]:
    """The step to run now: the first ready one not seen waiting in this run (`waited`) and
    not waiting for a later `retry_at`. Else (None, when the release is due again: the
    earliest retry of a ready step; None for never, e.g. a closed or blocked release)."""
    if state in TERMINAL or state == S.BLOCKED:
        return None, None
    ready = ready_steps({s.number: s.status for s in steps})
    pending = [s for s in steps if s.number in ready]
    runnable = [s for s in pending if s.number not in waited and not _not_yet(s, now)]
    if runnable:
        return runnable[0], None
    retry = [r for r in (retry_at(s) for s in pending) if r is not None]
    return None, min(retry, default=None)


def retry_at(step: StepLike) -> datetime | None:
    """When a waiting step asks its plugins again (None: at the next run)."""
    value = step.state.get("retry_at")
    return datetime.fromisoformat(value) if value else None


def _not_yet(step: StepLike, now: datetime) -> bool:
    retry = retry_at(step)
    return step.status == "waiting" and retry is not None and retry > now
