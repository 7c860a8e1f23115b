"""`start_job`: the right job for each purpose, every parameter passed on, and a look at the
queue and the job's builds before any trigger, so nothing is ever built twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPRequestError, HTTPTransientError
from itsm_bridge.models import JobRef, Release
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_jenkins import JenkinsPlugin, Settings

URL = "https://ci.example.com"
RID = "rel-20261128-0000abcd"
QUEUE = URL + "/queue/api/json"
DEFINED = ["RELEASE_ID", "SERVICE", "VERSION", "CHANGE", "TASK", "ROLLBACK_TO"]


def job_url(job: str) -> str:
    return URL + "".join(f"/job/{name}" for name in job.split("/")) + "/"


def parameters(**values: str) -> dict[str, Any]:
    return {
        "_class": "hudson.model.ParametersAction",
        "parameters": [{"name": k, "value": v} for k, v in values.items()],
    }


def queue_item(item_id: int, job: str, **values: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "task": {"url": job_url(job).replace(URL, "http://jenkins.internal:8080")},
        "actions": [parameters(**values), {"_class": "hudson.model.CauseAction"}],
    }


def job_document(
    job: str, builds: list[dict[str, Any]] = (), defined: list[str] = DEFINED, **extra: Any
) -> dict[str, Any]:
    return {
        "fullName": job,
        "url": job_url(job),
        "buildable": True,
        "property": [{"parameterDefinitions": [{"name": n} for n in defined]}],
        "builds": list(builds),
        **extra,
    }


def build(number: int, job: str, queue_id: int, **values: str) -> dict[str, Any]:
    return {
        "number": number,
        "url": job_url(job) + f"{number}/",
        "queueId": queue_id,
        "actions": [parameters(**values), {}],
    }


def mock_jenkins(
    job: str,
    queue: list[dict[str, Any]] = (),
    builds: list[dict[str, Any]] = (),
    location: str | None = URL + "/queue/item/41/",
    **document: Any,
) -> None:
    responses.get(QUEUE, json={"_class": "hudson.model.Queue", "items": list(queue)})
    responses.get(job_url(job) + "api/json", json=job_document(job, builds, **document))
    headers = {"Location": location} if location else {}
    responses.post(job_url(job) + "buildWithParameters", status=201, headers=headers)


def posts() -> list[Any]:
    return [c for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_a_new_build_is_triggered_with_every_parameter(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/build")
    given = core_params(CHANGE="")
    ref = plugin.start_job(release=release, purpose="build", params=given)
    assert ref is not None
    assert (ref.system, ref.job, ref.purpose, ref.queue_id) == (
        "jenkins",
        "payments/build",
        "build",
        "41",
    )
    assert ref.build_id is None and ref.url == job_url("payments/build")
    [post] = posts()
    assert post.request.url == job_url("payments/build") + "buildWithParameters"
    assert parse_qs(post.request.body, keep_blank_values=True) == {k: [v] for k, v in given.items()}
    # the queue is read before the job, both narrowed with tree=
    gets = [c.request.url for c in responses.calls if c.request.method == "GET"]
    assert gets[0].startswith(QUEUE + "?tree=items")
    assert gets[1].startswith(job_url("payments/build") + "api/json?tree=")
    assert "%7B0%2C50%7D" in gets[1]  # builds[...]{0,50}: max_builds


@pytest.mark.parametrize(
    ("purpose", "job", "extra"),
    [
        ("deploy", "payments/deploy", {"TASK": "deploy"}),
        ("smoke_test", "payments/smoke", {"TASK": "smoke-test"}),
        ("rollback", "payments/rollback", {"TASK": "rollback", "ROLLBACK_TO": "1.3.0"}),
        ("ops/warm-caches", "ops/warm-caches", {"TASK": "warm-caches"}),
    ],
)
@responses.activate
def test_each_purpose_runs_its_job(
    plugin: JenkinsPlugin,
    release: Release,
    core_params: Callable[..., dict[str, str]],
    purpose: str,
    job: str,
    extra: dict[str, str],
) -> None:
    mock_jenkins(job)
    ref = plugin.start_job(release=release, purpose=purpose, params=core_params(**extra))
    assert ref is not None and ref.job == job and ref.purpose == purpose
    [post] = posts()
    assert post.request.url == job_url(job) + "buildWithParameters"
    sent = parse_qs(post.request.body)
    assert all(sent[k] == [v] for k, v in extra.items())


def test_purposes_without_a_job_are_left_to_others(
    release: Release,
    make_release: Callable[..., Release],
    core_params: Callable[..., dict[str, str]],
) -> None:
    bridge = settings_from_mapping({"services": {"payments": {"jobs": {"deploy": "p/deploy"}}}})
    config = Settings.model_validate({"url": URL, "user": "u", "token": "t"})
    plugin = JenkinsPlugin(config, bridge)
    with responses.RequestsMock() as mocked:  # any request would fail the test
        assert plugin.start_job(release=release, purpose="build", params=core_params()) is None
        assert (
            plugin.start_job(release=release, purpose="unknown-job", params=core_params()) is None
        )
        other = make_release(service="billing")
        assert plugin.start_job(release=other, purpose="deploy", params=core_params()) is None
        assert len(mocked.calls) == 0


@responses.activate
def test_a_queued_build_of_the_release_is_not_triggered_again(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins(
        "payments/deploy",
        queue=[
            queue_item(7, "payments/build", RELEASE_ID=RID),  # another job
            queue_item(8, "payments/deploy", RELEASE_ID="rel-20261128-99999999", TASK="deploy"),
            queue_item(9, "payments/deploy", RELEASE_ID=RID, TASK="deploy"),
        ],
    )
    ref = plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert ref is not None and ref.queue_id == "9" and ref.build_id is None
    assert posts() == []
    assert len(responses.calls) == 1  # the queue answered: the job is not even read


@responses.activate
def test_a_running_or_finished_build_of_the_release_is_not_triggered_again(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins(
        "payments/deploy",
        builds=[
            build(12, "payments/deploy", 30, RELEASE_ID="rel-20261128-99999999", TASK="deploy"),
            build(11, "payments/deploy", 29, RELEASE_ID=RID, TASK="deploy"),
            build(10, "payments/deploy", 28, RELEASE_ID=RID, TASK="deploy"),
        ],
    )
    ref = plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert ref is not None
    assert (ref.build_id, ref.queue_id) == ("11", "29")  # the newest of the release
    assert ref.url == job_url("payments/deploy") + "11/"
    assert posts() == []


@responses.activate
def test_another_task_of_the_same_release_is_a_new_build(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    # a job serving deploy and rollback: the deploy's build is not the rollback's
    mock_jenkins(
        "payments/deploy",
        queue=[queue_item(3, "payments/deploy", RELEASE_ID=RID, TASK="deploy")],
        builds=[build(4, "payments/deploy", 2, RELEASE_ID=RID, TASK="deploy")],
    )
    bridge = settings_from_mapping(
        {
            "services": {
                "payments": {"jobs": {"deploy": "payments/deploy", "rollback": "payments/deploy"}}
            }
        }
    )
    shared = JenkinsPlugin(plugin.config, bridge)
    ref = shared.start_job(
        release=release, purpose="rollback", params=core_params(TASK="rollback", ROLLBACK_TO="1")
    )
    assert ref is not None and ref.queue_id == "41"
    assert len(posts()) == 1


@responses.activate
def test_a_build_without_a_task_parameter_matches_on_the_release(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    # the job defines no TASK: Jenkins dropped it, the build is found by RELEASE_ID
    mock_jenkins(
        "payments/smoke",
        builds=[build(5, "payments/smoke", 2, RELEASE_ID=RID, VERSION="1.4.0")],
        defined=["RELEASE_ID", "VERSION"],
    )
    ref = plugin.start_job(release=release, purpose="smoke_test", params=core_params(TASK="s"))
    assert ref is not None and ref.build_id == "5"
    assert posts() == []


@responses.activate
def test_a_job_without_release_id_is_refused_before_any_trigger(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/build", defined=["VERSION"])
    with pytest.raises(NeedsHuman, match="does not define the string parameter RELEASE_ID"):
        plugin.start_job(release=release, purpose="build", params=core_params())
    assert posts() == []


@responses.activate
def test_a_shared_job_needs_a_task_parameter(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/deploy", defined=["RELEASE_ID", "VERSION"])
    bridge = settings_from_mapping(
        {
            "services": {
                "payments": {"jobs": {"deploy": "payments/deploy", "rollback": "payments/deploy"}}
            }
        }
    )
    shared = JenkinsPlugin(plugin.config, bridge)
    with pytest.raises(NeedsHuman, match="serves deploy, rollback but does not define"):
        shared.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert posts() == []


@responses.activate
def test_a_missing_or_disabled_job_is_an_error_without_a_trigger(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    responses.get(QUEUE, json={"items": []})
    responses.get(job_url("payments/build") + "api/json", status=404, body="<h1>Not Found</h1>")
    with pytest.raises(HTTPRequestError, match="Jenkins has no job payments/build"):
        plugin.start_job(release=release, purpose="build", params=core_params())
    responses.get(
        job_url("payments/deploy") + "api/json",
        json=job_document("payments/deploy", buildable=False),
    )
    with pytest.raises(HTTPRequestError, match="payments/deploy is disabled"):
        plugin.start_job(release=release, purpose="deploy", params=core_params(TASK="deploy"))
    assert posts() == []


@responses.activate
def test_an_answer_without_a_queue_item_is_looked_up_on_the_next_attempt(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/build", location=None)
    with pytest.raises(HTTPTransientError, match="without a queue item"):
        plugin.start_job(release=release, purpose="build", params=core_params())
    responses.replace(
        responses.GET, QUEUE, json={"items": [queue_item(77, "payments/build", RELEASE_ID=RID)]}
    )
    ref = plugin.start_job(release=release, purpose="build", params=core_params())
    assert ref is not None and ref.queue_id == "77"
    assert len(posts()) == 1


@responses.activate
def test_a_lost_answer_then_a_restart_triggers_once(
    make_plugin: Callable[..., JenkinsPlugin],
    release: Release,
    core_params: Callable[..., dict[str, str]],
) -> None:
    """Jenkins queued the build but the answer never arrived; the bridge restarts."""
    mock_jenkins("payments/build")
    responses.replace(
        responses.POST,
        job_url("payments/build") + "buildWithParameters",
        body=requests.ConnectionError("connection reset by peer"),
    )
    with pytest.raises(HTTPTransientError):
        make_plugin().start_job(release=release, purpose="build", params=core_params())
    responses.replace(
        responses.GET, QUEUE, json={"items": [queue_item(41, "payments/build", RELEASE_ID=RID)]}
    )
    restarted = make_plugin()
    ref = restarted.start_job(release=release, purpose="build", params=core_params())
    assert ref is not None and ref.queue_id == "41"
    assert len(posts()) == 1


# -- a first attempt: the core proved nothing was started, so nothing is looked for ---------
def gets() -> list[str]:
    return [c.request.url for c in responses.calls if c.request.method == "GET"]


@responses.activate
def test_a_first_attempt_reads_only_the_definitions_then_triggers(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/rollback")
    params = core_params(TASK="rollback", ROLLBACK_TO="1.3.0")
    ref = plugin.start_job(release=release, purpose="rollback", params=params, first_attempt=True)
    assert ref is not None and ref.queue_id == "41"
    [definitions] = gets()  # no queue, no builds
    assert definitions == (
        job_url("payments/rollback")
        + "api/json?tree=buildable%2Cproperty%5BparameterDefinitions%5Bname%5D%5D"
    )
    assert len(posts()) == 1
    # the definitions just read serve the next first attempt of that job: a POST alone
    plugin.start_job(release=release, purpose="rollback", params=params, first_attempt=True)
    assert len(gets()) == 1 and len(posts()) == 2


@responses.activate
def test_a_lookup_s_read_serves_a_later_first_attempt_until_it_is_a_minute_old(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    now = [1000.0]
    plugin.definitions.clock = lambda: now[0]
    mock_jenkins("payments/deploy")
    params = core_params(TASK="deploy")
    plugin.start_job(release=release, purpose="deploy", params=params)  # looks: 2 GETs
    assert len(gets()) == 2
    now[0] += 60.0
    plugin.start_job(release=release, purpose="deploy", params=params, first_attempt=True)
    assert len(gets()) == 2  # read 60 s ago: still trusted
    now[0] += 0.5
    plugin.start_job(release=release, purpose="deploy", params=params, first_attempt=True)
    assert len(gets()) == 3 and len(posts()) == 3


@responses.activate
def test_a_first_attempt_still_refuses_a_job_without_release_id(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/rollback", defined=["VERSION"])
    with pytest.raises(NeedsHuman, match="RELEASE_ID"):
        plugin.start_job(
            release=release,
            purpose="rollback",
            params=core_params(TASK="rollback"),
            first_attempt=True,
        )
    assert posts() == []


# -- after `release retry`: the superseded builds are not the one looked for ---------------
@responses.activate
def test_a_superseded_build_or_queue_item_is_passed_over_and_a_new_build_triggered(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    old = build(3, "payments/build", 40, RELEASE_ID=RID)
    queued = queue_item(44, "payments/build", RELEASE_ID=RID)
    mock_jenkins("payments/build", queue=[queued], builds=[old])
    superseded = [
        JobRef(
            system="jenkins", job="payments/build", purpose="build", queue_id="40", build_id="3"
        ),
        JobRef(system="jenkins", job="payments/build", purpose="build", queue_id="44"),
    ]
    ref = plugin.start_job(
        release=release, purpose="build", params=core_params(), superseded=superseded
    )
    assert ref is not None and ref.queue_id == "41"  # the new trigger's item
    assert len(posts()) == 1


@responses.activate
def test_a_build_superseded_in_another_job_or_by_queue_id_alone(
    plugin: JenkinsPlugin, release: Release, core_params: Callable[..., dict[str, str]]
) -> None:
    mock_jenkins("payments/build", builds=[build(3, "payments/build", 40, RELEASE_ID=RID)])
    other_job = JobRef(system="jenkins", job="payments/deploy", purpose="deploy", build_id="3")
    ref = plugin.start_job(
        release=release, purpose="build", params=core_params(), superseded=[other_job]
    )
    assert ref is not None and ref.build_id == "3" and posts() == []  # not superseded: found
    by_queue = JobRef(system="jenkins", job="payments/build", purpose="build", queue_id="40")
    ref = plugin.start_job(
        release=release, purpose="build", params=core_params(), superseded=[by_queue]
    )
    assert ref is not None and ref.queue_id == "41" and len(posts()) == 1
