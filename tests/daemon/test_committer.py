"""The webhook routes' group commit (`webhooks.Committer`): concurrent deliveries stored in one
transaction, each answered only after it committed; a refused or broken delivery fails alone;
nothing ever leaves a request waiting."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.app_harness import HOOK_TOKEN, AppHarness
from daemon.daemon_harness import wait_for
from itsm_bridge import inbox
from itsm_bridge.daemon import webhooks
from itsm_bridge.daemon.logs import RequestIdFilter
from itsm_bridge.daemon.webhooks import Committer, _settle
from itsm_bridge.inbox import Reception


def handler(headers: dict[str, str], body: bytes, query: dict[str, str]) -> list[dict[str, Any]]:
    document = json.loads(body)
    if document.get("crash"):
        raise RuntimeError("the handler broke")
    key = f"ci:{document['build']}"
    return [{"source": "ci", "kind": "job", "dedupe_key": key, "payload": document}]


def body(build: int, **extra: Any) -> bytes:
    return json.dumps({"build": build, **extra}).encode()


class Gate:
    """`inbox.store_deliveries` that waits until the test opens it; records batch sizes."""

    def __init__(self) -> None:
        self.real = inbox.store_deliveries
        self.entered = threading.Event()
        self.open = threading.Event()
        self.batches: list[int] = []

    def __call__(self, store: Any, deliveries: list[Any]) -> list[inbox.Outcome]:
        self.batches.append(len(deliveries))
        self.entered.set()
        assert self.open.wait(5)
        return self.real(store, deliveries)


@pytest.fixture
def h(tmp_path: Path) -> AppHarness:
    return AppHarness(tmp_path)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    made = Gate()
    monkeypatch.setattr(webhooks.inbox, "store_deliveries", made)
    yield made
    made.open.set()


async def behind_a_first_delivery(
    committer: Committer, gate: Gate, bodies: list[bytes]
) -> list[Reception]:
    """One delivery whose transaction the gate holds open, then `bodies` queued behind it;
    checks that nobody is answered before the gate opens; the answers, first one first."""
    first = asyncio.ensure_future(committer.receive(handler, {}, body(0), {}))
    await asyncio.to_thread(gate.entered.wait, 5)
    rest = [asyncio.ensure_future(committer.receive(handler, {}, b, {})) for b in bodies]
    await asyncio.sleep(0.05)  # every one of them queued meanwhile
    assert not any(f.done() for f in [first, *rest])  # none answered before its commit
    gate.open.set()
    return list(await asyncio.wait_for(asyncio.gather(first, *rest), 5))


def test_deliveries_queued_meanwhile_share_the_next_transaction(h: AppHarness, gate: Gate) -> None:
    committer = Committer(h.store)
    answers = asyncio.run(behind_a_first_delivery(committer, gate, [body(n) for n in range(1, 6)]))
    assert answers == [Reception(202, "1 event(s) stored, 0 already known")] * 6
    assert gate.batches == [1, 5]
    assert list(committer.batches) == [1, 5]
    assert h.inbox_rows() == 6


def test_a_refused_or_broken_delivery_fails_alone_in_its_batch(h: AppHarness, gate: Gate) -> None:
    committer = Committer(h.store)
    bodies = [body(1, crash=True), b"not json at all", body(2), body(2)]
    first, crashed, not_json, good, again = asyncio.run(
        behind_a_first_delivery(committer, gate, bodies)
    )
    assert first.status == good.status == again.status == 202
    assert crashed == Reception(500, "the handler failed on this delivery; see the bridge's log")
    assert not_json.status == 500  # this handler raises a plain error for it
    assert (good.reason, again.reason) == (
        "1 event(s) stored, 0 already known",
        "0 event(s) stored, 1 already known",  # the same build, stored once
    )
    assert gate.batches == [1, 2]
    assert h.inbox_rows() == 2


def test_a_bug_while_storing_answers_every_request_of_the_batch(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> list[inbox.Outcome]:
        raise RuntimeError("a bug in storing")

    monkeypatch.setattr(webhooks.inbox, "store_deliveries", broken)
    committer = Committer(h.store)

    async def deliver() -> None:
        await asyncio.wait_for(committer.receive(handler, {}, body(1), {}), 5)

    with pytest.raises(RuntimeError, match="a bug in storing"):
        asyncio.run(deliver())
    monkeypatch.undo()
    assert asyncio.run(
        asyncio.wait_for(committer.receive(handler, {}, body(2), {}), 5)
    ) == Reception(202, "1 event(s) stored, 0 already known")  # the committer goes on


def test_the_thread_ends_when_idle_and_the_next_delivery_starts_another(
    h: AppHarness,
) -> None:
    committer = Committer(h.store, idle_seconds=0.05)

    async def deliver(build: int) -> Reception:
        return await asyncio.wait_for(committer.receive(handler, {}, body(build), {}), 5)

    assert asyncio.run(deliver(1)).status == 202
    wait_for(lambda: committer._thread is None, timeout=5)
    assert asyncio.run(deliver(2)).status == 202
    assert h.inbox_rows() == 2


def test_an_answer_for_a_request_that_went_away_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    try:
        gone, waiting = loop.create_future(), loop.create_future()
        gone.cancel()
        _settle([(gone, Reception(202, "stored")), (waiting, Reception(202, "stored"))])
        assert waiting.result() == Reception(202, "stored")
    finally:
        loop.close()


def test_what_is_logged_for_a_delivery_carries_its_request_id(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    keep.addFilter(RequestIdFilter())
    logger = logging.getLogger("itsm_bridge.inbox")
    logger.addHandler(keep)

    def locked(*args: Any) -> set[str]:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("itsm_bridge.store.queues.QueueRows.inbox_add_many", locked)
    try:
        crash = {"Authorization": f"Bearer {HOOK_TOKEN}", "X-Request-ID": "r-crash"}
        crashed = h.client.post("/webhooks/ci", content=body(1, crash=True), headers=crash)
        assert crashed.status_code == 500
        locked_out = {"Authorization": f"Bearer {HOOK_TOKEN}", "X-Request-ID": "r-503"}
        response = h.client.post("/webhooks/ci", content=body(2), headers=locked_out)
        assert response.status_code == 503
    finally:
        logger.removeHandler(keep)
    by_message = {r.getMessage().split(":")[0]: getattr(r, "request_id", None) for r in records}
    assert by_message == {"webhook handler failed": "r-crash", "webhook events not stored": "r-503"}
