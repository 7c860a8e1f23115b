"""Failure signals that arrive on their own (pushed or polled alerts), kept with the releases
they concern until steps 13 and 18 read them.

A monitoring plugin stores each alert as an inbox event of kind `signal` whose payload is a
`Signal`: `key` (the same alert's firing and resolved updates share it), `service` (the
service or CI the alert names), `at` (when it started) and `evidence["status"]` (firing or
resolved). The worker correlates it (`inbox.process_inbox`): every release being watched
(implementing, verifying, succeeded, early life support) whose service, or one of whose
affected CIs or impacted services (by id or by name), is the alert's records it under its key
(a later update replaces it: a resolved alert never triggers) and is woken at once. Steps 13
and 18 read the recorded signals besides what `detect_failure` returns.
"""

from __future__ import annotations

from typing import Any

from itsm_bridge.models import Release, ReleaseState, Signal

WATCHED = frozenset(
    {
        ReleaseState.IMPLEMENTING,
        ReleaseState.VERIFYING,
        ReleaseState.SUCCEEDED,
        ReleaseState.EARLY_LIFE_SUPPORT,
    }
)
CORE_KEY = "signals"


def names_of(release: Release) -> set[str]:
    """What a signal may name to concern the release: its service, its CIs and services."""
    names = {release.service}
    if release.impact is not None:
        for ci in [*release.impact.cis, *release.impact.services]:
            names.update({ci.id, ci.name})
    return {name for name in names if name}


def concerns(release: Release, signal: Signal) -> bool:
    return bool(signal.service) and signal.service in names_of(release)


def firing(signal: Signal) -> bool:
    """A signal still firing (a resolved alert is recorded and never triggers)."""
    return str(signal.evidence.get("status") or "firing") != "resolved"


def recorded(core: dict[str, Any], signal: Signal) -> list[dict[str, Any]]:
    """The release's signals with this one added, or replacing the one with its key."""
    kept = [s for s in core.get(CORE_KEY, []) if s.get("key") != signal.key]
    return [*kept, signal.model_dump(mode="json")]


def stored(core: dict[str, Any]) -> list[Signal]:
    """The signals recorded with a release."""
    return [Signal.model_validate(s) for s in core.get(CORE_KEY, [])]
