"""The REST API: every release route, its answers and errors, and the worker woken after each
action (the app on a real SQLite store with the default plugins, through TestClient)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.app_harness import TASKS, TOKEN, AppHarness, asyncio_loop_running
from itsm_bridge import commands as commands_module
from itsm_bridge import views
from itsm_bridge.errors import NeedsHuman, TransientError
from itsm_bridge.http import HTTPRequestError


@pytest.fixture
def h(tmp_path: Path) -> AppHarness:
    return AppHarness(tmp_path)


def api_routes(h: AppHarness) -> list[tuple[str, str]]:
    """(method, path) of every route under /api/v1, with a made-up release id."""
    paths = h.app.openapi()["paths"]
    return [
        (method.upper(), path.replace("{release_id}", "rel-20260101-00000000"))
        for path, operations in paths.items()
        if path.startswith("/api/v1")
        for method in operations
    ]


# -- authentication ----------------------------------------------------------------------------
def test_every_api_route_needs_the_bearer_token(h: AppHarness) -> None:
    routes = api_routes(h)
    assert len(routes) == 11
    for method, path in routes:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer "},
        ):
            response = h.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert h.api("GET", "/releases").status_code == 200


def test_without_a_configured_token_the_api_answers_401(tmp_path: Path) -> None:
    h = AppHarness(tmp_path, token=None)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}"}):
        response = h.client.get("/api/v1/releases", headers=headers)
        assert response.status_code == 401
        assert "server.token" in response.json()["detail"]


# -- create, list, show ------------------------------------------------------------------------
def test_create_answers_201_with_the_release_json_and_wakes_the_worker(h: AppHarness) -> None:
    response = h.api(
        "POST",
        "/releases",
        json={
            "service": "payments",
            "version": "2.0.0",
            "name": "Faster payouts",
            "type": "emergency",
            "major": True,
            "not_before": "2026-12-05T22:00:00+01:00",
            "duration": "90m",
            "reason": "card outage fix",
        },
    )
    assert response.status_code == 201, response.text
    data = response.json()
    with h.store.begin() as tx:
        assert data == views.release_json(tx, data["id"])  # what `release show --json` prints
    assert (data["type"], data["major"], data["duration_minutes"]) == ("emergency", True, 90)
    assert data["not_before"].startswith("2026-12-05T21:00:00")
    assert data["events"][0]["actor"] == "api"
    assert h.wakes == 1


def test_show_is_the_json_of_release_show(h: AppHarness) -> None:
    rid = h.create()
    h.cycle()
    data = h.show(rid)
    with h.store.begin() as tx:
        assert data == views.release_json(tx, rid)
    assert len(data["steps"]) == 18


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"service": "billing"}, "not in services"),
        ({"version": "1.0 beta"}, "whitespace"),
        ({"version": "v" * 65}, "at most 64"),
        ({"type": "emergency"}, "needs --reason"),
        ({"duration": "soon"}, "--duration"),
    ],
)
def test_create_refuses_what_release_create_refuses_with_422(
    h: AppHarness, fields: dict[str, Any], message: str
) -> None:
    body = {"service": "payments", "version": "1.0.0", **fields}
    response = h.api("POST", "/releases", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert h.api("GET", "/releases").json() == []
    assert h.wakes == 0


@pytest.mark.parametrize(
    "body",
    [
        {"version": "1.0.0"},  # no service
        {"service": "payments", "version": "1.0.0", "typo": 1},
        {"service": "payments", "version": "1.0.0", "type": "urgent"},
        {"service": "payments", "version": "1.0.0", "not_before": "2026-12-05T22:00:00"},
        {"service": "payments", "version": "1.0.0", "major": "perhaps"},
        ["payments", "1.0.0"],
    ],
)
def test_create_validates_the_body_with_422(h: AppHarness, body: Any) -> None:
    response = h.api("POST", "/releases", json=body)
    assert response.status_code == 422, response.text
    assert h.api("GET", "/releases").json() == []


def test_a_body_that_is_not_json_is_400(h: AppHarness) -> None:
    response = h.api(
        "POST",
        "/releases",
        content=b'{"service": "payments",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "the body is not valid JSON"}


def test_a_second_open_release_of_a_version_is_409_naming_the_first(h: AppHarness) -> None:
    first = h.create("1.0.0")
    response = h.api("POST", "/releases", json={"service": "payments", "version": "1.0.0"})
    assert response.status_code == 409
    assert first in response.json()["detail"]


def test_list_gives_summaries_newest_first_and_filters_by_state(h: AppHarness) -> None:
    first, second = h.create("1.0.0"), h.create("1.0.1")
    h.api("POST", f"/releases/{first}/cancel", json={"reason": "superseded"})
    rows = h.api("GET", "/releases").json()
    assert [r["id"] for r in rows] == [second, first]
    assert set(rows[0]) == {
        "id", "service", "version", "name", "type", "major", "state",
        "window_start", "window_end", "created_at",
    }  # fmt: skip
    assert [r["id"] for r in h.api("GET", "/releases?state=cancelled").json()] == [first]
    assert [r["id"] for r in h.api("GET", "/releases?state=planned").json()] == [second]
    assert h.api("GET", "/releases?state=bogus").status_code == 422
    assert h.api("GET", "/releases?stat=planned").status_code == 422  # a typo lists nothing


# -- unknown ids -------------------------------------------------------------------------------
def test_an_unknown_release_is_404_on_every_release_route(h: AppHarness) -> None:
    rid = h.create()
    wakes = h.wakes
    bodies = {"rollback": {"reason": "x"}, "cancel": {"reason": "x"}, "task-done": {"task": "x"}}
    for method, path in api_routes(h):
        if "rel-20260101-00000000" not in path:
            continue
        action = path.rsplit("/", 1)[-1]
        for unknown in ("rel-20260101-00000000", rid[:-1]):  # ids are exact, never prefixes
            url = path.replace("rel-20260101-00000000", unknown)
            response = h.client.request(method, url, headers=h.auth, json=bodies.get(action, {}))
            assert response.status_code == 404, (method, path, response.text)
            assert unknown in response.json()["detail"]
    assert h.wakes == wakes
    assert h.api("GET", f"/releases/{'r' * 65}").status_code == 422


# -- actions -----------------------------------------------------------------------------------
def test_the_whole_release_through_the_api(h: AppHarness) -> None:
    rid = h.implementing()
    assert [t["key"] for t in h.show(rid)["tasks"]] == list(TASKS)
    wakes = h.wakes
    h.deploy(rid)
    assert h.wakes == wakes + len(TASKS)
    data = h.show(rid)
    assert data["state"] == "closed", data["steps"]
    assert {t["status"] for t in data["tasks"]} == {"done"}
    markdown = h.api("GET", f"/releases/{rid}/notes")
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# payments 1.0.0" in markdown.text
    html = h.api("GET", f"/releases/{rid}/notes?format=html")
    assert html.headers["content-type"].startswith("text/html") and "<h1>" in html.text
    assert h.api("GET", f"/releases/{rid}/notes?format=pdf").status_code == 422
    assert h.api("GET", f"/releases/{rid}/notes?fromat=html").status_code == 422


def test_notes_before_step_10_are_404(h: AppHarness) -> None:
    rid = h.create()
    response = h.api("GET", f"/releases/{rid}/notes")
    assert response.status_code == 404
    assert "no notes yet" in response.json()["detail"]


def test_approve_answers_202_only_while_an_approval_is_awaited(h: AppHarness) -> None:
    rid = h.create()
    response = h.api("POST", f"/releases/{rid}/approve")
    assert response.status_code == 409
    assert "no approval is awaited" in response.json()["detail"]
    h.cycle()
    wakes = h.wakes
    response = h.api("POST", f"/releases/{rid}/approve", json={"reject": True, "note": "no"})
    assert response.status_code == 202
    assert response.json()["events"][-1]["message"] == "change rejected: no"
    assert h.wakes == wakes + 1
    assert h.api("POST", f"/releases/{rid}/approve", json={"rejected": True}).status_code == 422


def test_retry_of_a_blocked_release_is_202_and_of_another_409(h: AppHarness) -> None:
    rid = h.create()
    response = h.api("POST", f"/releases/{rid}/retry")
    assert response.status_code == 409
    assert "nothing failed that a retry redoes" in response.json()["detail"]
    h.cycle()
    h.api("POST", f"/releases/{rid}/approve", json={"reject": True})
    run = h.process.advance(rid)
    assert run is not False
    assert h.show(rid)["state"] == "blocked"
    response = h.api("POST", f"/releases/{rid}/retry")
    assert response.status_code == 202
    assert response.json()["state"] == "planned"


def test_rollback_is_202_once_deployed_and_409_before(h: AppHarness) -> None:
    early = h.create("0.9.0")
    response = h.api("POST", f"/releases/{early}/rollback", json={"reason": "bad"})
    assert response.status_code == 409
    assert "use `release cancel`" in response.json()["detail"]
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 4001}):
        assert h.api("POST", f"/releases/{early}/rollback", json=body).status_code == 422

    rid = h.implementing("1.0.0")
    wakes = h.wakes
    response = h.api("POST", f"/releases/{rid}/rollback", json={"reason": "error rate 5%"})
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "failed"
    assert response.json()["failure_reason"] == "rollback requested: error rate 5%"
    assert h.wakes == wakes + 1


def test_cancel_is_200_and_a_second_cancel_409(h: AppHarness) -> None:
    rid = h.create()
    response = h.api("POST", f"/releases/{rid}/cancel", json={"reason": "superseded"})
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    again = h.api("POST", f"/releases/{rid}/cancel", json={"reason": "superseded"})
    assert again.status_code == 409
    assert "only a release not yet deploying" in again.json()["detail"]
    assert h.api("POST", f"/releases/{rid}/cancel").status_code == 422  # the reason is required


def test_task_done_404_for_an_unknown_task_409_for_a_finished_one(h: AppHarness) -> None:
    rid = h.implementing()
    response = h.api("POST", f"/releases/{rid}/task-done", json={"task": "nope"})
    assert response.status_code == 404
    assert "no task 'nope'" in response.json()["detail"]
    done = h.api("POST", f"/releases/{rid}/task-done", json={"task": TASKS[0], "note": "ok"})
    assert done.status_code == 202
    assert done.json()["warning"] == ""
    task = next(t for t in done.json()["tasks"] if t["key"] == TASKS[0])
    assert (task["status"], task["note"]) == ("done", "ok")
    again = h.api("POST", f"/releases/{rid}/task-done", json={"task": TASKS[0]})
    assert again.status_code == 409
    assert "already done" in again.json()["detail"]
    failed = h.api("POST", f"/releases/{rid}/task-done", json={"task": TASKS[1], "failed": True})
    assert next(t for t in failed.json()["tasks"] if t["key"] == TASKS[1])["status"] == "failed"


def test_task_done_warns_when_the_tasks_record_is_closed_later(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = h.implementing()

    def vendor_down(release_id: str, task_key: str) -> None:
        raise RuntimeError("ServiceNow: HTTP 503")

    monkeypatch.setattr(h.process, "report_task", vendor_down)
    response = h.api("POST", f"/releases/{rid}/task-done", json={"task": TASKS[0]})
    assert response.status_code == 202
    assert response.json()["warning"] == (
        "its record not closed yet (ServiceNow: HTTP 503); the next cycle closes it"
    )


def test_commands_run_off_the_event_loop(h: AppHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = h.create()
    seen: list[bool] = []
    create, retry = h.commands.create, h.commands.retry

    def watched(command: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            seen.append(asyncio_loop_running())
            return command(*args, **kwargs)

        return run

    monkeypatch.setattr(h.commands, "create", watched(create))
    monkeypatch.setattr(h.commands, "retry", watched(retry))
    h.create("2.0.0")
    h.api("POST", f"/releases/{rid}/retry")
    assert seen == [False, False]


def test_end_support_is_202_in_early_life_support_and_409_before(h: AppHarness) -> None:
    rid = h.implementing(major=True)
    response = h.api("POST", f"/releases/{rid}/end-support", json={"note": "quiet week"})
    assert response.status_code == 409
    assert "not in early life support" in response.json()["detail"]
    h.deploy(rid)
    assert h.show(rid)["state"] == "early_life_support"
    response = h.api("POST", f"/releases/{rid}/end-support", json={"note": "quiet week"})
    assert response.status_code == 202
    assert "early life support ended early: quiet week" in response.json()["events"][-1]["message"]
    h.cycle()
    assert h.show(rid)["state"] == "closed"


def test_plan_lists_the_calls_of_the_next_steps(h: AppHarness) -> None:
    rid = h.create()
    response = h.api("GET", f"/releases/{rid}/plan")
    assert response.status_code == 200
    lines = response.json()["lines"]
    assert lines[0].startswith(f"plan for {rid}")
    assert any("create_change" in line for line in lines)


# -- faults ------------------------------------------------------------------------------------
def test_a_release_busy_with_a_step_is_409(h: AppHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = h.create()
    monkeypatch.setattr(commands_module, "LEASE_WAIT_SECONDS", 0.2)
    with h.store.begin() as tx:
        assert tx.lease_release(rid, "another-replica", h.process.lease_ttl)
    response = h.api("POST", f"/releases/{rid}/cancel", json={"reason": "x"})
    assert response.status_code == 409
    assert "busy" in response.json()["detail"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (HTTPRequestError("PATCH change: HTTP 400: bad field", 400), 502),
        (NeedsHuman("GET serverInfo: HTTP 401 (check the plugin's credentials)"), 502),
        (TransientError("ServiceNow: HTTP 503"), 503),
        (sa.exc.OperationalError("SELECT", {}, Exception("database is locked")), 503),
    ],
)
def test_vendor_and_database_faults(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    rid = h.create()

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(h.commands, "retry", failing)
    response = h.api("POST", f"/releases/{rid}/retry")
    assert response.status_code == status
    if status == 503:
        assert response.headers["Retry-After"] == "5"
    detail = response.json()["detail"]
    assert "Traceback" not in detail
    if isinstance(error, sa.exc.SQLAlchemyError):
        assert detail == "the database is not available; retry later"
    else:
        assert detail == str(error)


def test_a_database_that_is_away_answers_503(
    h: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def away(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("BEGIN", {}, Exception("connection refused"))

    monkeypatch.setattr(h.store, "begin", away)
    monkeypatch.setattr(h.store, "read", away)
    response = h.api("GET", "/releases")
    assert response.status_code == 503
    assert response.json()["detail"] == "the database is not available; retry later"
