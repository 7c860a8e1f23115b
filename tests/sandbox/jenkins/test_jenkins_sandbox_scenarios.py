"""Scripted outcomes, aborting, seeds and Notification plugin deliveries of the Jenkins sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from itsm_bridge_sandbox.jenkins.tree import TreeSyntaxError, apply, parse
from itsm_bridge_sandbox.webapp import App, Request, Response, RunningServer
from support import ManualClock

AUTH = ("sandbox", "sandbox")
SEED = {
    "jenkins": {
        "jobs": [
            {
                "name": "payments/smoke",
                "parameters": ["RELEASE_ID", {"name": "SERVICE", "default": "payments"}],
                "duration": 0.5,
                "tests": {"passed": 3, "failed": 0, "skipped": 1},
            },
            {"name": "payments/deploy", "parameters": ["RELEASE_ID"], "duration": 1.0},
        ]
    }
}


@pytest.fixture
def sandbox(clock: ManualClock) -> Iterator[JenkinsSandbox]:
    server = JenkinsSandbox(SEED, clock=clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def trigger(sandbox: JenkinsSandbox, job: str, **params: str) -> int:
    path = "/job/" + "/job/".join(job.split("/")) + "/buildWithParameters"
    response = requests.post(sandbox.url + path, params=params, auth=AUTH, timeout=5)
    assert response.status_code == 201, response.text
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def test_scripted_failure_and_unstable_with_test_statuses(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    trigger(sandbox, "payments/smoke", RELEASE_ID="1")
    clock.tick(1)
    assert sandbox.build("payments/smoke", 1)["result"] == "SUCCESS"

    sandbox.fail_next_build("payments/smoke")
    trigger(sandbox, "payments/smoke", RELEASE_ID="2")
    clock.tick(1)
    failed = sandbox.build("payments/smoke", 2)
    assert failed["result"] == "FAILURE"
    action = next(a for a in failed["actions"] if "failCount" in a)
    assert (action["failCount"], action["totalCount"]) == (1, 4)  # one passing test now fails
    report = requests.get(
        sandbox.url + "/job/payments/job/smoke/2/testReport/api/json", auth=AUTH, timeout=5
    ).json()
    statuses = [c["status"] for s in report["suites"] for c in s["cases"]]
    assert statuses[0] == "REGRESSION"  # passed in #1, fails in #2
    assert report["suites"][0]["cases"][0]["errorDetails"]

    sandbox.script_next(
        "payments/smoke", result="UNSTABLE", tests={"passed": 4, "failed": 0, "skipped": 0}
    )
    trigger(sandbox, "payments/smoke", RELEASE_ID="3")
    clock.tick(1)
    unstable = sandbox.build("payments/smoke", 3)
    assert unstable["result"] == "UNSTABLE"
    report3 = requests.get(
        sandbox.url + "/job/payments/job/smoke/3/testReport/api/json", auth=AUTH, timeout=5
    ).json()
    assert report3["suites"][0]["cases"][0]["status"] == "FIXED"

    trigger(sandbox, "payments/smoke", RELEASE_ID="4")  # scripted only once: back to default
    clock.tick(1)
    assert sandbox.build("payments/smoke", 4)["result"] == "SUCCESS"
    assert [b["number"] for b in sandbox.builds("payments/smoke")] == [4, 3, 2, 1]
    job = requests.get(
        sandbox.url + "/job/payments/job/smoke/api/json", auth=AUTH, timeout=5
    ).json()
    assert job["lastFailedBuild"]["number"] == 2 and job["lastUnstableBuild"]["number"] == 3
    assert job["lastSuccessfulBuild"]["number"] == 4 and job["color"] == "blue"


def test_script_sets_every_build_and_finish_forces(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    sandbox.script("payments/deploy", result="FAILURE", duration=100)
    trigger(sandbox, "payments/deploy", RELEASE_ID="1")
    clock.tick(50)
    assert sandbox.build("payments/deploy", 1)["building"] is True
    sandbox.finish("payments/deploy", 1, "SUCCESS")
    assert sandbox.build("payments/deploy", 1)["result"] == "SUCCESS"
    trigger(sandbox, "payments/deploy", RELEASE_ID="2")
    clock.tick(101)
    assert sandbox.build("payments/deploy", 2)["result"] == "FAILURE"


def test_stop_aborts_a_running_build(sandbox: JenkinsSandbox, clock: ManualClock) -> None:
    trigger(sandbox, "payments/smoke", RELEASE_ID="1")
    clock.tick(0.3)
    assert sandbox.build("payments/smoke", 1)["building"] is True
    stopped = requests.post(
        sandbox.url + "/job/payments/job/smoke/1/stop", auth=AUTH, timeout=5, allow_redirects=False
    )
    assert stopped.status_code == 302
    clock.tick(5)
    build = sandbox.build("payments/smoke", 1)
    assert build["result"] == "ABORTED" and build["building"] is False
    assert not any("failCount" in a for a in build["actions"])  # no report from an aborted run
    console = requests.get(
        sandbox.url + "/job/payments/job/smoke/1/consoleText", auth=AUTH, timeout=5
    ).text
    assert "Aborted by sandbox" in console and console.endswith("Finished: ABORTED\n")


def test_cancel_item_statuses(sandbox: JenkinsSandbox, clock: ManualClock) -> None:
    item = trigger(sandbox, "payments/deploy", RELEASE_ID="1")
    cancel = sandbox.url + "/queue/cancelItem"
    assert requests.post(cancel, params={"id": item}, auth=AUTH, timeout=5).status_code == 204
    assert requests.post(cancel, params={"id": item}, auth=AUTH, timeout=5).status_code == 500
    assert requests.post(cancel, params={"id": 99}, auth=AUTH, timeout=5).status_code == 404
    clock.tick(5)
    assert sandbox.queue_item(item)["cancelled"] is True
    assert sandbox.builds("payments/deploy") == []


class Receiver:
    """A tiny webhook receiver recording what the Notification plugin posts."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[tuple[dict[str, str], Any]] = []
        self.lock = threading.Lock()
        app = App("receiver")

        def hook(request: Request) -> Response:
            with self.lock:
                self.posts.append((request.headers, request.json()))
            return Response(status)

        app.add_route("POST", "/hook", hook)
        self.server = RunningServer(app)

    def phases(self) -> list[tuple[int, str]]:
        with self.lock:
            return [(body["build"]["number"], body["build"]["phase"]) for _, body in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.server.start()
    try:
        yield rec
    finally:
        rec.server.stop()


def test_notification_plugin_phases_in_order(
    sandbox: JenkinsSandbox, clock: ManualClock, receiver: Receiver
) -> None:
    sandbox.set_notification_url(
        receiver.server.url + "/hook", headers={"Authorization": "Bearer t0k3n"}
    )
    queue_id = trigger(sandbox, "payments/smoke", RELEASE_ID="R1")
    assert sandbox.wait_for_notifications()
    assert receiver.posts == []  # nothing while in the queue: QUEUED is sent when it starts
    clock.tick(0.25)
    trigger(sandbox, "payments/smoke", RELEASE_ID="R2")
    clock.tick(0.3)
    clock.tick(0.3)
    assert sandbox.wait_for_notifications()
    clock.tick(1)
    assert sandbox.wait_for_notifications()
    phases = receiver.phases()
    for number in (1, 2):
        mine = [p for n, p in phases if n == number]
        assert mine == ["QUEUED", "STARTED", "COMPLETED", "FINALIZED"]
    headers, first = receiver.posts[0]
    assert headers["authorization"] == "Bearer t0k3n"
    assert headers["content-type"] == "application/json;charset=UTF-8"
    assert first["name"] == "smoke" and first["url"] == "job/payments/job/smoke/"
    build = first["build"]
    assert build["number"] == 1 and build["queue_id"] == queue_id and build["phase"] == "QUEUED"
    assert build["full_url"] == sandbox.url + "/job/payments/job/smoke/1/"
    assert build["url"] == "job/payments/job/smoke/1/"
    assert build["parameters"] == {"RELEASE_ID": "R1", "SERVICE": "payments"}
    assert "status" not in build and "test_summary" not in build
    finalized = next(b for _, b in receiver.posts if b["build"]["phase"] == "FINALIZED")["build"]
    assert finalized["status"] == "SUCCESS" and finalized["duration"] == 500
    assert finalized["test_summary"] == {
        "total": 4,
        "failed": 0,
        "passed": 3,
        "skipped": 1,
        "failed_tests": [],
    }


def test_notification_failures_are_recorded_not_raised(clock: ManualClock) -> None:
    sandbox = JenkinsSandbox(SEED, clock=clock)
    sandbox.set_notification_url("http://127.0.0.1:9/unreachable", job="payments/deploy")
    sandbox.start()
    try:
        trigger(sandbox, "payments/deploy", RELEASE_ID="1")
        clock.tick(5)
        assert sandbox.wait_for_notifications()
        assert [d.body["build"]["phase"] for d in sandbox.deliveries] == [
            "QUEUED",
            "STARTED",
            "COMPLETED",
            "FINALIZED",
        ]
        assert all(d.error and d.status is None for d in sandbox.deliveries)
        assert sandbox.build("payments/deploy", 1)["result"] == "SUCCESS"
    finally:
        sandbox.stop()


def test_builds_progress_without_polling_on_the_real_clock() -> None:
    """The ticker moves time on, so webhooks-only consumers still see FINALIZED."""
    sandbox = JenkinsSandbox({"jobs": [{"name": "quick", "duration": 0.05, "queue_delay": 0.01}]})
    sandbox.start()
    try:
        requests.post(sandbox.url + "/job/quick/build", auth=AUTH, timeout=5)
        deadline = time.monotonic() + 5
        while not sandbox.model.job("quick").completed() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sandbox.wait_for_build("quick", 1, timeout=1)["result"] == "SUCCESS"
    finally:
        sandbox.stop()


def test_seed_validation() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        JenkinsSandbox({"jenkins": {"jobz": []}})
    with pytest.raises(ValueError, match="result must be one of"):
        JenkinsSandbox({"jobs": [{"name": "a", "result": "GREEN"}]})
    with pytest.raises(KeyError):
        JenkinsSandbox().script("missing")


def test_tree_parser_unit() -> None:
    nodes = parse("a,b[c,d[e]]{1,3},f{2}")
    assert set(nodes) == {"a", "b", "f"} and nodes["b"].range == (1, 3)
    assert nodes["f"].range == (2, 3)
    doc = {
        "_class": "X",
        "a": 1,
        "z": 2,
        "b": [{"c": i, "d": {"e": i, "q": 0}, "y": 0} for i in range(4)],
        "f": [0, 1, 2, 3],
    }
    assert apply(doc, nodes) == {
        "_class": "X",
        "a": 1,
        "b": [{"c": 1, "d": {"e": 1}}, {"c": 2, "d": {"e": 2}}],
        "f": [2],
    }
    assert apply(doc, parse("b[*]{,1}")) == {"_class": "X", "b": [{"c": 0, "d": {}, "y": 0}]}
    for bad in ("a[b", "a{x}", "a{1"):
        with pytest.raises(TreeSyntaxError):
            parse(bad)
