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
from itsm_bridge.store.engine import database_reason

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
    """Authenticate and parse a delivery, store its events durably, then say 202.

    (The daemon's webhook routes do the same for many deliveries at once: `webhooks.py`.)
    """
    events = parse_delivery(handler, headers, body, query or {})
    if isinstance(events, Reception):
        return events
    (outcome,) = store_deliveries(store, [events])
    return stored_answer(store, events, outcome)


def parse_delivery(
    handler: Handler, headers: dict[str, str], body: bytes, query: dict[str, str]
) -> list[dict[str, Any]] | Reception:
    """The events of a delivery (its handler authenticates and parses it), or the answer
    that refuses it: the handler's 401/400/422, or 500 when the handler failed or returned
    a malformed event (then nothing of the delivery is stored)."""
    try:
        events = handler(headers, body, query)
    except WebhookRejected as exc:
        return Reception(exc.status, exc.reason)
    except Exception:
        log.exception("webhook handler failed")
        return Reception(500, "the handler failed on this delivery; see the bridge's log")
    problem = next((p for p in map(_malformed, events) if p), "")
    if problem:
        log.error("webhook handler returned a malformed event: %s", problem)
        return Reception(500, "the handler returned a malformed event; see the bridge's log")
    return events


Outcome = int | BaseException  # events stored now, or why the delivery was not stored


def store_deliveries(store: Store, deliveries: list[list[dict[str, Any]]]) -> list[Outcome]:
    """Store the (valid) events of several deliveries in one transaction: a group commit.

    Returns, for each delivery, how many of its events were new (a dedupe key seen before,
    or earlier in the batch, is stored once), or the exception that kept it from being
    stored. A batch that fails for a reason that may be one delivery's own (not an
    operational error such as a lock or a lost connection) is stored again one delivery per
    transaction, so that one bad delivery never costs the others their 202.
    """
    if not any(deliveries):
        return [0 for _ in deliveries]
    try:
        with store.begin() as tx:
            new = tx.inbox_add_many([event for events in deliveries for event in events])
    except Exception as exc:  # the driver may raise its own (psycopg: a payload's TypeError)
        if len(deliveries) > 1 and not isinstance(exc, sa.exc.OperationalError):
            return [store_deliveries(store, [events])[0] for events in deliveries]
        return [exc for _ in deliveries]
    outcomes: list[Outcome] = []
    for events in deliveries:  # a key twice in the batch: its first event stored it
        stored = 0
        for event in events:
            if event["dedupe_key"] in new:
                new.discard(event["dedupe_key"])
                stored += 1
        outcomes.append(stored)
    return outcomes


def stored_answer(store: Store, events: list[dict[str, Any]], outcome: Outcome) -> Reception:
    """The answer to a delivery after `store_deliveries`: 202 once stored, 503 when the
    database refused it (the sender retries); any other exception is raised (a bug: 500)."""
    if isinstance(outcome, sa.exc.SQLAlchemyError):
        log.warning("webhook events not stored: %s", database_reason(outcome, store.url))
        return Reception(503, "the bridge cannot store events right now; retry later")
    if isinstance(outcome, BaseException):
        raise outcome
    return Reception(202, f"{outcome} event(s) stored, {len(events) - outcome} already known")


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


class InboxPass(NamedTuple):
    """What one pass over the inbox did."""

    failures: list[str]  # one line per event left pending because acting on it failed
    more: bool  # it took a whole batch: more events may be waiting
    took: int = 0  # the events it took


def process_inbox(store: Store, process: Process) -> list[str]:
    """Act on the stored events not yet processed (the oldest `BATCH`); returns one line per
    event left pending because acting on it failed."""
    return inbox_pass(store, process).failures


