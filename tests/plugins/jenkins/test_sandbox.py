"""The Jenkins plugin against the Jenkins sandbox over real HTTP: jobs in folders, the queue
followed to the build, a lost answer and a restart, a forgotten queue item, reports, crumbs
and Notification plugin deliveries. Sandbox time is moved by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.http import HTTPTransientError
from itsm_bridge.models import JobRef, JobState, JobStatus, Release, TestSummary
from itsm_bridge_jenkins import JenkinsPlugin
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from itsm_bridge_sandbox.webapp import App, Request, Response, RunningServer
from support import ManualClock

pytestmark = pytest.mark.integration
SECRET = "hook-secret-1234"


def triggers(sandbox: JenkinsSandbox, job: str = "") -> list[Any]:
    prefix = "/job/" + "/job/".join(job.split("/")) if job else "/job/"
    return [
        r for r in sandbox.requests_to("POST", prefix) if r.path.endswith("/buildWithParameters")
    ]


def follow(plugin: JenkinsPlugin, ref: JobRef, clock: ManualClock, limit: int = 20) -> JobStatus:
    """Poll as the core does, moving sandbox time half a second between polls."""
    for _ in range(limit):
        status = plugin.job_status(job=ref)
        assert status is not None
        if status.finished:
            return status
        clock.tick(0.5)
    raise AssertionError(f"{ref.job} did not finish")


class LoseTheAnswer(HTTPAdapter):
    """Sends a POST, lets Jenkins act on it, then loses the answer (a reset connection)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        if request.method == "POST":
            raise requests.ConnectionError("connection reset before the answer")
        return response


