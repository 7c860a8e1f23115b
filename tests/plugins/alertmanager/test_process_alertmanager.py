"""The plugin's events through the core, in one process: a notification stored by
`inbox.receive`, correlated by `inbox.process_inbox`, weighed by step 13 (the fake vendor
plugin deploys and rolls back; the clock is the harness')."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsm_bridge.inbox import process_inbox, receive
from itsm_bridge_alertmanager.webhook import Handler
from plugins.alertmanager.conftest import delivery, settings
from process_harness import Harness

FINGERPRINTS = itertools.count(1)


def verifying(tmp_path: Path) -> tuple[Harness, str, datetime]:
    h = Harness(tmp_path)
    rid = h.create()
    release = h.run(rid, cycles=6)
    assert release.state.value == "verifying"
    assert release.deploy_started_at is not None
    return h, rid, release.deploy_started_at


def notify(h: Harness, *changes: dict[str, Any], name: str = "webhook-firing.json") -> None:
    """Deliver the captured notification, its first alert changed by each of `changes`
    (labels merged) as one alert of its own, and let the worker correlate it."""
    headers, body = delivery(name)
    template = body["alerts"][0]
    alerts = []
    for change in changes:
        alert = json.loads(json.dumps(template))
        alert["labels"].update(change.pop("labels", {}))
        alert.update(fingerprint=f"{next(FINGERPRINTS):016x}", **change)
        alerts.append(alert)
    body["alerts"] = alerts
    assert receive(h.store, Handler(settings()), headers, json.dumps(body).encode()).status == 202
    assert process_inbox(h.store, h.process) == []


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def test_a_firing_alert_for_the_service_rolls_the_release_back(tmp_path: Path) -> None:
    h, rid, began = verifying(tmp_path)
    notify(h, {"startsAt": stamp(began + timedelta(seconds=5))})
    release = h.run(rid, cycles=8)
    assert release.failure_reason == "alertmanager: HighErrorRate: 5xx ratio above 5% for 2m"
    assert [j["purpose"] for j in h.vendor.jobs_started][-1] == "rollback"
    assert release.state.value == "closed"


def test_what_does_not_fail_the_release(tmp_path: Path) -> None:
    h, rid, began = verifying(tmp_path)
    after = stamp(began + timedelta(seconds=5))
    notify(
        h,
        {"startsAt": after, "labels": {"service": "ledger"}},  # another service
        {"startsAt": after, "labels": {"severity": "warning"}},  # below min_severity
        {"startsAt": stamp(began - timedelta(minutes=5))},  # started before the deployment
    )
    notify(h, {"startsAt": after}, name="webhook-resolved.json")  # resolved
    with h.store.begin() as tx:
        recorded = tx.core_data(rid)["signals"]
    # recorded with the release: the early one and the resolved one (neither counts)
    assert [s["evidence"]["status"] for s in recorded] == ["firing", "resolved"]
    assert datetime.fromisoformat(recorded[0]["at"]) < began
    release = h.run(rid, cycles=3)
    assert release.state.value == "verifying"
    assert not release.failure_reason
    assert "rollback" not in [j["purpose"] for j in h.vendor.jobs_started]
