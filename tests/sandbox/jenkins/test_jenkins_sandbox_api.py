"""Conformance of the Jenkins sandbox with the remote access API, driven by python-jenkins and
raw HTTP. Time is a fake clock moved by the tests, so nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jenkins
import pytest
import requests
import yaml

from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from support import ManualClock

SEED = Path(__file__).parents[3] / "config" / "sandbox-seed.yaml"
AUTH = ("sandbox", "sandbox")
PARAMS = {"RELEASE_ID": "REL-7", "SERVICE": "payments", "VERSION": "1.4.0", "CHANGE": "CHG0030001"}


@pytest.fixture
def sandbox(clock: ManualClock) -> Iterator[JenkinsSandbox]:
    seed = yaml.safe_load(SEED.read_text())
    server = JenkinsSandbox(seed, clock=clock)
    server.add_job("tools/lint")  # a job without parameters
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(sandbox: JenkinsSandbox) -> jenkins.Jenkins:
    return jenkins.Jenkins(sandbox.url, "sandbox", "sandbox")


def get(sandbox: JenkinsSandbox, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.get(sandbox.url + path, timeout=5, **kwargs)


def post(sandbox: JenkinsSandbox, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.post(sandbox.url + path, timeout=5, allow_redirects=False, **kwargs)


# -- python-jenkins ----------------------------------------------------------------------------
def test_python_jenkins_build_queue_build_info_and_test_report(
    sandbox: JenkinsSandbox, client: jenkins.Jenkins, clock: ManualClock
) -> None:
    queue_id = client.build_job("payments/build", PARAMS)
    assert isinstance(queue_id, int)

    waiting = client.get_queue_item(queue_id)
    assert waiting["_class"] == "hudson.model.Queue$WaitingItem"
    assert waiting["id"] == queue_id
    assert waiting["why"].startswith("In the quiet period. Expires in")
    assert waiting["params"] == (
        "\nRELEASE_ID=REL-7\nSERVICE=payments\nVERSION=1.4.0\nCHANGE=CHG0030001"
    )
    assert waiting["task"]["name"] == "build"
    assert waiting["task"]["url"] == sandbox.url + "/job/payments/job/build/"
    assert waiting["actions"][0]["parameters"][0] == {
        "_class": "hudson.model.StringParameterValue",
        "name": "RELEASE_ID",
        "value": "REL-7",
    }
    assert "executable" not in waiting and waiting["buildable"] is False

    clock.tick(0.25)  # quiet period (0.2 s) over: the build starts
    left = client.get_queue_item(queue_id)
    assert left["_class"] == "hudson.model.Queue$LeftItem"
    assert left["cancelled"] is False and left["why"] is None
    assert left["executable"] == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
        "number": 1,
        "url": sandbox.url + "/job/payments/job/build/1/",
    }

    running = client.get_build_info("payments/build", 1)
    assert running["building"] is True and running["result"] is None and running["duration"] == 0
    assert client.get_build_test_report("payments/build", 1) is None  # no report yet

    clock.tick(1.0)  # the seeded duration
    info = client.get_build_info("payments/build", 1)
    assert info["building"] is False and info["result"] == "SUCCESS"
    assert info["duration"] == 1000 and info["queueId"] == queue_id
    assert info["fullDisplayName"] == "payments » build #1" and info["displayName"] == "#1"
    params = next(a for a in info["actions"] if a.get("_class") == "hudson.model.ParametersAction")
    assert {p["name"]: p["value"] for p in params["parameters"]} == PARAMS
    tests = next(
        a for a in info["actions"] if a.get("_class") == "hudson.tasks.junit.TestResultAction"
    )
    assert tests == {
        "_class": "hudson.tasks.junit.TestResultAction",
        "failCount": 0,
        "skipCount": 2,
        "totalCount": 44,
        "urlName": "testReport",
    }

    report = client.get_build_test_report("payments/build", 1)
    assert report["_class"] == "hudson.tasks.junit.TestResult"
    assert (report["passCount"], report["failCount"], report["skipCount"]) == (42, 0, 2)
    assert report["empty"] is False
    cases = [c for s in report["suites"] for c in s["cases"]]
    assert len(cases) == 44
    assert {c["status"] for c in cases} == {"PASSED", "SKIPPED"}
    assert all({"className", "name", "duration", "errorDetails"} <= set(c) for c in cases)


def test_python_jenkins_job_info_on_folder_job(client: jenkins.Jenkins, clock: ManualClock) -> None:
    client.build_job("payments/deploy", PARAMS)
    clock.tick(0.3)
    info = client.get_job_info("payments/deploy")
    assert info["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    assert info["name"] == "deploy" and info["fullName"] == "payments/deploy"
    assert info["url"].endswith("/job/payments/job/deploy/")
    assert info["buildable"] is True and info["inQueue"] is False and info["queueItem"] is None
    assert info["nextBuildNumber"] == 2
    assert info["lastBuild"]["number"] == 1 and info["builds"][0]["number"] == 1
    assert info["color"] == "notbuilt_anime"
    definitions = info["property"][0]["parameterDefinitions"]
    assert info["property"][0]["_class"] == "hudson.model.ParametersDefinitionProperty"
    assert [d["name"] for d in definitions] == [
        "RELEASE_ID",
        "SERVICE",
        "VERSION",
        "CHANGE",
        "TASK",
    ]
    assert definitions[0]["type"] == "StringParameterDefinition"

    folder = client.get_job_info("payments")
    assert folder["_class"] == "com.cloudbees.hudson.plugins.folder.Folder"
    assert [j["name"] for j in folder["jobs"]] == ["build", "deploy", "rollback", "smoke"]
    rollback = client.get_job_info("payments/rollback")
    assert rollback["property"][0]["parameterDefinitions"][-1]["name"] == "ROLLBACK_TO"


def test_python_jenkins_whoami_version_and_queue_cancel(
    client: jenkins.Jenkins, sandbox: JenkinsSandbox
) -> None:
    assert client.get_whoami()["id"] == "sandbox"
    assert client.get_version() == "2.440.3"
    queue_id = client.build_job("payments/smoke", PARAMS)
    assert [i["id"] for i in client.get_queue_info()] == [queue_id]
    client.cancel_queue(queue_id)
    item = client.get_queue_item(queue_id)
    assert item["_class"] == "hudson.model.Queue$LeftItem"
    assert item["cancelled"] is True and item["executable"] is None
    assert client.get_queue_info() == []


# -- raw HTTP ----------------------------------------------------------------------------------
def test_build_with_parameters_answers_201_with_queue_location(sandbox: JenkinsSandbox) -> None:
    response = post(sandbox, "/job/payments/job/build/buildWithParameters", data=PARAMS)
    assert response.status_code == 201
    assert response.headers["Location"] == sandbox.url + "/queue/item/1/"
    assert response.headers["X-Jenkins"] == "2.440.3"
    # an identical request still waiting in the queue folds into the same item
    again = post(sandbox, "/job/payments/job/build/buildWithParameters", params=PARAMS)
    assert again.headers["Location"] == sandbox.url + "/queue/item/1/"
    other = post(
        sandbox,
        "/job/payments/job/build/buildWithParameters",
        params={**PARAMS, "VERSION": "1.5.0", "UNDEFINED": "dropped"},
    )
    assert other.headers["Location"] == sandbox.url + "/queue/item/2/"
    item = get(sandbox, "/queue/item/2/api/json").json()
    assert "UNDEFINED" not in item["params"]
    assert post(sandbox, "/job/tools/job/lint/build").status_code == 201


def test_build_errors_match_jenkins(sandbox: JenkinsSandbox) -> None:
    no_params = post(sandbox, "/job/payments/job/build/build")
    assert no_params.status_code == 400 and "Nothing is submitted" in no_params.text
    not_parameterized = post(sandbox, "/job/tools/job/lint/buildWithParameters")
    assert not_parameterized.status_code == 500
    missing = post(sandbox, "/job/payments/job/nope/buildWithParameters", params=PARAMS)
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert get(sandbox, "/job/payments/job/build/buildWithParameters").status_code == 405
    assert get(sandbox, "/job/payments/job/build/99/api/json").status_code == 404
    assert get(sandbox, "/queue/item/999/api/json").status_code == 404
    json_form = post(
        sandbox,
        "/job/payments/job/build/build",
        data={"json": '{"parameter": [{"name": "RELEASE_ID", "value": "REL-9"}]}'},
    )
    assert json_form.status_code == 201


def test_tree_narrowing_nested_ranges_and_class(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    for version in ("1", "2", "3"):
        post(
            sandbox,
            "/job/payments/job/deploy/buildWithParameters",
            params={**PARAMS, "VERSION": version},
        )
        clock.tick(2)
    tree = "name,builds[number,result,actions[parameters[name,value]]]{0,2},lastBuild[number]"
    doc = get(sandbox, "/job/payments/job/deploy/api/json", params={"tree": tree}).json()
    assert set(doc) == {"_class", "name", "builds", "lastBuild"}
    assert doc["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    assert [b["number"] for b in doc["builds"]] == [3, 2]
    assert set(doc["builds"][0]) == {"_class", "number", "result", "actions"}
    params = next(a for a in doc["builds"][0]["actions"] if "parameters" in a)["parameters"]
    version = {"_class": "hudson.model.StringParameterValue", "name": "VERSION", "value": "3"}
    assert version in params
    assert doc["lastBuild"] == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
        "number": 3,
    }
    tail = get(
        sandbox, "/job/payments/job/deploy/api/json", params={"tree": "builds[number]{1,}"}
    ).json()["builds"]
    assert [b["number"] for b in tail] == [2, 1]
    assert get(
        sandbox, "/job/payments/job/deploy/api/json", params={"tree": "builds[number]{1}"}
    ).json()["builds"] == [
        {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": 2}
    ]
    root = get(sandbox, "/api/json", params={"tree": "jobs[name]"}).json()
    assert root == {
        "_class": "hudson.model.Hudson",
        "jobs": [
            {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "payments"},
            {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "tools"},
        ],
    }
    # Stapler: ServletException("Malformed tree expression: ..."), a 500
    assert get(sandbox, "/api/json", params={"tree": "jobs[name"}).status_code == 500


def test_root_and_crumb_issuer(sandbox: JenkinsSandbox) -> None:
    root = get(sandbox, "/api/json").json()
    assert root["_class"] == "hudson.model.Hudson"
    assert root["mode"] == "NORMAL" and root["useCrumbs"] is True
    assert root["nodeDescription"] == "the Jenkins controller's built-in node"
    crumb = get(sandbox, "/crumbIssuer/api/json").json()
    assert crumb["_class"] == "hudson.security.csrf.DefaultCrumbIssuer"
    assert crumb["crumbRequestField"] == "Jenkins-Crumb" and len(crumb["crumb"]) == 64


def test_test_report_is_404_when_the_build_ran_no_tests(
    sandbox: JenkinsSandbox, client: jenkins.Jenkins, clock: ManualClock
) -> None:
    client.build_job("payments/deploy", PARAMS)
    clock.tick(5)
    assert get(sandbox, "/job/payments/job/deploy/1/api/json").json()["result"] == "SUCCESS"
    assert get(sandbox, "/job/payments/job/deploy/1/testReport/api/json").status_code == 404
    assert client.get_build_test_report("payments/deploy", 1) is None
    assert (
        get(sandbox, "/job/payments/job/deploy/lastSuccessfulBuild/api/json").json()["number"] == 1
    )
    assert "Finished: SUCCESS" in get(sandbox, "/job/payments/job/deploy/1/consoleText").text


def test_authentication_shapes(sandbox: JenkinsSandbox) -> None:
    anonymous = get(sandbox, "/api/json", auth=None)
    assert anonymous.status_code == 403  # Jenkins never answers 401 to anonymous requests
    assert anonymous.headers["X-You-Are-Authenticated-As"] == "anonymous"
    assert "Authentication required" in anonymous.text
    assert anonymous.headers["X-Jenkins"] == "2.440.3"
    wrong = get(sandbox, "/api/json", auth=("sandbox", "wrong"))
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="Jenkins"'
    assert "Invalid password/token for user: sandbox" in wrong.text
    assert post(sandbox, "/job/tools/job/lint/build", auth=None).status_code == 403
    assert sandbox.requests_to("POST", "/job/tools")[0].status == 403
    who = get(sandbox, "/whoAmI/api/json", auth=None).json()
    assert who["anonymous"] is True and who["name"] == "anonymous"


def test_crumb_required_for_password_but_not_for_api_token() -> None:
    sandbox = JenkinsSandbox(user="bridge", password="s3cret", api_token="11aa22bb")
    sandbox.add_job("app")
    sandbox.start()
    try:
        password = ("bridge", "s3cret")
        refused = post(sandbox, "/job/app/build", auth=password)
        assert refused.status_code == 403 and "No valid crumb" in refused.text
        web = requests.Session()  # a crumb is valid only in the web session it came from
        web.auth = password
        issued = web.get(sandbox.url + "/crumbIssuer/api/json", timeout=5)
        assert "JSESSIONID.sandbox" in issued.headers["Set-Cookie"]
        crumb = issued.json()
        header = {crumb["crumbRequestField"]: crumb["crumb"]}
        # the crumb without its session cookie is refused
        assert post(sandbox, "/job/app/build", auth=password, headers=header).status_code == 403
        accepted = web.post(
            sandbox.url + "/job/app/build", headers=header, timeout=5, allow_redirects=False
        )
        assert accepted.status_code == 201
        # the same session asking again keeps its session (no new cookie) and crumb
        again = web.get(sandbox.url + "/crumbIssuer/api/json", timeout=5)
        assert "Set-Cookie" not in again.headers and again.json()["crumb"] == crumb["crumb"]
        token = post(sandbox, "/job/app/build", auth=("bridge", "11aa22bb"))
        assert token.status_code == 201
        # a job already waiting in the queue is not queued twice
        assert token.headers["Location"] == accepted.headers["Location"]
        # python-jenkins fetches the crumb by itself
        client = jenkins.Jenkins(sandbox.url, "bridge", "s3cret")
        assert client.build_job("app") == 1
    finally:
        sandbox.stop()


def test_estimated_duration_is_the_mean_of_the_three_builds_before(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    """`Run.getEstimatedDuration`: -1 without history, else the mean of the last (up to 3)
    completed builds before it; a build still running is left out."""
    sandbox.add_job("tools/timed", queue_delay=0.0)
    for seconds in (1.0, 2.0, 4.0, 8.0):
        sandbox.script_next("tools/timed", duration=seconds)
        post(sandbox, "/job/tools/job/timed/build")
        clock.tick(0.01)
        clock.tick(seconds)
    sandbox.script_next("tools/timed", duration=100.0)
    post(sandbox, "/job/tools/job/timed/build")
    clock.tick(0.01)  # #5 runs
    estimated = {n: sandbox.build("tools/timed", n)["estimatedDuration"] for n in range(1, 6)}
    assert estimated == {1: -1, 2: 1000, 3: 1500, 4: 2333, 5: 4666}
    sandbox.script_next("tools/timed", duration=1.0)
    post(sandbox, "/job/tools/job/timed/build")
    clock.tick(0.01)  # #6 runs while #5 still does: #5 is not counted
    assert sandbox.build("tools/timed", 6)["estimatedDuration"] == 4666
