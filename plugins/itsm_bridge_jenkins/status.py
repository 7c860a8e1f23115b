"""`job_status`: where a job the plugin started stands, read from the queue, the build and its
JUnit report, each with `tree=` so answers stay small.

The reference `start_job` returned carries the queue item's id (and the build number when the
build already existed). Following it ("Remote access API"; `hudson.model.Queue`):

- `GET /queue/item/<id>/api/json?tree=id,why,cancelled,executable[number,url]`: a waiting item
  has `why` ("In the quiet period. Expires in 4.9 sec", "Waiting for next available
  executor"): QUEUED with that reason. An item that left the queue has `cancelled` and
  `executable` (`{number, url}` of the build, null when cancelled): a cancelled item is
  ABORTED ("cancelled in the Jenkins queue").
- Jenkins forgets an item 5 minutes after it left the queue (`Queue.leftItems`,
  `expireAfterWrite(5 * 60, SECONDS)`; python-jenkins `build_job`: "this queue number is only
  valid for about five minutes"): a 404. The build is then the one whose `queueId`
  (`Run.getQueueId()`, exported, kept in the build's record; the queue counter survives
  restarts in queue.xml) equals the item's id, among the job's newest `max_builds` builds.
- `GET /job/.../<n>/api/json?tree=number,url,building,result,duration,artifacts[...],
  actions[causes[shortDescription]]`: `result` is null while building (and `building` true
  until the run is finalized, even when a result is already set): RUNNING. Then, exactly:
  SUCCESS -> succeeded, UNSTABLE -> unstable, FAILURE -> failed, ABORTED -> aborted (the
  detail names who, from `jenkins.model.InterruptedBuildAction`'s causes: "Aborted by
  alice"), NOT_BUILT -> failed ("not built"). `duration` is milliseconds; artifacts are
  `<build url>artifact/<relativePath>` (`Run.Artifact`).
- `GET /job/.../<n>/testReport/api/json?tree=failCount,passCount,skipCount,totalCount`
  (`hudson.tasks.junit.TestResult`; python-jenkins `get_build_test_report`: a 404 "can happen
  if the test report wasn't generated"): 404 means the build has no report (`tests` None). An
  aggregated report (matrix jobs) has no `passCount`: passed = total - failed - skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import JobRef, JobState, JobStatus, TestSummary
from itsm_bridge_jenkins.client import JenkinsClient
from itsm_bridge_jenkins.jobs import SYSTEM

if TYPE_CHECKING:
    from itsm_bridge_jenkins import Settings

QUEUE_ITEM_TREE = "id,why,cancelled,executable[number,url]"
BUILD_TREE = (
    "number,url,building,result,duration,queueId,artifacts[relativePath]{0,100},"
    "actions[causes[shortDescription]]"
)
REPORT_TREE = "failCount,passCount,skipCount,totalCount"
RESULTS = {
    "SUCCESS": JobState.SUCCEEDED,
    "UNSTABLE": JobState.UNSTABLE,
    "FAILURE": JobState.FAILED,
    "ABORTED": JobState.ABORTED,
    "NOT_BUILT": JobState.FAILED,
}


def _number(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def status(client: JenkinsClient, config: Settings, job: JobRef) -> JobStatus | None:
    """The state of a job this plugin started; None for another system's job."""
    if job.system != SYSTEM:
        return None
    number = _number(job.build_id)
    if number is None:
        located = follow_queue(client, config, job)
        if isinstance(located, JobStatus):
            return located
        number = located
    return build_status(client, job, number)


def follow_queue(client: JenkinsClient, config: Settings, job: JobRef) -> JobStatus | int:
    """The queue item's state while it waits (or was cancelled), else its build's number."""
    queue_id = _number(job.queue_id)
    if queue_id is None:
        raise NeedsHuman(
            f"the reference to Jenkins job {job.job} has neither a queue item nor "
            "a build number; retry the step to start it again"
        )
    item = client.get_json(
        client.url(f"/queue/item/{queue_id}/api/json"),
        f"GET queue item {queue_id}",
        tree=QUEUE_ITEM_TREE,
        missing_ok=True,
    )
    if item is None:
        return build_from_queue_id(client, config, job, queue_id)
    executable = item.get("executable") or {}
    if _number(executable.get("number")) is not None:
        return int(executable["number"])
    if item.get("cancelled"):
        return JobStatus(
            state=JobState.ABORTED,
            job=job,
            detail=f"{job.job}: cancelled in the Jenkins queue (item {queue_id}) before it started",
        )
    why = str(item.get("why") or "waiting")
    return JobStatus(state=JobState.QUEUED, job=job, detail=f"{job.job} queued: {why}")


