"""`job_status`: the queue item followed to the build, Jenkins' results mapped exactly, the
JUnit report (404: none), and the build found by its queue id once Jenkins forgot the item."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import JobRef, JobState, TestSummary
from itsm_bridge_jenkins import JenkinsPlugin

URL = "https://ci.example.com"
JOB = URL + "/job/payments/job/deploy/"
ITEM = URL + "/queue/item/41/api/json"
QUEUED = JobRef(system="jenkins", job="payments/deploy", purpose="deploy", queue_id="41", url=JOB)


def build_json(number: int = 12, result: str | None = "SUCCESS", **extra: Any) -> dict[str, Any]:
    return {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
        "number": number,
        "url": f"https://jenkins.acme.internal/job/payments/job/deploy/{number}/",
        "building": result is None,
        "result": result,
        "duration": 63_400 if result else 0,
        "queueId": 41,
        "artifacts": [],
        "actions": [
            {
                "_class": "hudson.model.CauseAction",
                "causes": [
                    {
                        "_class": "hudson.model.Cause$UserIdCause",
                        "shortDescription": "Started by user bridge",
                    }
                ],
            }
        ],
        **extra,
    }


def report(**counts: int) -> dict[str, Any]:
    return {"_class": "hudson.tasks.junit.TestResult", **counts}


def paths() -> list[str]:
    return [c.request.path_url.split("?")[0] for c in responses.calls]


@responses.activate
def test_a_waiting_queue_item_is_queued_with_jenkins_reason(plugin: JenkinsPlugin) -> None:
    responses.get(
        ITEM,
        json={"id": 41, "why": "In the quiet period. Expires in 4.9 sec", "blocked": False},
    )
    status = plugin.job_status(job=QUEUED)
    assert status is not None and status.state == JobState.QUEUED
    assert status.detail == "payments/deploy queued: In the quiet period. Expires in 4.9 sec"
    assert not status.finished
    assert "tree=id%2Cwhy%2Ccancelled%2Cexecutable" in responses.calls[0].request.url


@responses.activate
def test_a_cancelled_queue_item_is_aborted(plugin: JenkinsPlugin) -> None:
    responses.get(ITEM, json={"id": 41, "cancelled": True, "executable": None, "why": None})
    status = plugin.job_status(job=QUEUED)
    assert status is not None and status.state == JobState.ABORTED
    assert "cancelled in the Jenkins queue" in status.detail


@responses.activate
def test_the_queue_item_leads_to_the_finished_build_and_its_facts(plugin: JenkinsPlugin) -> None:
    responses.get(ITEM, json={"id": 41, "cancelled": False, "executable": {"number": 12}})
    responses.get(
        JOB + "12/api/json",
        json=build_json(artifacts=[{"relativePath": "dist/payments-1.4.0.tar.gz"}]),
    )
    responses.get(
        JOB + "12/testReport/api/json", json=report(passCount=42, failCount=0, skipCount=2)
    )
    status = plugin.job_status(job=QUEUED)
    assert status is not None
    assert status.state == JobState.SUCCEEDED and status.finished
    assert status.number == 12
    shown = "https://jenkins.acme.internal/job/payments/job/deploy/12/"
    assert status.url == shown
    assert status.duration_seconds == pytest.approx(63.4)
    assert status.artifacts == [shown + "artifact/dist/payments-1.4.0.tar.gz"]
    assert status.tests == TestSummary(passed=42, failed=0, skipped=2)
    assert status.job.build_id == "12" and status.job.queue_id == "41"
    assert status.detail == (
        "payments/deploy #12 SUCCESS in 63 s; tests: 42 passed, 0 failed, 2 skipped"
    )
    assert paths() == [
        "/queue/item/41/api/json",
        "/job/payments/job/deploy/12/api/json",
        "/job/payments/job/deploy/12/testReport/api/json",
    ]
    assert "tree=failCount%2CpassCount%2CskipCount%2CtotalCount" in responses.calls[2].request.url


@responses.activate
def test_a_build_still_running_reads_no_report(plugin: JenkinsPlugin) -> None:
    ref = QUEUED.model_copy(update={"build_id": "12"})
    # `building` decides: Jenkins may set a result before the run is finalized
    responses.get(JOB + "12/api/json", json=build_json(result="FAILURE", building=True))
    status = plugin.job_status(job=ref)
    assert status is not None and status.state == JobState.RUNNING
    assert status.detail == "payments/deploy #12 running"
    assert paths() == ["/job/payments/job/deploy/12/api/json"]  # no queue, no report


@pytest.mark.parametrize(
    ("result", "state", "words"),
    [
        ("SUCCESS", JobState.SUCCEEDED, "#12 SUCCESS"),
        ("UNSTABLE", JobState.UNSTABLE, "#12 UNSTABLE"),
        ("FAILURE", JobState.FAILED, "#12 FAILURE"),
        ("ABORTED", JobState.ABORTED, "#12 ABORTED (Jenkins recorded no cause)"),
        ("NOT_BUILT", JobState.FAILED, "#12 NOT_BUILT: Jenkins did not build it"),
        ("SOMETHING_NEW", JobState.FAILED, "unknown result 'SOMETHING_NEW'"),
    ],
)
@responses.activate
def test_results_map_exactly(
    plugin: JenkinsPlugin, result: str, state: JobState, words: str
) -> None:
    ref = QUEUED.model_copy(update={"build_id": "12"})
    responses.get(JOB + "12/api/json", json=build_json(result=result))
    responses.get(JOB + "12/testReport/api/json", status=404, body="<h1>Not Found</h1>")
    status = plugin.job_status(job=ref)
    assert status is not None and status.state == state
    assert words in status.detail


@responses.activate
def test_an_aborted_build_says_who_aborted_it(plugin: JenkinsPlugin) -> None:
    ref = QUEUED.model_copy(update={"build_id": "12"})
    interrupted = {
        "_class": "jenkins.model.InterruptedBuildAction",
        "causes": [
            {
                "_class": "jenkins.model.CauseOfInterruption$UserInterruption",
                "shortDescription": "Aborted by alice",
            }
        ],
    }
    body = build_json(result="ABORTED")
    body["actions"].append(interrupted)
    responses.get(JOB + "12/api/json", json=body)
    responses.get(JOB + "12/testReport/api/json", status=404)
    status = plugin.job_status(job=ref)
    assert status is not None and status.state == JobState.ABORTED
    assert status.detail.startswith("payments/deploy #12 aborted by alice")
    # "Started by user bridge" (a CauseAction) is not mistaken for the interruption
    assert "Started" not in status.detail


@responses.activate
def test_a_timeout_abort_says_so(plugin: JenkinsPlugin) -> None:
    ref = QUEUED.model_copy(update={"build_id": "12"})
    body = build_json(result="ABORTED")
    body["actions"].append(
        {
            "_class": "jenkins.model.InterruptedBuildAction",
            "causes": [
                {"_class": "x.ExceededTimeout", "shortDescription": "Timeout has been exceeded"}
            ],
        }
    )
    responses.get(JOB + "12/api/json", json=body)
    responses.get(JOB + "12/testReport/api/json", status=404)
    status = plugin.job_status(job=ref)
    assert status is not None and "aborted: Timeout has been exceeded" in status.detail


@responses.activate
def test_a_404_test_report_means_no_report(plugin: JenkinsPlugin) -> None:
    ref = QUEUED.model_copy(update={"build_id": "12"})
    responses.get(JOB + "12/api/json", json=build_json())
    responses.get(JOB + "12/testReport/api/json", status=404, body="<h1>Not Found</h1>")
    status = plugin.job_status(job=ref)
    assert status is not None and status.tests is None
    assert status.detail.endswith("; no test report")


@responses.activate
def test_an_aggregated_report_has_no_pass_count(plugin: JenkinsPlugin) -> None:
    ref = QUEUED.model_copy(update={"build_id": "12"})
    responses.get(JOB + "12/api/json", json=build_json(result="UNSTABLE"))
    responses.get(
        JOB + "12/testReport/api/json",
        json={
            "_class": "hudson.tasks.test.MatrixTestResult",
            "failCount": 3,
            "skipCount": 1,
            "totalCount": 20,
        },
    )
    status = plugin.job_status(job=ref)
    assert status is not None and status.tests == TestSummary(passed=16, failed=3, skipped=1)


@responses.activate
def test_a_forgotten_queue_item_is_found_by_the_build_s_queue_id(plugin: JenkinsPlugin) -> None:
    responses.get(ITEM, status=404, body="<h1>Not Found</h1>")
    responses.get(
        JOB + "api/json",
        json={"builds": [{"number": 14, "queueId": 44}, {"number": 12, "queueId": 41}]},
    )
    responses.get(JOB + "12/api/json", json=build_json())
    responses.get(JOB + "12/testReport/api/json", status=404)
    status = plugin.job_status(job=QUEUED)
    assert status is not None and status.number == 12 and status.state == JobState.SUCCEEDED
    assert "builds%5Bnumber%2CqueueId%5D%7B0%2C50%7D" in responses.calls[1].request.url


@responses.activate
def test_a_forgotten_queue_item_without_a_build_needs_a_human(
    make_plugin: Any,
) -> None:
    plugin = make_plugin(max_builds=20)
    responses.get(ITEM, status=404)
    responses.get(JOB + "api/json", json={"builds": [{"number": 14, "queueId": 44}]})
    with pytest.raises(NeedsHuman, match="none of the job's newest 20 builds came from it"):
        plugin.job_status(job=QUEUED)


@responses.activate
def test_a_deleted_build_needs_a_human(plugin: JenkinsPlugin) -> None:
    responses.get(JOB + "12/api/json", status=404)
    with pytest.raises(NeedsHuman, match="no longer exists"):
        plugin.job_status(job=QUEUED.model_copy(update={"build_id": "12"}))


def test_another_system_s_job_is_not_ours(plugin: JenkinsPlugin) -> None:
    other = JobRef(system="gitlab", job="payments/deploy", purpose="deploy", build_id="3")
    with responses.RequestsMock() as mocked:
        assert plugin.job_status(job=other) is None
        assert len(mocked.calls) == 0
