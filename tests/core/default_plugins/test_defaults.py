"""The fallback plugins, each called through the hook as the core calls it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import SecurityError

from itsm_bridge.default_plugins import notes as notes_plugin
from itsm_bridge.models import (
    Approval,
    BacklogItem,
    Delivery,
    Event,
    Impact,
    Notice,
    PostMortemReport,
    Release,
    ReleaseState,
    StepSummary,
)
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping

CONFIG = {
    "windows": {
        "timezone": "Europe/Berlin",
        "maintenance": [
            {
                "name": "Weekly",
                "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0",
                "duration": "4h",
            }
        ],
        "freezes": [{"name": "Year end", "start": "2026-12-15", "end": "2027-01-05"}],
    },
    "services": {
        "payments": {
            "tasks": [
                {"name": "Stop database", "group": "Database Administration", "before": "deploy"},
                {"name": "Start database", "group": "Database Administration", "after": "deploy"},
                {
                    "name": "Warm caches",
                    "kind": "automated",
                    "job": "payments/warm",
                    "after": "smoke_test",
                },
            ]
        }
    },
}


@pytest.fixture
def host(tmp_path: Path) -> PluginHost:
    return load_plugins(settings_from_mapping({**CONFIG, "data_dir": str(tmp_path)}))


def release(**fields: object) -> Release:
    base: dict[str, object] = {"id": "rel-1", "service": "payments", "version": "1.0.0"}
    return Release.model_validate({**base, "name": "Faster refunds", **fields})


def test_hook_maintenance_windows(host: PluginHost) -> None:
    start = datetime(2026, 11, 28, tzinfo=UTC)
    results = host.hook.maintenance_windows(
        release=release(), start=start, end=datetime(2026, 12, 13, tzinfo=UTC)
    )
    windows = [w for result in results for w in result]
    # Saturdays 22:00 Berlin (CET, UTC+1) = 21:00 UTC, four hours each
    assert [w.start for w in windows] == [
        datetime(2026, 11, 28, 21, tzinfo=UTC),
        datetime(2026, 12, 5, 21, tzinfo=UTC),
        datetime(2026, 12, 12, 21, tzinfo=UTC),
    ]
    assert all((w.end - w.start).total_seconds() == 4 * 3600 for w in windows)


def test_hook_freeze_periods(host: PluginHost) -> None:
    results = host.hook.freeze_periods(
        release=release(),
        start=datetime(2026, 12, 1, tzinfo=UTC),
        end=datetime(2027, 2, 1, tzinfo=UTC),
    )
    (freeze,) = [f for result in results for f in result]
    assert freeze.start == datetime(2026, 12, 14, 23, tzinfo=UTC)
    assert freeze.end == datetime(2027, 1, 5, 23, tzinfo=UTC)
    outside = host.hook.freeze_periods(
        release=release(),
        start=datetime(2027, 2, 1, tzinfo=UTC),
        end=datetime(2027, 3, 1, tzinfo=UTC),
    )
    assert [f for result in outside for f in result] == []


def test_hook_plan_tasks(host: PluginHost) -> None:
    (specs,) = host.hook.plan_tasks(release=release(), impact=Impact())
    by_key = {s.key: s for s in specs}
    assert set(by_key) == {"stop-database", "start-database", "warm-caches"}
    assert by_key["stop-database"].order < 100 < by_key["start-database"].order < 200
    assert by_key["warm-caches"].order > 200
    assert by_key["warm-caches"].kind == "automated"
    assert by_key["warm-caches"].job == "payments/warm"
    assert by_key["stop-database"].group == "Database Administration"
    other = host.hook.plan_tasks(release=release(service="unknown"), impact=Impact())
    assert other == [[]]


def test_hook_approval_status(host: PluginHost) -> None:
    assert host.hook.approval_status(release=release()).status == "pending"
    given = Approval(status="rejected", by="cab", comment="no back-out plan")
    assert host.hook.approval_status(release=release(approval=given)) == given
    assert host.hook.approval_status(release=release(type="standard")).status == "approved"


def test_hook_render_release_notes(host: PluginHost) -> None:
    items = [
        BacklogItem(
            system="jira", key="PAY-1", summary="Refund <fast>", kind="Story", url="http://j/PAY-1"
        ),
        BacklogItem(system="jira", key="PAY-2", summary="Fix rounding", kind="Bug"),
        BacklogItem(system="jira", key="PAY-3", summary="Refund audit", kind="Story"),
    ]
    notes = host.hook.render_release_notes(release=release(), items=items)
    assert notes.title == "payments 1.0.0: Faster refunds"
    changes = notes.markdown.split("## Changes\n", 1)[1]
    assert [line for line in changes.splitlines() if line] == [  # grouped by type, linked
        "### Story",
        "- [PAY-1](http://j/PAY-1) Refund <fast>",
        "- PAY-3 Refund audit",
        "### Bug",
        "- PAY-2 Fix rounding",
    ]
    assert '<h3>Story</h3>\n<ul>\n<li><a href="http://j/PAY-1">PAY-1</a> Refund &lt;fast&gt;' in (
        notes.html
    )
    assert "<h3>Bug</h3>\n<ul>\n<li>PAY-2 Fix rounding</li>" in notes.html
    empty = host.hook.render_release_notes(release=release(), items=[])
    assert "No backlog items" in empty.markdown


def test_release_notes_data_is_never_evaluated(host: PluginHost) -> None:
    hostile = BacklogItem(system="jira", key="PAY-3", summary="{{ ''.__class__.__mro__ }}")
    notes = host.hook.render_release_notes(release=release(), items=[hostile])
    assert "{{ ''.__class__.__mro__ }}" in notes.markdown


@pytest.mark.parametrize("env", [notes_plugin._markdown_env, notes_plugin._html_env])
def test_release_notes_templates_run_in_a_sandbox(env: jinja2.Environment) -> None:
    """A template reaching for Python internals renders in a plain Jinja environment and is
    refused by the notes' environments."""
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() | length }}"
    assert int(jinja2.Environment().from_string(escape).render()) > 0  # what it would reach
    with pytest.raises(SecurityError):
        env.from_string(escape).render()