def inbox_pass(store: Store, process: Process, limit: int = BATCH) -> InboxPass:
    """Act on the oldest `limit` events not yet processed.

    The events that only wake releases (every kind but `scope` and `signal`) are acted on
    together, in one transaction: each release they concern is woken once, and they are
    marked processed. Scope and signal events are acted on one by one, and so is the whole
    batch when that transaction fails, so that a failure names its event.
    """
    with store.read() as tx:  # waking needs no payload: read them only for what reads them
        pending = tx.inbox_pending(limit=limit, exclude_kind=WORK_ITEM, payloads=False)
        one_by_one = [row for row in pending if row["kind"] in (SCOPE, SIGNAL)]
        payloads = tx.inbox_payloads([int(row["id"]) for row in one_by_one])
    try:
        _wake_together(store, process, [r for r in pending if r["kind"] not in (SCOPE, SIGNAL)])
    except Exception:
        log.debug("inbox events could not be acted on together; one by one", exc_info=True)
        one_by_one = pending  # (waking reads no payload)
    one_by_one = [{**row, "payload": payloads.get(int(row["id"]))} for row in one_by_one]
    failures = []
    for row in one_by_one:
        try:
            _act(store, process, row)  # a release it concerns is busy: the next pass takes it
        except Exception as exc:
            log.exception("inbox event %s failed", row["dedupe_key"])
            failures.append(f"inbox event {row['dedupe_key']}: {type(exc).__name__}: {exc}")
    return InboxPass(failures, len(pending) == limit, len(pending))


def _wake_together(store: Store, process: Process, rows: list[dict[str, Any]]) -> None:
    """Wake the releases these events concern (each once) and mark the events processed,
    in one transaction; an event concerning a busy release stays for the next pass."""
    if not rows:
        return
    with store.begin() as tx:
        known = tx.known_release_ids({row["release_id"] for row in rows if row["release_id"]})
        unnamed = any(row["release_id"] not in known for row in rows)
        in_progress = tx.release_ids_in(IN_PROGRESS) if unnamed else []
        targets = {
            int(row["id"]): [row["release_id"]] if row["release_id"] in known else in_progress
            for row in rows
        }
        busy = set()
        for release_id in dict.fromkeys(rid for ids in targets.values() for rid in ids):
            if not tx.lease_release(release_id, process.owner, process.lease_ttl):
                busy.add(release_id)
                continue
            try:
                tx.wake(release_id, process.clock())
            finally:
                tx.drop_release_lease(release_id, process.owner)
        tx.inbox_done_many(
            [
                (int(row["id"]), row["release_id"], _outcome(row["kind"], targets[int(row["id"])]))
                for row in rows
                if busy.isdisjoint(targets[int(row["id"])])
            ]
        )


def _outcome(kind: str, targets: list[str]) -> str:
    verb = {SCOPE: "scope read again", SIGNAL: "recorded with"}.get(kind, "woke")
    return f"{verb}: {', '.join(targets)}" if targets else "no release concerned"


def _act(store: Store, process: Process, row: dict[str, Any]) -> None:
    """Apply one event to the releases it concerns and mark it processed, in one write
    transaction. A release it concerns that another owner holds is left out, and the event
    stays pending for the next pass (applying it again is harmless: a signal replaces its
    own key, a wake is a wake)."""
    payload = row["payload"] or {}
    signal = Signal.model_validate(payload) if row["kind"] == SIGNAL else None
    with store.read() as tx:  # which releases: read off the write lock
        if row["kind"] == SCOPE:
            targets = scope_targets(tx.releases_in(lifecycle.CANCELLABLE), payload)
        elif signal is not None:
            targets = signals.concerned(tx.impacts_in(signals.WATCHED, signal.service), signal)
        elif row.get("release_id") and tx.release(row["release_id"]) is not None:
            targets = [row["release_id"]]
        else:
            targets = [r.id for r in tx.releases_in(IN_PROGRESS)]
    busy = False
    with store.begin() as tx:
        for release_id in targets:
            if not tx.lease_release(release_id, process.owner, process.lease_ttl):
                busy = True
                continue
            try:
                if row["kind"] == SCOPE:
                    refresh_scope(tx, process, release_id, row)
                elif signal is not None:
                    core = tx.core_data(release_id)
                    core[signals.CORE_KEY] = signals.recorded(core, signal)
                    tx.replace_core_data(release_id, core)
                    tx.wake(release_id, process.clock())
                else:
                    tx.wake(release_id, process.clock())
            finally:
                tx.drop_release_lease(release_id, process.owner)
        if not busy:
            tx.inbox_done(int(row["id"]), row.get("release_id"), _outcome(row["kind"], targets))


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
