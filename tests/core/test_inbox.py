"""The inbox: stored before acknowledged, refused deliveries store nothing, events acted on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.inbox import process_inbox, receive, scope_targets, webhook_handlers
from itsm_bridge.models import BacklogItem, Release, Signal
from process_harness import Harness

EVENT = {"source": "ci", "kind": "job", "dedupe_key": "ci:build:7:FINALIZED", "payload": {}}


def pending(h: Harness) -> list[dict[str, Any]]:
    with h.store.begin() as tx:
        return tx.inbox_pending(limit=100)


def test_a_delivery_is_stored_then_acknowledged_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    handler = lambda headers, body, query: [{**EVENT, "release_id": "rel-x"}]  # noqa: E731
    assert receive(h.store, handler, {}, b"{}") == (202, "1 event(s) stored, 0 already known")
    assert receive(h.store, handler, {}, b"{}") == (202, "0 event(s) stored, 1 already known")
    (row,) = pending(h)
    assert (row["kind"], row["release_id"]) == ("job", "rel-x")


@pytest.mark.parametrize("status", [401, 400, 422])
def test_a_refused_delivery_stores_nothing(tmp_path: Path, status: int) -> None:
    h = Harness(tmp_path)

    def handler(headers: dict[str, str], body: bytes, query: dict[str, str]) -> list[Any]:
        raise WebhookRejected(status, "missing or wrong token")

    assert receive(h.store, handler, {}, b"{}") == (status, "missing or wrong token")
    assert pending(h) == []


def test_the_query_reaches_the_handler(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seen: list[dict[str, str]] = []

    def handler(headers: dict[str, str], body: bytes, query: dict[str, str]) -> list[Any]:
        seen.append(query)
        return []

    assert receive(h.store, handler, {}, b"", {"token": "t"}).status == 202
    assert seen == [{"token": "t"}]


def test_a_store_that_fails_answers_503_so_the_sender_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("itsm_bridge.store.queues.QueueRows.inbox_add_many", broken)
    status, reason = receive(h.store, lambda *a: [EVENT], {}, b"{}")
    assert status == 503
    assert "retry" in reason


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "job", "dedupe_key": "k", "payload": {}},
        {**EVENT, "payload": "not an object"},
        {**EVENT, "dedupe_key": ""},
        {**EVENT, "release_id": 7},
        "not a dict",
    ],
)
def test_a_malformed_event_from_a_handler_stores_nothing(tmp_path: Path, event: Any) -> None:
    h = Harness(tmp_path)
    assert receive(h.store, lambda *a: [EVENT, event], {}, b"{}").status == 500
    assert pending(h) == []  # not even the good one: a delivery is stored whole or not at all


def test_an_event_naming_a_release_wakes_its_waiting_step(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    h.run(rid)
    with h.store.begin() as tx:
        build = next(s for s in tx.steps(rid) if s.number == 4)
    assert build.status == "waiting" and build.state["retry_at"]
    receive(h.store, lambda *a: [{**EVENT, "release_id": rid}], {}, b"{}")
    assert process_inbox(h.store, h.process) == []
    with h.store.begin() as tx:
        build = next(s for s in tx.steps(rid) if s.number == 4)
        assert build.state["retry_at"] is None
        assert tx.due_release_ids(h.clock.now) == [rid]
    assert pending(h) == []


def test_an_event_without_a_release_wakes_every_release_in_progress(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    first, second = h.create(), h.create(version="1.1.0")
    h.commands.cancel(second, "not this one")
    with h.store.begin() as tx:
        tx.set_next_run(first, None)
        tx.set_next_run(second, None)
    receive(h.store, lambda *a: [EVENT], {}, b"{}")
    process_inbox(h.store, h.process)
    with h.store.begin() as tx:
        assert tx.due_release_ids(h.clock.now) == [first]


def test_a_busy_release_leaves_the_event_for_the_next_pass(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rid = h.create()
    with h.store.begin() as tx:
        assert tx.lease_release(rid, "another-replica", h.process.lease_ttl)
    receive(h.store, lambda *a: [{**EVENT, "release_id": rid}], {}, b"{}")
    process_inbox(h.store, h.process)
    assert len(pending(h)) == 1
    with h.store.begin() as tx:
        tx.drop_release_lease(rid, "another-replica")
    process_inbox(h.store, h.process)
    assert pending(h) == []


class Backlog:
    """A backlog plugin whose scope the test changes."""

    def __init__(self) -> None:
        self.keys = {"1.0.0": ["PAY-1", "PAY-2"], "2.0.0": ["PAY-9"]}

    @hookimpl
    def release_scope(self, release: Release) -> list[BacklogItem]:
        keys = self.keys.get(release.version, [])
        return [BacklogItem(system="jira", key=k, summary=k, kind="Story") for k in keys]


def scope_event(key: str, versions: list[str]) -> dict[str, Any]:
    return {
        "source": "jira",
        "kind": "scope",
        "dedupe_key": f"jira:{key}:{len(versions)}",
        "payload": {"key": key, "versions": versions},
    }


def test_a_backlog_change_reads_scope_and_notes_again_and_says_what_changed(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.process.host.pm.unregister(name="fake")
    h.process.host.register(Backlog(), "backlog", version="0", module="t")
    from fake_vendor import FakeVendorPlugin

    class NoScope(FakeVendorPlugin):
        release_scope = None  # type: ignore[assignment]

    h.process.host.register(NoScope(h.vendor), "fake", version="0", module="t")
    backlog = h.process.host.plugin("backlog")
    assert isinstance(backlog, Backlog)
    h.vendor.approval = "pending"
    rid = h.create()
    h.run(rid, cycles=4)
    assert [i.key for i in h.release(rid).scope] == ["PAY-1", "PAY-2"]
    other = h.create(version="2.0.0")  # another version: not concerned
    h.run(other, cycles=4)

    backlog.keys["1.0.0"] = ["PAY-1", "PAY-3"]  # PAY-3 joined 1.0.0, PAY-2 left it
    events = [scope_event("PAY-3", ["1.0.0"]), scope_event("PAY-2", [])]
    assert receive(h.store, lambda *a: events, {}, b"{}").status == 202
    assert process_inbox(h.store, h.process) == []
    assert {s: h.steps(rid)[s][0] for s in ("backlog", "notes")} == {
        "backlog": "pending",
        "notes": "pending",
    }
    assert h.steps(other)["backlog"][0] == "done"
    h.run(rid)
    assert [i.key for i in h.release(rid).scope] == ["PAY-1", "PAY-3"]
    assert h.events(rid, "scope") == ["the release's backlog changed: added PAY-3; removed PAY-2"]
    with h.store.begin() as tx:
        notes = tx.core_data(rid)["notes"]
    assert "PAY-3" in notes["markdown"] and "PAY-2" not in notes["markdown"]


def test_the_handlers_plugins_register(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    class Hooks:
        @hookimpl
        def register_webhooks(self, register: Any) -> None:
            register("ci", lambda *a: [])

    h.process.host.register(Hooks(), "ci", version="0", module="t")
    assert list(webhook_handlers(h.process.host)) == ["ci"]
    h.process.host.register(Hooks(), "ci2", version="0", module="t")
    with pytest.raises(ValueError, match="two plugins register the webhook 'ci'"):
        webhook_handlers(h.process.host)


def test_the_releases_a_backlog_change_concerns() -> None:
    def release(rid: str, version: str, *keys: str) -> Release:
        items = [BacklogItem(system="jira", key=k, summary=k) for k in keys]
        return Release(id=rid, service="payments", version=version, scope=items)

    releases = [release("a", "1.0.0", "PAY-1"), release("b", "2.0.0"), release("c", "3.0.0")]
    assert scope_targets(releases, {"key": "PAY-7", "versions": ["2.0.0"]}) == ["b"]
    assert scope_targets(releases, {"key": "PAY-1", "versions": []}) == ["a"]  # it left 1.0.0
    assert scope_targets(releases, {"key": "PAY-1", "versions": ["3.0.0"]}) == ["a", "c"]
    assert scope_targets(releases, {"key": "PAY-8", "versions": ["9.9"]}) == []


def alert_event(key: str, at: Any, status: str = "firing", service: str = "payments") -> dict:
    signal = Signal(
        source="alertmanager",
        key=key,
        summary=f"alert {key}",
        at=at,
        service=service,
        evidence={"status": status},
    )
    return {
        "source": "alertmanager",
        "kind": "signal",
        "dedupe_key": f"alertmanager:{key}:{status}",
        "payload": signal.model_dump(mode="json"),
    }


def test_a_signal_is_recorded_with_the_watched_releases_it_concerns(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    watched = h.create()
    h.run(watched, cycles=6)
    assert h.release(watched).state.value == "verifying"
    planned = h.create(version="2.0.0")  # not deployed: not watched
    with h.store.begin() as tx:
        tx.set_next_run(watched, None)
        tx.set_next_run(planned, None)
    events = [
        alert_event("fp1", h.clock.now),
        alert_event("fp2", h.clock.now, service="ledger"),  # another service
        alert_event("fp1", h.clock.now, status="resolved"),
    ]
    receive(h.store, lambda *a: events, {}, b"{}")
    assert process_inbox(h.store, h.process) == []
    with h.store.begin() as tx:
        recorded = tx.core_data(watched).get("signals")
        assert tx.core_data(planned).get("signals") is None
        assert tx.due_release_ids(h.clock.now) == [watched]
    assert [(s["key"], s["evidence"]["status"]) for s in recorded] == [("fp1", "resolved")]