def build_from_queue_id(client: JenkinsClient, config: Settings, job: JobRef, queue_id: int) -> int:
    """The number of the build that came from queue item `queue_id` (the item is gone)."""
    document = client.get_json(
        client.job_url(job.job) + "api/json",
        f"GET {job.job}",
        tree=f"builds[number,queueId]{{0,{config.max_builds}}}",
        missing_ok=True,
    )
    for build in (document or {}).get("builds") or []:
        if _number(build.get("queueId")) == queue_id and _number(build.get("number")):
            return int(build["number"])
    raise NeedsHuman(
        f"Jenkins forgot queue item {queue_id} of {job.job} and none of the job's newest "
        f"{config.max_builds} builds came from it (cancelled, or older builds: raise "
        "plugins.jenkins.max_builds); check the job, then retry the step"
    )


def build_status(client: JenkinsClient, job: JobRef, number: int) -> JobStatus:
    """The build's state, facts and (once finished) test counts."""
    label = f"{job.job} #{number}"
    build_url = client.job_url(job.job) + f"{number}/"
    build = client.get_json(
        build_url + "api/json", f"GET {label}", tree=BUILD_TREE, missing_ok=True
    )
    if build is None:
        raise NeedsHuman(
            f"Jenkins build {label} no longer exists (deleted, or discarded by the job's "
            "build retention); check the job, then retry the step"
        )
    shown = str(build.get("url") or build_url)
    ref = job.model_copy(update={"build_id": str(number), "url": shown})
    facts: dict[str, Any] = {"job": ref, "number": number, "url": shown}
    result = build.get("result")
    if build.get("building") or result is None:
        return JobStatus(state=JobState.RUNNING, detail=f"{label} running", **facts)
    duration = _number(build.get("duration"))
    facts["duration_seconds"] = duration / 1000 if duration is not None else None
    facts["artifacts"] = [
        f"{shown}artifact/{a['relativePath']}"
        for a in build.get("artifacts") or []
        if isinstance(a, dict) and a.get("relativePath")
    ]
    tests = report_counts(client, label, build_url)
    state = RESULTS.get(str(result), JobState.FAILED)
    detail = f"{label} {result}"
    if result == "ABORTED":
        detail = f"{label} {aborted_by(build)}"
    elif result == "NOT_BUILT":
        detail = f"{label} NOT_BUILT: Jenkins did not build it"
    elif result not in RESULTS:
        detail = f"{label} ended with an unknown result {str(result)[:40]!r}"
    if facts["duration_seconds"] is not None:
        detail += f" in {facts['duration_seconds']:.0f} s"
    detail += (
        f"; tests: {tests.passed} passed, {tests.failed} failed, {tests.skipped} skipped"
        if tests is not None
        else "; no test report"
    )
    return JobStatus(state=state, detail=detail, tests=tests, **facts)


def aborted_by(build: dict[str, Any]) -> str:
    """ "aborted by alice" from the build's `InterruptedBuildAction`, else "ABORTED"."""
    for action in build.get("actions") or []:
        if not isinstance(action, dict):
            continue
        if not str(action.get("_class", "")).endswith("InterruptedBuildAction"):
            continue
        for cause in action.get("causes") or []:
            text = str((cause or {}).get("shortDescription") or "").strip()
            if text.lower().startswith("aborted"):
                return "a" + text[1:]
            if text:
                return f"aborted: {text}"
    return "ABORTED (Jenkins recorded no cause)"


def report_counts(client: JenkinsClient, label: str, build_url: str) -> TestSummary | None:
    """The build's JUnit counts; None when it has no report (404)."""
    report = client.get_json(
        build_url + "testReport/api/json",
        f"GET {label} testReport",
        tree=REPORT_TREE,
        missing_ok=True,
    )
    if not isinstance(report, dict):
        return None
    failed = _number(report.get("failCount")) or 0
    skipped = _number(report.get("skipCount")) or 0
    passed = _number(report.get("passCount"))
    if passed is None:
        passed = max(0, (_number(report.get("totalCount")) or 0) - failed - skipped)
    return TestSummary(passed=passed, failed=failed, skipped=skipped)
