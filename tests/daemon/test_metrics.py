"""The daemon's metrics: every series and its labels, releases by state and inbox depth read
from the store at scrape time, a store that does not answer, and `/metrics`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from daemon.app_harness import AppHarness
from itsm_bridge.daemon.metrics import Metrics
from itsm_bridge.models import ReleaseState
from itsm_bridge.process import Process


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_each_report_becomes_its_series_with_its_labels() -> None:
    metrics = Metrics()
    metrics.webhook("jira", 202)
    metrics.webhook("jira", 202)
    metrics.webhook("jira", 401)
    metrics.step(4, "done", 1.5)
    metrics.step(4, "done", 0.01)
    metrics.step(6, "waiting", -0.5)  # a clock step backwards counts as 0
    metrics.outbound("servicenow", "201")
    metrics.outbound("servicenow", "error")
    metrics.plugin_up("jira", True)
    metrics.plugin_up("jenkins", True)
    metrics.plugin_up("jenkins", False)
    metrics.delivery("email", True)
    metrics.delivery("slack", False)
    found = samples(metrics)
    assert found[("itsm_bridge_webhooks_total", (("source", "jira"), ("status", "202")))] == 2
    assert found[("itsm_bridge_webhooks_total", (("source", "jira"), ("status", "401")))] == 1
    step4 = (("status", "done"), ("step", "4"))
    assert found[("itsm_bridge_step_duration_seconds_count", step4)] == 2
    assert found[("itsm_bridge_step_duration_seconds_sum", step4)] == pytest.approx(1.51)
    assert found[("itsm_bridge_step_duration_seconds_bucket", (("le", "0.05"), *step4))] == 1
    assert found[("itsm_bridge_step_duration_seconds_bucket", (("le", "1.0"), *step4))] == 1
    assert found[("itsm_bridge_step_duration_seconds_bucket", (("le", "2.5"), *step4))] == 2
    waiting = (("status", "waiting"), ("step", "6"))
    assert found[("itsm_bridge_step_duration_seconds_sum", waiting)] == 0
    out = "itsm_bridge_outbound_requests_total"
    assert found[(out, (("plugin", "servicenow"), ("status", "201")))] == 1
    assert found[(out, (("plugin", "servicenow"), ("status", "error")))] == 1
    assert found[("itsm_bridge_plugin_up", (("plugin", "jira"),))] == 1
    assert found[("itsm_bridge_plugin_up", (("plugin", "jenkins"),))] == 0
    deliveries = "itsm_bridge_deliveries_total"
    assert found[(deliveries, (("channel", "email"), ("result", "ok")))] == 1
    assert found[(deliveries, (("channel", "slack"), ("result", "failed")))] == 1
    assert not any(name.startswith("itsm_bridge_releases") for name, _ in found)  # no store


def test_two_metrics_objects_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.webhook("ci", 202)
    assert ("itsm_bridge_webhooks_total", (("source", "ci"), ("status", "202"))) not in samples(
        second
    )


def test_releases_by_state_and_inbox_depth_are_read_at_scrape_time(tmp_path: Path) -> None:
    h = AppHarness(tmp_path)
    found = samples(h.metrics)
    assert {
        labels[0][1]: value for (name, labels), value in found.items()
        if name == "itsm_bridge_releases"
    } == {state.value: 0 for state in ReleaseState}  # fmt: skip
    assert found[("itsm_bridge_inbox_depth", ())] == 0
    first = h.create("1.0.0")
    h.create("1.0.1")
    h.commands.cancel(first, "superseded")
    with h.store.begin() as tx:
        for key in ("a", "b", "c"):
            tx.inbox_add("ci", key, "job", {})
        done = tx.inbox_pending()[0]
        tx.inbox_done(int(done["id"]), None, "woke")
    found = samples(h.metrics)
    assert found[("itsm_bridge_releases", (("state", "planned"),))] == 1
    assert found[("itsm_bridge_releases", (("state", "cancelled"),))] == 1
    assert found[("itsm_bridge_releases", (("state", "closed"),))] == 0
    assert found[("itsm_bridge_inbox_depth", ())] == 2


def test_a_store_that_does_not_answer_leaves_only_its_own_series_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = AppHarness(tmp_path)
    h.metrics.webhook("ci", 202)

    def away(*args: Any) -> Any:
        raise sa.exc.OperationalError("BEGIN", {}, Exception("password=hunter2 refused"))

    monkeypatch.setattr(h.store, "begin", away)
    monkeypatch.setattr(h.store, "read", away)
    response = h.client.get("/metrics")
    assert response.status_code == 200
    assert "itsm_bridge_webhooks_total" in response.text
    assert "itsm_bridge_releases" not in response.text
    assert "itsm_bridge_inbox_depth" not in response.text
    assert "metrics: the database did not answer: OperationalError" in caplog.text
    assert "hunter2" not in caplog.text


def test_the_metrics_route_serves_prometheus_text(tmp_path: Path) -> None:
    h = AppHarness(tmp_path)
    h.create()
    response = h.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'itsm_bridge_releases{state="planned"} 1.0' in response.text
    assert "# TYPE itsm_bridge_step_duration_seconds histogram" in response.text


def test_step_fits_the_process_on_step_callback(tmp_path: Path) -> None:
    h = AppHarness(tmp_path)
    rid = h.create()
    process = Process(h.store, h.host, h.settings, on_step=h.metrics.step)
    process.advance(rid)
    found = samples(h.metrics)
    counts = {
        dict(labels)["step"]: value
        for (name, labels), value in found.items()
        if name == "itsm_bridge_step_duration_seconds_count"
    }
    assert counts and all(value >= 1 for value in counts.values())
    assert "8" in counts  # step 8 (CMDB) runs first on a new release
