"""The store on SQLite and PostgreSQL: the same code, the same answers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from itsm_bridge.lifecycle import STEPS
from itsm_bridge.models import (
    Approval,
    BacklogItem,
    ConfigurationItem,
    Event,
    ExternalRecord,
    Impact,
    JobRef,
    Release,
    ReleaseState,
    Task,
    TaskStatus,
)
from itsm_bridge.store import Store, open_store
from itsm_bridge.store.schema import SCHEMA_REVISION, metadata


@pytest.fixture
def store(database_url: str) -> Store:
    store = open_store(database_url)
    yield store
    store.close()


def release(rid: str = "rel-1", **fields: object) -> Release:
    return Release.model_validate({"id": rid, "service": "payments", "version": "1.0", **fields})


def test_migrations_create_exactly_the_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert store.current_revision() == SCHEMA_REVISION == store.head_revision()


def test_upgrade_is_idempotent(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    assert store.current_revision() == SCHEMA_REVISION


def test_release_round_trip(store: Store) -> None:
    original = release(
        name="Faster refunds",
        type="emergency",
        major=True,
        reason="CVE",
        not_before=datetime(2026, 12, 5, 22, tzinfo=timezone(timedelta(hours=1))),
        duration=timedelta(minutes=90),
        approval=Approval(status="approved", by="cab", at=datetime(2026, 12, 1, tzinfo=UTC)),
        scope=[BacklogItem(system="jira", key="PAY-1", summary="Refunds")],
        impact=Impact(cis=[ConfigurationItem(id="abc", name="payments-db")]),
    )
    with store.begin() as tx:
        tx.insert_release(original, list(STEPS))
        tx.add_record(
            "rel-1",
            ExternalRecord(
                system="servicenow", kind="change_request", id="a1", number="CHG0030001"
            ),
        )
    with store.begin() as tx:
        loaded = tx.release("rel-1")
    assert loaded is not None
    assert loaded.not_before == datetime(2026, 12, 5, 21, tzinfo=UTC)
    assert loaded.not_before.tzinfo == UTC
    assert loaded.duration == timedelta(minutes=90)
    assert loaded.approval == original.approval
    assert loaded.scope == original.scope
    assert loaded.impact == original.impact
    assert loaded.records[0].number == "CHG0030001"
    assert loaded.model_dump(exclude={"records", "created_at"}) == original.model_dump(
        exclude={"records", "created_at", "not_before"}
    ) | {"not_before": datetime(2026, 12, 5, 21, tzinfo=UTC)}


def test_naive_datetimes_are_refused(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
    with pytest.raises(sa.exc.StatementError, match="naive"), store.begin() as tx:
        tx.set_next_run("rel-1", datetime(2026, 1, 1))


def test_records_are_idempotent(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        record = ExternalRecord(system="servicenow", kind="change_task", id="t1", key="deploy")
        assert tx.add_record("rel-1", record) is True
        assert tx.add_record("rel-1", record) is False
        assert len(tx.records("rel-1")) == 1


def test_transaction_rolls_back_as_a_whole(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.add_event("rel-1", Event(actor="x", kind="k", message="lost"))
        tx.add_record("rel-1", ExternalRecord(system="s", kind="k", id="1"))
        raise RuntimeError("crash inside the transaction")
    with store.begin() as tx:
        assert tx.events("rel-1") == []
        assert tx.records("rel-1") == []


def test_tasks_keep_their_order_and_jobs(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        tx.insert_tasks(
            "rel-1", [Task(key="b", name="B", order=2), Task(key="a", name="A", order=1)]
        )
        tx.insert_tasks("rel-1", [Task(key="a", name="A again"), Task(key="c", name="C")])
        job = JobRef(system="jenkins", job="payments/deploy", purpose="deploy", queue_id="7")
        tx.save_task("rel-1", Task(key="a", name="A", status=TaskStatus.RUNNING), job)
    with store.begin() as tx:
        tasks = tx.tasks("rel-1")
        assert [t.key for t in tasks] == ["b", "a", "c"]
        assert tasks[1].status == TaskStatus.RUNNING
        assert tx.task_job("rel-1", "a") == job
        assert tx.tasks_with_jobs("rel-1") == (tasks, {"a": job})  # one read: both


def test_a_release_with_its_core_data_and_without_its_records(store: Store) -> None:
    record = ExternalRecord(system="servicenow", kind="change_request", id="a1")
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        tx.add_record("rel-1", record)
        tx.set_core_data("rel-1", notes={"title": "n"})
        found = tx.release_with_core("rel-1")
        assert found is not None
        assert found[0] == tx.release("rel-1") and found[0].records == [record]
        assert found[1] == tx.core_data("rel-1") and found[1]["notes"] == {"title": "n"}
        assert tx.release("rel-1", records=False) == found[0].model_copy(update={"records": []})
        assert tx.release_with_core("rel-nope") is None
        core = tx.core_data("rel-1")
        core["notes"] = None
        tx.replace_core_data("rel-1", core)
        assert tx.core_data("rel-1") == core


def test_steps_by_status(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        steps = tx.steps("rel-1")
        for number in (13, 5):
            steps[number - 1].status = "waiting"
            tx.save_step("rel-1", steps[number - 1])
        assert [s.number for s in tx.steps("rel-1", status="waiting")] == [5, 13]
        assert len(tx.steps("rel-1", status="pending")) == 16
        assert len(tx.steps("rel-1")) == 18


def test_events_are_append_only_and_ordered(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        for n in range(5):
            tx.add_event("rel-1", Event(actor="a", kind="k", message=f"m{n}"))
    with store.begin() as tx:
        assert [e.message for e in tx.events("rel-1")] == [f"m{n}" for n in range(5)]
        assert [e.message for e in tx.events("rel-1", limit=2)] == ["m3", "m4"]
        first_id = tx.events_after("rel-1", 0)[0][0]
        assert [e.message for _, e in tx.events_after("rel-1", first_id)] == [
            "m1",
            "m2",
            "m3",
            "m4",
        ]
        assert tx.count_events("rel-1") == 5


def test_inbox_dedupes_by_key(store: Store) -> None:
    with store.begin() as tx:
        assert tx.inbox_add("alertmanager", "am:abc", "alert", {"a": 1}) is True
        assert tx.inbox_add("alertmanager", "am:abc", "alert", {"a": 2}) is False
        (row,) = tx.inbox_pending()
        tx.inbox_done(row["id"], None, "ignored")
        assert tx.inbox_pending() == []


def test_cursors(store: Store) -> None:
    with store.begin() as tx:
        assert tx.cursor("p") is None
        tx.set_cursor("p", "2026-11-28T00:00:00Z")
        tx.set_cursor("p", "2026-11-28T01:00:00Z")
        assert tx.cursor("p") == "2026-11-28T01:00:00Z"


def test_release_lease_excludes_other_owners_until_expiry(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
    with store.begin() as tx:
        assert tx.lease_release("rel-1", "a", timedelta(minutes=5))
        assert tx.lease_release("rel-1", "a", timedelta(minutes=5))  # renew
        assert not tx.lease_release("rel-1", "b", timedelta(minutes=5))
        tx.drop_release_lease("rel-1", "a")
        assert tx.lease_release("rel-1", "b", timedelta(seconds=-1))  # already expired
        assert tx.lease_release("rel-1", "c", timedelta(minutes=5))


def test_named_lease_has_one_holder_under_contention(store: Store) -> None:
    winners: list[str] = []

    def contend(owner: str) -> None:
        with store.begin() as tx:
            if tx.take_lease("pollers", owner, timedelta(minutes=1)):
                winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"o{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_due_releases_and_summaries(store: Store) -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    with store.begin() as tx:
        for n in range(3):
            tx.insert_release(
                release(f"rel-{n}", version=f"1.{n}", created_at=now + timedelta(minutes=n)),
                list(STEPS),
            )
        tx.set_next_run("rel-0", now - timedelta(minutes=1))
        tx.set_next_run("rel-1", now + timedelta(minutes=1))
        tx.set_next_run("rel-2", None)
        assert tx.due_release_ids(now) == ["rel-0"]
        assert [r["id"] for r in tx.release_summaries()] == ["rel-2", "rel-1", "rel-0"]
        updated = release("rel-1", version="1.1", state=ReleaseState.CANCELLED)
        tx.update_release(updated)
        assert [r["id"] for r in tx.release_summaries(state="cancelled")] == ["rel-1"]
        assert tx.find_release_id("rel-") == ["rel-0", "rel-1", "rel-2"]  # sorted by id


def test_inserted_tasks_keep_their_records(store: Store) -> None:
    record = ExternalRecord(
        system="servicenow", kind="change_task", id="s1", number="CTASK1", key="deploy"
    )
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        tx.insert_tasks("rel-1", [Task(key="deploy", name="Deploy", record=record, note="n")])
        (task,) = tx.tasks("rel-1")
    assert task.record == record
    assert task.note == "n"


def test_the_rollback_target_is_the_last_good_version_of_the_same_service(store: Store) -> None:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [  # id, service, version, state, deployed (days after base), failure
        ("rel-a", "payments", "1.0", ReleaseState.CLOSED, 1, ""),
        ("rel-b", "payments", "1.1", ReleaseState.CLOSED, 2, ""),
        ("rel-c", "payments", "1.2", ReleaseState.CLOSED, 3, "smoke test failed"),
        ("rel-d", "ledger", "9.0", ReleaseState.CLOSED, 4, ""),
        ("rel-e", "payments", "1.3", ReleaseState.CANCELLED, None, ""),
        ("rel-f", "payments", "1.4", ReleaseState.FAILED, 5, "alert"),
    ]
    with store.begin() as tx:
        for rid, service, version, state, day, failure in rows:
            deployed = base + timedelta(days=day) if day is not None else None
            tx.insert_release(
                release(
                    rid,
                    service=service,
                    version=version,
                    state=state,
                    deploy_started_at=deployed,
                    failure_reason=failure,
                ),
                list(STEPS),
            )
    with store.begin() as tx:
        assert tx.last_good_version("payments", exclude="rel-f") == "1.1"
        assert tx.last_good_version("payments", exclude="rel-b") == "1.0"
        assert tx.last_good_version("ledger", exclude="rel-x") == "9.0"
        assert tx.last_good_version("billing", exclude="rel-x") == ""
        tx.insert_release(
            release(
                "rel-h",
                service="payments",
                version="1.5",
                state=ReleaseState.EARLY_LIFE_SUPPORT,
                deploy_started_at=base + timedelta(days=6),
            ),
            list(STEPS),
        )
        assert tx.last_good_version("payments", exclude="rel-f") == "1.5"


def test_one_open_release_per_service_and_version(store: Store) -> None:
    with store.begin() as tx:
        tx.insert_release(release("rel-1", state=ReleaseState.CLOSED), list(STEPS))
        tx.insert_release(release("rel-2", state=ReleaseState.CANCELLED), list(STEPS))
        tx.insert_release(release("rel-3"), list(STEPS))  # closed and cancelled do not count
        tx.insert_release(release("rel-4", version="1.1"), list(STEPS))
    with pytest.raises(sa.exc.IntegrityError), store.begin() as tx:
        tx.insert_release(release("rel-5", state=ReleaseState.BLOCKED), list(STEPS))
    with store.begin() as tx:
        assert tx.open_release("payments", "1.0") == ("rel-3", "planned")
        assert tx.release("rel-5") is None


def test_the_health_of_a_release(store: Store) -> None:
    """What the worker reads around an advance: state, attention, failed steps, failure."""
    with store.begin() as tx:
        tx.insert_release(release(), list(STEPS))
        assert tx.health("rel-1") == ("planned", "", "", "")
        assert tx.health("rel-nope") == ("", "", "", "")
        steps = {s.number: s for s in tx.steps("rel-1")}
        for number in (13, 7):
            steps[number].status = "failed"
            tx.save_step("rel-1", steps[number])
        tx.update_release(release(state="failed", failure_reason="alertmanager: down"))
        tx.set_core_data("rel-1", attention="HTTP 401")
        assert tx.health("rel-1") == ("failed", "HTTP 401", "7,13", "alertmanager: down")
        tx.set_core_data("rel-1", attention=None)  # as the outbox clears it
        assert tx.health("rel-1") == ("failed", "", "7,13", "alertmanager: down")


def test_the_releases_a_name_may_concern_are_read_narrowed_to_it(store: Store) -> None:
    """`impacts_in(states, naming)`: the releases of that service or holding that name in
    their impact; a name a JSON encoder might escape reads every watched release."""
    names = ["ci_1", "ci%1", "Ledger", "pay/db", "Zahlungsdienst-ü", 'say "hi"', "ci1"]
    watched = [ReleaseState.VERIFYING]
    with store.begin() as tx:
        for index, name in enumerate(names):
            impact = Impact(
                cis=[ConfigurationItem(id=f"id-{index}", name=name)],
                services=[ConfigurationItem(id=f"svc-{index}", name=f"service {index}")],
            )
            rid = f"rel-{index}"
            tx.insert_release(
                release(rid, service=f"svc{index}", impact=impact, state="verifying"),
                list(STEPS),
            )
        tx.insert_release(release("rel-planned", impact=Impact(cis=[])), list(STEPS))
        everything = tx.impacts_in(watched)
        assert len(everything) == len(names)
        assert [row[0] for row in tx.impacts_in(watched, "svc3")] == ["rel-3"]  # by service
        assert [row[0] for row in tx.impacts_in(watched, "id-2")] == ["rel-2"]
        assert [row[0] for row in tx.impacts_in(watched, "service 4")] == ["rel-4"]
        assert [row[0] for row in tx.impacts_in(watched, "ci%1")] == ["rel-1"]  # not a wildcard
        assert [row[0] for row in tx.impacts_in(watched, "ci_1")] == ["rel-0"]
        assert tx.impacts_in(watched, "nobody") == []
        for name in ("pay/db", "Zahlungsdienst-ü", 'say "hi"'):  # escaped by some encoders
            assert len(tx.impacts_in(watched, name)) == len(names)
        assert [row[2] for row in tx.impacts_in(watched, "id-6")] == [
            everything[6][2]
        ]  # the impact as stored, as without a name
