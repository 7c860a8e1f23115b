"""One sync cycle, and what it broke.

`run_cycle` is `sync --once`: intake (demands and problems), every poller once, the inbox, then
every due release. Its report has one line per failure of the cycle: an intake source or a
poller that failed, an inbox event left pending, a release that became blocked or failed, got
a failed step, or needs attention (`sync --once` prints them and exits 1; cron must notice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from itsm_bridge.models import ReleaseState
from itsm_bridge.store import Store

if TYPE_CHECKING:
    from itsm_bridge.process import Process

Health = tuple[str, str, str, str]  # state, attention, failed steps, failure reason


@dataclass
class CycleReport:
    """What one pass did: new backlog items, ids advanced, one line per new failure."""

    advanced: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    backlog_items: int = 0


def run_cycle(process: Process) -> CycleReport:
    """One cycle of everything `sync --once` runs, in order; failures collected, not raised."""
    from itsm_bridge.inbox import process_inbox
    from itsm_bridge.intake import run_intake
    from itsm_bridge.pollers import run_pollers

    intake = run_intake(process.store, process.host)
    failures = intake.errors + run_pollers(process.store, process.host)
    failures += process_inbox(process.store, process)
    report = process.run_due()
    report.failures = failures + report.failures
    report.backlog_items = intake.created
    return report


def health(store: Store, release_id: str) -> Health:
    """(state, attention, failed steps, failure) of a release, to tell what a cycle broke."""
    with store.read() as tx:
        return tx.health(release_id)


def new_troubles(store: Store, release_id: str, before: Health) -> list[str]:
    """One line per failure a cycle caused: blocked, failed, a failed step, held delivery."""
    now = health(store, release_id)
    if now == before:
        return []
    state, attention, failed, failure = now
    with store.begin() as tx:
        release = tx.release(release_id)
        steps = {s.number: s for s in tx.steps(release_id)}
    assert release is not None
    lines = []
    if state != before[0] and release.state == ReleaseState.BLOCKED:
        blocked = [s for s in steps.values() if s.status == "failed"]
        why = blocked[-1].detail if blocked else "a gate said no"
        lines.append(f"release {release_id} is blocked: {why}")
    elif failure and failure != before[3]:  # failed, and maybe already rolling back
        lines.append(f"release {release_id} failed ({state}): {failure}")
    elif failed and failed != before[2] and release.state != ReleaseState.BLOCKED:
        for number in set(failed.split(",")) - set(before[2].split(",")):
            step = steps[int(number)]
            lines.append(f"release {release_id}: step {number} {step.name} failed: {step.detail}")
    if attention and attention != before[1]:
        lines.append(f"release {release_id} needs attention: {attention}")
    return lines
