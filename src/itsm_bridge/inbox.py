"""The inbox: inbound events are stored before they are acknowledged, then acted on.

`receive` is what a webhook route does (the daemon serves it; tests call it directly): the
plugin's handler authenticates and parses the delivery into events, the events are stored
with their dedupe keys in one transaction, and only then is the sender told 202. A refused
delivery (401, 400, 422) stores nothing; a fault inside the bridge answers 503 (senders retry).

`process_inbox` is the worker's part: each stored event is acted on once, by kind (see the
`register_webhooks` hookspec): `scope` makes the releases it concerns read their scope and
notes again; `signal` (a `Signal`: an alert) is recorded with the watched releases it concerns
(`signals.py`), which are woken; any other kind wakes the release it names, or every release
in progress, so their waiting steps ask their plugins at once. `work_item` events belong to intake
(`intake.py`). A release another owner holds is left for the next pass; nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from itsm_bridge import lifecycle, signals
from itsm_bridge.errors import WebhookRejected
from itsm_bridge.models import Event, Release, ReleaseState, Signal
from itsm_bridge.plugins import PluginHost
from itsm_bridge.store import Store, Tx

if TYPE_CHECKING:
    from itsm_bridge.process import Process

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, str], bytes, dict[str, str]], list[dict[str, Any]]]
WORK_ITEM, SCOPE, SIGNAL = "work_item", "scope", "signal"
BACKLOG_STEP, NOTES_STEP = 3, 10
BATCH = 500
# States in which a release is in progress: an event may concern it.
IN_PROGRESS = frozenset(ReleaseState) - lifecycle.TERMINAL - {ReleaseState.BLOCKED}


class Reception(NamedTuple):
    """The answer a webhook route gives: its HTTP status and a one-line reason."""

    status: int
    reason: str


def webhook_handlers(host: PluginHost) -> dict[str, Handler]:
    """The handlers plugins contribute through `register_webhooks`, by route name."""
    handlers: dict[str, Handler] = {}

    def register(name: str, handler: Handler) -> None:
        if name in handlers:
            raise ValueError(f"two plugins register the webhook {name!r}")
        handlers[name] = handler

    host.hook.register_webhooks(register=register)
    return handlers


def receive(
    store: Store,
    handler: Handler,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str] | None = None,
) -> Reception:
    """Authenticate and parse a delivery, store its events durably, then say 202."""
    try:
        events = handler(headers, body, query or {})
    except WebhookRejected as exc:
        return Reception(exc.status, exc.reason)
    except Exception:
        log.exception("webhook handler failed")
        return Reception(500, "the handler failed on this delivery; see the bridge's log")
    problem = next((p for p in map(_malformed, events) if p), "")
    if problem:
        log.error("webhook handler returned a malformed event: %s", problem)
        return Reception(500, "the handler returned a malformed event; see the bridge's log")
    try:
        with store.begin() as tx:
            stored = sum(store_event(tx, event) for event in events)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("webhook events not stored: %s", exc)
        return Reception(503, "the bridge cannot store events right now; retry later")
    return Reception(202, f"{stored} event(s) stored, {len(events) - stored} already known")


def store_event(tx: Tx, event: dict[str, Any]) -> bool:
    """Store one event dict (webhook or poller) once; False when its key was seen before."""
    return tx.inbox_add(
        event["source"],
        event["dedupe_key"],
        event["kind"],
        event["payload"],
        release_id=event.get("release_id"),
    )


def _malformed(event: Any) -> str:
    if not isinstance(event, dict):
        return f"not a dict: {type(event).__name__}"
    for key in ("source", "kind", "dedupe_key"):
        if not isinstance(event.get(key), str) or not event[key]:
            return f"{key} must be a non-empty string"
    if not isinstance(event.get("payload"), dict):
        return "payload must be a JSON object"
    if event.get("release_id") is not None and not isinstance(event["release_id"], str):
        return "release_id must be a string"
    return ""


def process_inbox(store: Store, host: PluginHost, process: Process) -> list[str]:
    """Act on every stored event not yet processed; returns one line per event left pending."""
    with store.begin() as tx:
        pending = tx.inbox_pending(limit=BATCH, exclude_kind=WORK_ITEM)
    failures = []
    for row in pending:
        try:
            outcome = _act(store, process, row)
        except Exception as exc:
            log.exception("inbox event %s failed", row["dedupe_key"])
            failures.append(f"inbox event {row['dedupe_key']}: {type(exc).__name__}: {exc}")
            continue
        if outcome is None:
            continue  # a release it concerns is busy: the next pass takes it
        with store.begin() as tx:
            tx.inbox_done(int(row["id"]), row.get("release_id"), outcome)
    return failures


def _act(store: Store, process: Process, row: dict[str, Any]) -> str | None:
    """Apply one event to the releases it concerns; None when one of them is busy."""
    payload = row["payload"] or {}
    signal = Signal.model_validate(payload) if row["kind"] == SIGNAL else None
    with store.begin() as tx:
        if row["kind"] == SCOPE:
            targets = scope_targets(tx.releases_in(lifecycle.CANCELLABLE), payload)
        elif signal is not None:
            watched = tx.releases_in(signals.WATCHED)
            targets = [r.id for r in watched if signals.concerns(r, signal)]
        elif row.get("release_id") and tx.release(row["release_id"]) is not None:
            targets = [row["release_id"]]
        else:
            targets = [r.id for r in tx.releases_in(IN_PROGRESS)]
    for release_id in targets:
        with store.begin() as tx:
            if not tx.lease_release(release_id, process.owner, process.lease_ttl):
                return None
            try:
                if row["kind"] == SCOPE:
                    refresh_scope(tx, process, release_id, row)
                elif signal is not None:
                    core = tx.core_data(release_id)
                    tx.set_core_data(release_id, signals=signals.recorded(core, signal))
                    tx.wake(release_id, process.clock())
                else:
                    tx.wake(release_id, process.clock())
            finally:
                tx.drop_release_lease(release_id, process.owner)
    verb = {SCOPE: "scope read again", SIGNAL: "recorded with"}.get(row["kind"], "woke")
    return f"{verb}: {', '.join(targets)}" if targets else "no release concerned"


def scope_targets(releases: Iterable[Release], payload: dict[str, Any]) -> list[str]:
    """Releases not yet deploying that a backlog change concerns: their version is among the
    issue's fixVersions, or their scope holds the issue (it may have left the version)."""
    key = str(payload.get("key") or "")
    versions = {str(v) for v in payload.get("versions") or []}
    return [
        r.id
        for r in releases
        if r.version in versions or (key and any(item.key == key for item in r.scope))
    ]


def refresh_scope(tx: Tx, process: Process, release_id: str, row: dict[str, Any]) -> None:
    """Run steps 3 (backlog) and 10 (notes) again, once they have run; step 3 says what
    changed (a `scope` event for the change's work note)."""
    steps = {s.number: s for s in tx.steps(release_id)}
    if steps[BACKLOG_STEP].status not in lifecycle.FINISHED:
        return  # it has not read its scope yet: it will read the new one
    for number in (BACKLOG_STEP, NOTES_STEP):
        step = steps[number]
        if step.status in lifecycle.FINISHED:
            step.status, step.detail, step.finished_at, step.attempts = "pending", "", None, 0
            step.state = {}
            tx.save_step(release_id, step)
    key = (row["payload"] or {}).get("key") or row["dedupe_key"]
    tx.add_event(
        release_id,
        Event(
            at=process.clock(),
            actor=str(row["source"]),
            kind="step",
            message=f"the backlog changed ({key}): scope and notes are read again",
            evidence={"step": BACKLOG_STEP, "status": "pending", "key": key},
        ),
    )
    tx.wake(release_id, process.clock())
