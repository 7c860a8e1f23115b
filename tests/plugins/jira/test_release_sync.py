"""`release_changed` against the sandbox, Cloud and Data Center: a successful release releases
its version, comments once on each issue and moves it to Done; a scheduled one dates its
version; every other event costs no request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from itsm_bridge.models import Event, Release
from itsm_bridge_jira import JiraPlugin
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration
SHIPPED = ["PAY-9", "PAY-10", "PAY-11"]  # 1.4.0 in the seed
AT = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)  # 00:30 on the 6th in Berlin


def state(to: str, at: datetime = AT) -> Event:
    return Event(at=at, actor="core", kind="state", message=f"-> {to}", evidence={"to": to})


def test_success_releases_the_version_and_closes_the_issues(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release(version="1.4.0", name="Faster refunds")
    jira.clear_log()

    plugin.release_changed(release, state("succeeded"))

    version = jira.version("PAY", "1.4.0")
    assert version is not None and version["released"] is True
    assert version["releaseDate"] == "2026-12-06"  # the day in the bridge's time zone
    for key in SHIPPED:
        fields = jira.issue(key)["fields"]
        assert fields["status"]["name"] == "Done", key
        [comment] = jira.comments(key)
        assert "1.4.0" in comment and "CHG0030002" in comment
    # the Bug's Resolve screen requires a resolution: sent there, and only there
    [resolve] = jira.requests_to("POST", "/rest/api/2/issue/PAY-10/transitions")
    assert resolve.json()["fields"] == {"resolution": {"id": "10000"}}
    for request in jira.requests_to("POST", "/rest/api/2/issue/PAY-11/transitions"):
        assert request.json()["fields"] == {}  # Story workflow: no screens
    assert len(jira.requests_to("POST", "/rest/api/2/issue/PAY-11/transitions")) == 2


def test_success_delivered_twice_writes_once(
    jira: JiraSandbox,
    plugin: JiraPlugin,
    make_release: Callable[..., Release],
    writes: Callable[[JiraSandbox], list[str]],
) -> None:
    release = make_release(version="1.4.0")
    plugin.release_changed(release, state("succeeded"))
    jira.clear_log()

    plugin.release_changed(release, state("succeeded"))

    assert writes(jira) == []
    assert all(len(jira.comments(key)) == 1 for key in SHIPPED)


def test_without_a_done_status_issues_stay_where_they_are(
    jira: JiraSandbox, make_plugin: Callable[..., JiraPlugin], make_release: Callable[..., Release]
) -> None:
    plugin = make_plugin(done_status=None)

    plugin.release_changed(make_release(version="1.4.0"), state("succeeded"))

    assert jira.issue("PAY-11")["fields"]["status"]["name"] == "To Do"
    assert not jira.requests_to("POST", "/rest/api/2/issue/PAY-11/transitions")
    assert jira.version("PAY", "1.4.0")["released"] is True  # type: ignore[index]


def test_scheduling_keeps_the_release_date_on_the_window(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release]
) -> None:
    start = datetime(2026, 12, 12, 23, 0, tzinfo=UTC)  # Sunday 00:00 in Berlin
    release = make_release(version="1.4.0", window_start=start, window_end=start + timedelta(1))

    plugin.release_changed(release, state("scheduled"))

    assert jira.version("PAY", "1.4.0")["releaseDate"] == "2026-12-13"  # type: ignore[index]
    jira.clear_log()
    plugin.release_changed(release, state("scheduled"))
    assert not jira.requests_to("PUT")  # already on that day


@pytest.mark.parametrize(
    "event",
    [
        state("implementing"),
        Event(actor="core", kind="step", message="x", evidence={"step": 3, "status": "done"}),
        Event(actor="core", kind="failure", message="alert", evidence={"to": "succeeded"}),
    ],
)
def test_other_events_cost_no_request(
    jira: JiraSandbox, plugin: JiraPlugin, make_release: Callable[..., Release], event: Event
) -> None:
    jira.clear_log()

    plugin.release_changed(make_release(version="1.4.0"), event)

    assert jira.requests_to() == []


def test_an_issue_closed_otherwise_is_left_closed(
    jira: JiraSandbox,
    plugin: JiraPlugin,
    make_release: Callable[..., Release],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from itsm_bridge_sandbox.jira import store

    won_t_do = store.Status("10003", "Won't Do", "done")  # a second done status
    monkeypatch.setattr(store, "STATUSES", [*store.STATUSES, won_t_do])
    jira.set_status("PAY-11", "Won't Do")

    plugin.release_changed(make_release(version="1.4.0"), state("succeeded"))

    assert jira.issue("PAY-11")["fields"]["status"]["name"] == "Won't Do"
    assert not jira.requests_to("POST", "/rest/api/2/issue/PAY-11/transitions")
