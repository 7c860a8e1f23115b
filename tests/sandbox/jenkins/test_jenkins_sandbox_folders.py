"""Folders in the Jenkins sandbox: nested `tree=` on the root and on folders, as Stapler's
`NamedPathPruner` answers it, driven by python-jenkins (`get_all_jobs`, `get_job_info`) and by
raw HTTP. Requests are counted at the sandbox (its request log), so a client that has to ask
again because a level came back without its jobs is noticed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jenkins
import pytest
import requests
import yaml

from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from itsm_bridge_sandbox.jenkins.tree import Lazy, TreeSyntaxError, apply, parse
from support import ManualClock

SEED = Path(__file__).parents[3] / "config" / "sandbox-seed.yaml"
AUTH = ("sandbox", "sandbox")
FOLDER = "com.cloudbees.hudson.plugins.folder.Folder"
PIPELINE = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
FREESTYLE = "hudson.model.FreeStyleProject"
HUDSON = "hudson.model.Hudson"
ALL_ITEMS = [
    "payments",
    "platform",
    "tools",
    "payments/build",
    "payments/deploy",
    "payments/rollback",
    "payments/smoke",
    "platform/infra",
    "tools/lint",
    "platform/infra/db",
    "platform/infra/db/migrate",
]


@pytest.fixture
def sandbox(clock: ManualClock) -> Iterator[JenkinsSandbox]:
    """The demo seed (folder `payments`), plus `tools/lint` and a job three folders down."""
    server = JenkinsSandbox(yaml.safe_load(SEED.read_text()), clock=clock)
    server.add_job("tools/lint", kind="freestyle")
    server.add_job("platform/infra/db/migrate")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(sandbox: JenkinsSandbox) -> jenkins.Jenkins:
    return jenkins.Jenkins(sandbox.url, "sandbox", "sandbox")


def get(sandbox: JenkinsSandbox, path: str, tree: str | None = None) -> requests.Response:
    params = {"tree": tree} if tree is not None else None
    return requests.get(sandbox.url + path, params=params, auth=AUTH, timeout=5)


def api_calls(sandbox: JenkinsSandbox) -> list[str]:
    """The `api/json` GETs the sandbox answered, as paths (python-jenkins' first request also
    fetches `/crumbIssuer/api/json`, left out here)."""
    paths = [r.path for r in sandbox.requests_to("GET") if r.path.endswith("/api/json")]
    return [p for p in paths if not p.startswith("/crumbIssuer/")]


# -- python-jenkins ----------------------------------------------------------------------------
def test_get_all_jobs_finds_jobs_in_nested_folders_in_one_request(
    sandbox: JenkinsSandbox, client: jenkins.Jenkins
) -> None:
    sandbox.clear_log()
    jobs = client.get_all_jobs()

    assert [j["fullname"] for j in jobs] == ALL_ITEMS
    assert api_calls(sandbox) == ["/api/json"]  # ten folder levels fit in one request
    by_name = {j["fullname"]: j for j in jobs}
    build = by_name["payments/build"]
    assert build["_class"] == PIPELINE and build["color"] == "notbuilt"
    assert build["url"] == sandbox.url + "/job/payments/job/build/"
    assert "jobs" not in build  # a job has no `jobs` property
    assert by_name["tools/lint"]["_class"] == FREESTYLE
    folder = by_name["platform/infra"]
    assert folder["_class"] == FOLDER and "color" not in folder  # folders export no color
    assert folder["url"] == sandbox.url + "/job/platform/job/infra/"
    assert [j["name"] for j in folder["jobs"]] == ["db"]


def test_get_all_jobs_asks_again_below_the_depth_of_one_request(
    sandbox: JenkinsSandbox, client: jenkins.Jenkins
) -> None:
    sandbox.clear_log()
    jobs = client.get_all_jobs(folder_depth_per_request=1)

    assert sorted(j["fullname"] for j in jobs) == sorted(ALL_ITEMS)
    # `jobs[url,color,name,jobs]`: the bare `jobs` of each folder comes back as objects with
    # `_class` only, so python-jenkins asks each folder that has children once more.
    assert api_calls(sandbox) == [
        "/api/json",
        "/job/payments/api/json",
        "/job/platform/api/json",
        "/job/tools/api/json",
        "/job/platform/job/infra/api/json",
        "/job/platform/job/infra/job/db/api/json",
    ]
    assert [j["fullname"] for j in client.get_all_jobs(folder_depth=0)] == [
        "payments",
        "platform",
        "tools",
    ]


def test_get_job_info_on_jobs_and_folders_at_depth(
    client: jenkins.Jenkins, sandbox: JenkinsSandbox
) -> None:
    build = client.get_job_info("payments/build")
    assert build["_class"] == PIPELINE and build["fullName"] == "payments/build"
    migrate = client.get_job_info("platform/infra/db/migrate")
    assert migrate["fullName"] == "platform/infra/db/migrate"
    assert migrate["fullDisplayName"] == "platform » infra » db » migrate"
    assert migrate["url"] == sandbox.url + "/job/platform/job/infra/job/db/job/migrate/"
    infra = client.get_job_info("platform/infra")
    assert infra["_class"] == FOLDER and infra["fullName"] == "platform/infra"
    # depth=0: a folder's own jobs are references, without their own `jobs`
    assert infra["jobs"] == [
        {
            "_class": FOLDER,
            "name": "db",
            "url": sandbox.url + "/job/platform/job/infra/job/db/",
        }
    ]
    assert client.get_job_name("platform/infra/db/migrate") == "migrate"


# -- raw HTTP ----------------------------------------------------------------------------------
def test_nested_tree_on_the_root_returns_the_requested_fields_at_each_level(
    sandbox: JenkinsSandbox,
) -> None:
    url = sandbox.url
    doc = get(sandbox, "/api/json", "jobs[name,url,jobs[name,url]]").json()
    assert doc == {
        "_class": HUDSON,
        "jobs": [
            {
                "_class": FOLDER,
                "name": "payments",
                "url": f"{url}/job/payments/",
                "jobs": [
                    {"_class": PIPELINE, "name": n, "url": f"{url}/job/payments/job/{n}/"}
                    for n in ("build", "deploy", "rollback", "smoke")
                ],
            },
            {
                "_class": FOLDER,
                "name": "platform",
                "url": f"{url}/job/platform/",
                # `infra` is a folder, but its jobs were not asked for at this level
                "jobs": [
                    {"_class": FOLDER, "name": "infra", "url": f"{url}/job/platform/job/infra/"}
                ],
            },
            {
                "_class": FOLDER,
                "name": "tools",
                "url": f"{url}/job/tools/",
                "jobs": [
                    {"_class": FREESTYLE, "name": "lint", "url": f"{url}/job/tools/job/lint/"}
                ],
            },
        ],
    }


def test_python_jenkins_tree_shape_with_a_bare_innermost_jobs(sandbox: JenkinsSandbox) -> None:
    tree = "jobs[name,color,jobs[name,color,jobs]]"
    doc = get(sandbox, "/api/json", tree).json()
    platform = next(j for j in doc["jobs"] if j["name"] == "platform")
    # a folder has no color; the innermost bare `jobs` lists objects with `_class` only
    assert platform == {
        "_class": FOLDER,
        "name": "platform",
        "jobs": [{"_class": FOLDER, "name": "infra", "jobs": [{"_class": FOLDER}]}],
    }
    payments = next(j for j in doc["jobs"] if j["name"] == "payments")
    assert payments["jobs"][0] == {"_class": PIPELINE, "name": "build", "color": "notbuilt"}


def test_nested_tree_on_a_folder_reaches_any_depth_and_any_property(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    doc = get(sandbox, "/job/platform/api/json", "jobs[fullName,jobs[fullName,jobs[fullName]]]")
    assert doc.json() == {
        "_class": FOLDER,
        "jobs": [
            {
                "_class": FOLDER,
                "fullName": "platform/infra",
                "jobs": [
                    {
                        "_class": FOLDER,
                        "fullName": "platform/infra/db",
                        "jobs": [{"_class": PIPELINE, "fullName": "platform/infra/db/migrate"}],
                    }
                ],
            }
        ],
    }
    requests.post(sandbox.url + "/job/tools/job/lint/build", auth=AUTH, timeout=5)
    clock.tick(1.0)  # quiet period and duration over
    bare = get(sandbox, "/job/tools/job/lint/api/json", "name,lastBuild,firstBuild[number]")
    assert bare.json() == {
        "_class": FREESTYLE,
        "name": "lint",
        "lastBuild": {"_class": "hudson.model.FreeStyleBuild"},
        "firstBuild": {"_class": "hudson.model.FreeStyleBuild", "number": 1},
    }
    deep = get(sandbox, "/api/json", "jobs[name,jobs[name,lastBuild[number,result]]{0,1}]{2}")
    assert deep.json() == {
        "_class": HUDSON,
        "jobs": [
            {
                "_class": FOLDER,
                "name": "tools",
                "jobs": [
                    {
                        "_class": FREESTYLE,
                        "name": "lint",
                        "lastBuild": {
                            "_class": "hudson.model.FreeStyleBuild",
                            "number": 1,
                            "result": "SUCCESS",
                        },
                    }
                ],
            }
        ],
    }


def test_without_a_tree_folders_in_a_list_are_references(sandbox: JenkinsSandbox) -> None:
    root = get(sandbox, "/api/json").json()
    assert [set(j) for j in root["jobs"]] == [{"_class", "name", "url"}] * 3
    payments = get(sandbox, "/job/payments/api/json").json()
    assert {"_class", "name", "url", "color"} == set(payments["jobs"][0])


@pytest.mark.parametrize(
    "bad", ["jobs[]", "jobs,", ",jobs", "jobs[name,]", "jobs{-1}", "jobs{a}", "jobs{1", "a[b"]
)
def test_malformed_tree_is_a_server_error_as_in_stapler(sandbox: JenkinsSandbox, bad: str) -> None:
    response = get(sandbox, "/api/json", bad)
    assert response.status_code == 500
    assert "Malformed tree expression" in response.text
    with pytest.raises(TreeSyntaxError):
        parse(bad)


def test_tree_ranges_and_lazy_values_unit() -> None:
    assert parse("a{,2}")["a"].range == (0, 2)
    assert parse("a{3}")["a"].range == (3, 4)
    assert parse("a{1,}")["a"].range == (1, None)
    calls: list[str] = []

    def render(name: str) -> dict[str, Any]:
        calls.append(name)
        return {"_class": "K", "name": name, "skip": 1}

    doc = {"_class": "R", "items": [Lazy(lambda: render("x")), Lazy(lambda: render("y"))]}
    assert apply(doc, parse("items[name]{1}")) == {
        "_class": "R",
        "items": [{"_class": "K", "name": "y"}],
    }
    assert calls == ["y"]  # a range skips the rendering of what it leaves out
    assert apply(doc, parse("other")) == {"_class": "R"}
    assert calls == ["y"]  # nothing is rendered that the tree does not reach
    # a lazy object named without brackets: its `_class` only, as for any object
    assert apply({"one": Lazy(lambda: render("z"))}, parse("one")) == {"one": {"_class": "K"}}