def test_hook_notify_stakeholders(host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    told = Notice(kind="succeeded", subject="Released", text="All good", recipients=["a@x"])
    with caplog.at_level(logging.INFO, logger="itsm_bridge.notify"):
        answer = host.hook.notify_stakeholders(release=release(), notice=told)
    assert answer == [[Delivery(channel="log", target="a@x", ok=True)]]
    assert "rel-1: Released (to a@x)\nAll good" in caplog.text


def test_hook_post_mortem(host: PluginHost, tmp_path: Path) -> None:
    timeline = [
        Event(
            at=datetime(2026, 12, 5, 21, tzinfo=UTC),
            actor="itsm-bridge",
            kind="step",
            message="deploy started",
        ),
        Event(
            at=datetime(2026, 12, 5, 21, 5, tzinfo=UTC),
            actor="alertmanager",
            kind="failure",
            message="HighErrorRate | firing",
        ),
    ]
    steps = [
        StepSummary(
            number=11,
            name="deploy",
            status="done",
            started_at=datetime(2026, 12, 5, 21, tzinfo=UTC),
            finished_at=datetime(2026, 12, 5, 21, 3, 20, tzinfo=UTC),
            detail="2 task(s) done",
        )
    ]
    report = PostMortemReport(
        timeline=timeline,
        steps=steps,
        failure_evidence={"signals": "HighErrorRate <script>"},
        rolled_back_to="0.9.0",
        follow_ups=["Find and fix the root cause of: HighErrorRate"],
    )
    failed = release(state=ReleaseState.ROLLED_BACK).model_copy(
        update={"failure_reason": "alertmanager: HighErrorRate"}
    )
    (records,) = host.hook.post_mortem(release=failed, report=report)
    assert [(r.kind, r.key) for r in records] == [("post_mortem", "md"), ("post_mortem", "html")]
    text = Path(records[0].id).read_text()
    assert Path(records[0].id).parent == tmp_path / "post-mortems"
    assert "Outcome: rolled_back (failed: alertmanager: HighErrorRate)" in text
    assert "## What went wrong" in text
    assert "was rolled back to 0.9.0" in text
    assert "| 11 | deploy | done | 2026-12-05 21:00:00 | 0h03m20s | 2 task(s) done |" in text
    rows = [line for line in text.split("## Timeline")[1].splitlines() if line.startswith("| 2")]
    assert rows == [  # every event, in order, one row each
        "| 2026-12-05 21:00:00 | itsm-bridge | deploy started |",
        "| 2026-12-05 21:05:00 | alertmanager | HighErrorRate \\| firing |",
    ]
    assert "- [ ] Find and fix the root cause of: HighErrorRate" in text
    html = Path(records[1].id).read_text()
    assert "HighErrorRate &lt;script&gt;" in html
    assert "<td>HighErrorRate | firing</td>" in html
