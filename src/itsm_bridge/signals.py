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

from collections.abc import Iterable
from typing import Any

from itsm_bridge.models import ReleaseState, Signal

WATCHED = frozenset(
    {
        ReleaseState.IMPLEMENTING,
        ReleaseState.VERIFYING,
        ReleaseState.SUCCEEDED,
        ReleaseState.EARLY_LIFE_SUPPORT,
    }
)
CORE_KEY = "signals"


def names_in(service: str, impact: Any) -> set[str]:
    """What a signal may name to concern a release: its service, the ids and names of its
    CIs and services (its impact as stored: a dict, or None)."""
    names = {service}
    if isinstance(impact, dict):
        for ci in [*(impact.get("cis") or []), *(impact.get("services") or [])]:
            if isinstance(ci, dict):
                names.update({str(ci.get("id") or ""), str(ci.get("name") or "")})
    return {name for name in names if name}


def concerned(watched: Iterable[tuple[str, str, Any]], signal: Signal) -> list[str]:
    """The ids of the releases a signal concerns, among `(id, service, impact as stored)`."""
    if not signal.service:
        return []
    return [rid for rid, service, impact in watched if signal.service in names_in(service, impact)]


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