def test_build_deploy_and_smoke_test_in_a_folder(
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    plugin = sandbox_plugin()
    build_ref = plugin.start_job(release=release, purpose="build", params=core_params(CHANGE=""))
    assert build_ref is not None and build_ref.queue_id is not None
    queued = plugin.job_status(job=build_ref)
    assert queued is not None and queued.state == JobState.QUEUED
    assert "In the quiet period" in queued.detail
    built = follow(plugin, build_ref, clock)
    assert built.state == JobState.SUCCEEDED and built.number == 1
    assert built.tests == TestSummary(passed=42, failed=0, skipped=2)
    assert built.url == jenkins_sandbox.url + "/job/payments/job/build/1/"
    assert built.artifacts == [built.url + "artifact/dist/payments-1.4.0.tar.gz"]
    assert built.duration_seconds == pytest.approx(1.0)

    for purpose, job, task, tests in (
        ("deploy", "payments/deploy", "deploy", None),
        ("smoke_test", "payments/smoke", "smoke-test", TestSummary(passed=12)),
    ):
        ref = plugin.start_job(release=release, purpose=purpose, params=core_params(TASK=task))
        assert ref is not None
        status = follow(plugin, ref, clock)
        assert status.state == JobState.SUCCEEDED and status.tests == tests
        [run] = jenkins_sandbox.builds(job)
        given = {p["name"]: p["value"] for p in run["actions"][0]["parameters"]}
        assert given == {**core_params(TASK=task)}
    assert [
        len(triggers(jenkins_sandbox, j))
        for j in ("payments/build", "payments/deploy", "payments/smoke")
    ] == [1, 1, 1]


def test_a_restart_between_the_trigger_and_the_answer_builds_once(
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    crashing = sandbox_plugin()
    crashing.client.session.mount("http://", LoseTheAnswer())
    with pytest.raises(HTTPTransientError, match="connection reset"):
        crashing.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert len(triggers(jenkins_sandbox)) == 1  # Jenkins queued it

    restarted = sandbox_plugin()  # while it still waits in the queue
    ref = restarted.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert ref is not None and ref.queue_id == "1" and ref.build_id is None
    clock.tick(0.5)
    again = sandbox_plugin()  # once it runs
    running = again.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert running is not None and running.build_id == "1"
    assert follow(again, running, clock).state == JobState.SUCCEEDED
    assert len(triggers(jenkins_sandbox)) == 1
    assert len(jenkins_sandbox.builds("payments/deploy")) == 1


def test_a_forgotten_queue_item_is_found_by_its_build(
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    plugin = sandbox_plugin()
    other = core_params(RELEASE_ID="rel-20261128-99999999", TASK="deploy")
    plugin.start_job(
        release=release.model_copy(update={"id": other["RELEASE_ID"]}),
        purpose="deploy",
        params=other,
    )
    ref = plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert ref is not None and ref.queue_id == "2"
    clock.tick(400)  # both built, and forgotten by the queue five minutes later
    jenkins_sandbox.clear_log()
    status = plugin.job_status(job=ref)
    assert status is not None and status.state == JobState.SUCCEEDED
    assert status.number == 2  # the build of queue item 2, not the other release's #1
    log = [(r.path, r.status) for r in jenkins_sandbox.requests]
    assert log[:3] == [
        ("/queue/item/2/api/json", 404),
        ("/job/payments/job/deploy/api/json", 200),
        ("/job/payments/job/deploy/2/api/json", 200),
    ]


def test_a_build_without_a_report_has_no_tests(
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    plugin = sandbox_plugin()
    ref = plugin.start_job(
        release=release,
        purpose="rollback",
        params=core_params(TASK="rollback", ROLLBACK_TO="1.3.0"),
    )
    assert ref is not None
    status = follow(plugin, ref, clock)
    assert status.state == JobState.SUCCEEDED and status.tests is None
    assert status.detail.endswith("; no test report")
    reports = [r for r in jenkins_sandbox.requests if r.path.endswith("/testReport/api/json")]
    assert [(r.path, r.status) for r in reports] == [
        ("/job/payments/job/rollback/1/testReport/api/json", 404)
    ]
    [run] = jenkins_sandbox.builds("payments/rollback")
    assert {"name": "ROLLBACK_TO", "value": "1.3.0"} in [
        {"name": p["name"], "value": p["value"]} for p in run["actions"][0]["parameters"]
    ]


def test_an_aborted_build_says_who(
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    plugin = sandbox_plugin()
    ref = plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert ref is not None
    clock.tick(0.5)
    jenkins_sandbox.finish("payments/deploy", 1, "ABORTED")
    status = plugin.job_status(job=ref)
    assert status is not None and status.state == JobState.ABORTED
    assert "payments/deploy #1 aborted by sandbox" in status.detail


def test_a_retried_build_is_a_new_build_and_a_restart_of_the_retry_finds_it(
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    plugin = sandbox_plugin()
    failed = plugin.start_job(release=release, purpose="build", params=core_params())
    assert failed is not None
    clock.tick(0.5)
    jenkins_sandbox.finish("payments/build", 1, "FAILURE")
    failed = follow(plugin, failed, clock).job
    assert failed.build_id == "1"
    # `release retry`: the failed build is superseded, so a new one is triggered ...
    retried = plugin.start_job(
        release=release, purpose="build", params=core_params(), superseded=[failed]
    )
    assert retried is not None and retried.queue_id != failed.queue_id
    # ... and a restart during the retry finds that new one, not the failed one
    again = sandbox_plugin().start_job(
        release=release, purpose="build", params=core_params(), superseded=[failed]
    )
    assert again is not None and again.queue_id == retried.queue_id
    assert len(triggers(jenkins_sandbox, "payments/build")) == 2
    assert follow(plugin, again, clock).state == JobState.SUCCEEDED


def test_a_password_gets_one_crumb_per_session(
    make_plugin: Callable[..., JenkinsPlugin],
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    sandbox = JenkinsSandbox(
        load_seed()["jenkins"], user="bridge", password="s3cret", api_token="t0ken", clock=clock
    )
    sandbox.start()
    try:
        plugin = make_plugin(url=sandbox.url, user="bridge", token="s3cret")
        assert plugin.start_job(release=release, purpose="build", params=core_params()) is not None
        assert (
            plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
            is not None
        )
        statuses = [r.status for r in triggers(sandbox)]
        assert statuses == [403, 201, 201]  # asked once, then the crumb travels with each POST
        assert len(sandbox.requests_to("GET", "/crumbIssuer/")) == 1
    finally:
        sandbox.stop()


@pytest.fixture
def receiver(
    make_plugin: Callable[..., JenkinsPlugin],
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """`POST /webhooks/jenkins` served by the plugin's handler, as the daemon would."""
    handlers: dict[str, Any] = {}
    make_plugin(webhook_token=SECRET).register_webhooks(
        register=lambda name, h: handlers.update({name: h})
    )
    stored: list[dict[str, Any]] = []
    app = App("receiver")

    def deliver(request: Request) -> Response:
        query = {k: v[0] for k, v in request.query.items()}
        try:
            stored.extend(handlers["jenkins"](dict(request.headers), request.body, query))
        except WebhookRejected as exc:
            return Response(exc.status, {"error": exc.reason})
        return Response(202, {"status": "accepted"})

    app.add_route("POST", "/webhooks/jenkins", deliver)
    server = RunningServer(app).start()
    try:
        yield server.url + "/webhooks/jenkins", stored
    finally:
        server.stop()


def test_notification_plugin_deliveries_become_one_event(
    receiver: tuple[str, list[dict[str, Any]]],
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    url, stored = receiver
    jenkins_sandbox.set_notification_url(f"{url}?token={SECRET}")
    plugin = sandbox_plugin()
    ref = plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert ref is not None
    clock.tick(5)
    assert jenkins_sandbox.wait_for_notifications()
    phases = [(d.body["build"]["phase"], d.status) for d in jenkins_sandbox.deliveries]
    assert phases == [("QUEUED", 202), ("STARTED", 202), ("COMPLETED", 202), ("FINALIZED", 202)]
    [event] = stored
    assert event["release_id"] == release.id and event["kind"] == "job"
    assert event["dedupe_key"] == "jenkins:payments/deploy:1:FINALIZED"
    assert event["payload"]["status"] == "SUCCESS"


def test_a_wrong_webhook_token_is_refused(
    receiver: tuple[str, list[dict[str, Any]]],
    sandbox_plugin: Callable[..., JenkinsPlugin],
    jenkins_sandbox: JenkinsSandbox,
    clock: ManualClock,
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    url, stored = receiver
    host = url.split("//", 1)[1]
    jenkins_sandbox.set_notification_url(f"http://jenkins:wrong@{host}")  # Basic user info
    plugin = sandbox_plugin()
    plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    clock.tick(5)
    assert jenkins_sandbox.wait_for_notifications()
    assert [d.status for d in jenkins_sandbox.deliveries] == [401, 401, 401, 401]
    assert stored == []


def test_check_connection_against_the_sandbox(
    sandbox_plugin: Callable[..., JenkinsPlugin], jenkins_sandbox: JenkinsSandbox
) -> None:
    [check] = sandbox_plugin().check_connection()
    assert not check.ok and "ops/warm-caches: not found" in check.detail
    jenkins_sandbox.add_job("ops/warm-caches", ["RELEASE_ID", "TASK"])
    [check] = sandbox_plugin().check_connection()
    assert check.ok, check.detail
    # the sandbox's token is `sandbox`, the user's name too: the token never shows
    assert check.detail == "Jenkins 2.440.3, as ***; 5 job(s) ready"
    [check] = sandbox_plugin(token="wrong").check_connection()
    assert not check.ok and check.status == 401
