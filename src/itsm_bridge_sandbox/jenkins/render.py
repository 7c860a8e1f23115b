"""The JSON documents the sandbox serves, in the shapes Jenkins' Stapler export writes.

Shapes checked against Jenkins core sources and public samples: `hudson.model.Queue`
(`WaitingItem`/`LeftItem`, `getParams()` = "\\nNAME=value" per parameter, `why` from
`Queue.InQuietPeriod` = "In the quiet period. Expires in {0}"), `hudson.model.Job` / `Run`
exported properties (python-jenkins' `get_build_info` docstring sample), `hudson.tasks.junit`
`TestResult`/`SuiteResult`/`CaseResult` and `TestResultAction` (`urlName: testReport`).
`depth=0` renders nested builds as `{_class, number, url}` and the items of a folder (or of
the root) as `{_class, name, url}`, plus `color` for a job. A folder exports its items as
`jobs` (`AbstractFolder.getItems()`, `@Exported(name="jobs")`, cloudbees-folder plugin) and no
`color` (that is `Job.getIconColor`). With a `tree=` Stapler ignores `depth` and writes what the
tree names at any depth, so `deep=True` renders nested items and builds in full as `tree.Lazy`
values: only what the tree reaches is rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from itsm_bridge_sandbox.jenkins.model import Build, Folder, JenkinsModel, Job, QueueItem
from itsm_bridge_sandbox.jenkins.runs import artifacts_json, interrupted_action
from itsm_bridge_sandbox.jenkins.tree import Lazy

JOB_CLASS = {
    "pipeline": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
    "freestyle": "hudson.model.FreeStyleProject",
}
RUN_CLASS = {
    "pipeline": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    "freestyle": "hudson.model.FreeStyleBuild",
}
FOLDER_CLASS = "com.cloudbees.hudson.plugins.folder.Folder"
COLOR = {
    "SUCCESS": "blue",
    "UNSTABLE": "yellow",
    "FAILURE": "red",
    "ABORTED": "aborted",
    "NOT_BUILT": "notbuilt",
}


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def item_path(full_name: str) -> str:
    """`payments/build` -> `job/payments/job/build/` (relative, as Jenkins' `getUrl()`)."""
    return "".join(f"job/{part}/" for part in full_name.split("/") if part)


def display_path(full_name: str) -> str:
    """Jenkins' fullDisplayName separator between folders is ' » '."""
    return " » ".join(full_name.split("/"))


def user_cause(user: str) -> dict[str, Any]:
    return {
        "_class": "hudson.model.CauseAction",
        "causes": [
            {
                "_class": "hudson.model.Cause$UserIdCause",
                "shortDescription": f"Started by user {user}",
                "userId": user,
                "userName": user,
            }
        ],
    }


def parameters_action(params: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "_class": "hudson.model.ParametersAction",
        "parameters": [
            {"_class": "hudson.model.StringParameterValue", "name": n, "value": v}
            for n, v in params
        ],
    }


def job_color(job: Job) -> str:
    if job.disabled:
        return "disabled"
    last = job.last(lambda b: not b.building)
    color = COLOR.get(last.result or "", "notbuilt") if last else "notbuilt"
    return color + "_anime" if any(b.building for b in job.builds.values()) else color


def build_ref(root: str, build: Build | None) -> dict[str, Any] | None:
    if build is None:
        return None
    return {
        "_class": RUN_CLASS[build.job.kind],
        "number": build.number,
        "url": f"{root}{item_path(build.job.full_name)}{build.number}/",
    }


def item_ref(root: str, node: Folder | Job) -> dict[str, Any]:
    if isinstance(node, Folder):
        return {
            "_class": FOLDER_CLASS,
            "name": node.name,
            "url": f"{root}{item_path(node.full_name)}",
        }
    return {
        "_class": JOB_CLASS[node.kind],
        "name": node.name,
        "url": f"{root}{item_path(node.full_name)}",
        "color": job_color(node),
    }


def items(model: JenkinsModel, folder: Folder, root: str, deep: bool) -> list[Any]:
    """The `jobs` of the root or of a folder: references, or (`deep`) lazy full documents."""
    nodes = sorted(folder.children.values(), key=lambda n: n.name)
    if not deep:
        return [item_ref(root, n) for n in nodes]
    return [Lazy(partial(item_json, model, n, root)) for n in nodes]


def item_json(model: JenkinsModel, node: Folder | Job, root: str) -> dict[str, Any]:
    """A folder's or a job's own `api/json`, as a tree reaching it sees it (`deep`)."""
    if isinstance(node, Folder):
        return folder_json(model, node, root, deep=True)
    return job_json(model, node, root, deep=True)


def root_json(model: JenkinsModel, root: str, deep: bool = False) -> dict[str, Any]:
    """`GET /api/json` (`hudson.model.Hudson`)."""
    view = {"_class": "hudson.model.AllView", "name": "all", "url": root}
    return {
        "_class": "hudson.model.Hudson",
        "assignedLabels": [{"name": "built-in"}],
        "mode": "NORMAL",
        "nodeDescription": "the Jenkins controller's built-in node",
        "nodeName": "",
        "numExecutors": 2,
        "description": None,
        "jobs": items(model, model.root, root, deep),
        "overallLoad": {},
        "primaryView": view,
        "quietDownReason": None,
        "quietingDown": False,
        "slaveAgentPort": -1,
        "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
        "url": root,
        "useCrumbs": True,
        "useSecurity": True,
        "views": [view],
    }


def folder_json(
    model: JenkinsModel, folder: Folder, root: str, deep: bool = False
) -> dict[str, Any]:
    """`GET /job/<folder>/api/json` (CloudBees Folder)."""
    url = f"{root}{item_path(folder.full_name)}"
    return {
        "_class": FOLDER_CLASS,
        "actions": [{}, {"_class": "com.cloudbees.plugins.credentials.ViewCredentialsAction"}],
        "description": folder.description,
        "displayName": folder.name,
        "displayNameOrNull": None,
        "fullDisplayName": display_path(folder.full_name),
        "fullName": folder.full_name,
        "name": folder.name,
        "url": url,
        "healthReport": [],
        "jobs": items(model, folder, root, deep),
        "primaryView": {"_class": "hudson.model.AllView", "name": "All", "url": url},
        "views": [{"_class": "hudson.model.AllView", "name": "All", "url": url}],
    }


def param_definitions(job: Job) -> list[dict[str, Any]]:
    return [
        {
            "_class": "hudson.model.StringParameterDefinition",
            "defaultParameterValue": {
                "_class": "hudson.model.StringParameterValue",
                "name": p.name,
                "value": p.default,
            },
            "description": p.description,
            "name": p.name,
            "type": "StringParameterDefinition",
        }
        for p in job.parameters
    ]


def job_json(
    model: JenkinsModel, job: Job, root: str, depth: int = 0, deep: bool = False
) -> dict[str, Any]:
    """`GET /job/.../api/json` for a job (WorkflowJob or FreeStyleProject)."""
    numbers = sorted(job.builds, reverse=True)

    def ref(build: Build | None) -> Any:
        if build is None:
            return None
        if deep:
            return Lazy(partial(build_json, build, root))
        return build_json(build, root) if depth >= 1 else build_ref(root, build)

    prop = (
        []
        if not job.parameters
        else [
            {
                "_class": "hudson.model.ParametersDefinitionProperty",
                "parameterDefinitions": param_definitions(job),
            }
        ]
    )

    def later(render: Callable[[], Any]) -> Any:
        """Computed only where a tree reaches it (deep), else now: a job's listing scans its
        builds, which a tree that names a few properties does not pay for."""
        return Lazy(render) if deep else render()

    def queued() -> list[QueueItem]:
        return [i for i in model.queue.values() if i.job is job and not i.left]

    def first_queued() -> Any:
        items = queued()
        return queue_item_json(items[0], root) if items else None

    def link(name: str) -> Any:
        return ref(permalink(job, name))

    latest = last_finished(job, before=job.next_build_number, count=3)
    links = {name: later(partial(link, name)) for name in PERMALINKS}
    out: dict[str, Any] = {
        "_class": JOB_CLASS[job.kind],
        "actions": [
            *prop,
            {},
            {"_class": "com.cloudbees.plugins.credentials.ViewCredentialsAction"},
        ],
        "description": job.description,
        "displayName": job.name,
        "displayNameOrNull": None,
        "fullDisplayName": display_path(job.full_name),
        "fullName": job.full_name,
        "name": job.name,
        "url": f"{root}{item_path(job.full_name)}",
        "buildable": not job.disabled,
        "builds": [ref(job.builds[n]) for n in numbers[:100]],
        "allBuilds": later(lambda: [ref(job.builds[n]) for n in numbers]),
        "color": later(lambda: job_color(job)),
        "firstBuild": ref(job.builds[numbers[-1]]) if numbers else None,
        "healthReport": [],
        "inQueue": later(lambda: bool(queued())),
        "keepDependencies": False,
        **links,
        "nextBuildNumber": job.next_build_number,
        "property": prop,
        "queueItem": later(first_queued),
        "concurrentBuild": job.kind == "pipeline",
        "disabled": job.disabled,
        "estimatedDuration": estimated_ms(latest),
    }
    if job.kind == "pipeline":
        out["resumeBlocked"] = False
    else:
        out.update(
            {
                "downstreamProjects": [],
                "labelExpression": None,
                "scm": {"_class": "hudson.scm.NullSCM"},
                "upstreamProjects": [],
            }
        )
    return out


PERMALINKS = {
    "lastBuild": lambda b: True,
    "lastCompletedBuild": lambda b: not b.building,
    "lastFailedBuild": lambda b: b.result == "FAILURE",
    "lastStableBuild": lambda b: b.result == "SUCCESS",
    "lastSuccessfulBuild": lambda b: b.result in ("SUCCESS", "UNSTABLE"),
    "lastUnstableBuild": lambda b: b.result == "UNSTABLE",
    "lastUnsuccessfulBuild": lambda b: not b.building and b.result != "SUCCESS",
}


def permalink(job: Job, name: str) -> Build | None:
    return job.last(PERMALINKS[name])


def last_finished(job: Job, before: int, count: int) -> list[Build]:
    """The newest `count` builds numbered below `before` that are not building, newest
    first: walked back from `before`, not by scanning every build (a job's listing renders
    this for each of its builds)."""
    found: list[Build] = []
    for number in range(before - 1, 0, -1):
        build = job.builds.get(number)
        if build is not None and not build.building:
            found.append(build)
            if len(found) == count:
                break
    return found


def estimated_ms(done: list[Build]) -> int:
    """`estimatedDuration`: the mean duration of these finished builds; -1 without any."""
    return sum(ms(b.outcome.duration) for b in done) // len(done) if done else -1


def build_json(build: Build, root: str) -> dict[str, Any]:
    """`GET /job/.../<n>/api/json`."""
    job = build.job
    actions: list[dict[str, Any]] = []
    if job.parameters:
        actions.append(parameters_action(build.params))
    actions.append(user_cause("sandbox"))
    actions.append({})
    if build.aborted_by is not None:
        actions.append(interrupted_action(build.aborted_by))
    report = build.test_report
    if report is not None:
        actions.append(
            {
                "_class": "hudson.tasks.junit.TestResultAction",
                "failCount": report["failCount"],
                "skipCount": report["skipCount"],
                "totalCount": report["failCount"] + report["skipCount"] + report["passCount"],
                "urlName": "testReport",
            }
        )
    estimated = estimated_ms(last_finished(job, before=build.number, count=3))
    out: dict[str, Any] = {
        "_class": RUN_CLASS[job.kind],
        "actions": actions,
        "artifacts": artifacts_json(build),
        "building": build.building,
        "description": None,
        "displayName": f"#{build.number}",
        "duration": 0 if build.finished is None else ms(build.finished - build.started),
        "estimatedDuration": estimated,
        "executor": (
            {
                "_class": "hudson.model.OneOffExecutor"
                if job.kind == "pipeline"
                else "hudson.model.Executor"
            }
            if build.building
            else None
        ),
        "fullDisplayName": f"{display_path(job.full_name)} #{build.number}",
        "id": str(build.number),
        "keepLog": False,
        "number": build.number,
        "queueId": build.queue_id,
        "result": build.result,
        "timestamp": ms(build.started),
        "url": f"{root}{item_path(job.full_name)}{build.number}/",
        "changeSets": [],
        "culprits": [],
        "nextBuild": build_ref(root, job.builds.get(build.number + 1)),
        "previousBuild": build_ref(root, job.builds.get(build.number - 1)),
    }
    if job.kind == "pipeline":
        out["inProgress"] = build.building
    else:
        out["builtOn"] = ""
        out["changeSet"] = {"_class": "hudson.scm.EmptyChangeLogSet", "items": [], "kind": None}
    return out


def quiet_period_text(seconds: float) -> str:
    """`hudson.Util.getTimeSpanString` for short spans: '4.9 sec', '12 sec', '300 ms'."""
    if seconds >= 10:
        return f"{int(seconds)} sec"
    if seconds >= 1:
        return f"{seconds:.1f} sec"
    return f"{int(seconds * 1000)} ms"


def queue_item_json(item: QueueItem, root: str, now: float | None = None) -> dict[str, Any]:
    """`GET /queue/item/<id>/api/json`: `Queue$WaitingItem` or `Queue$LeftItem`."""
    job = item.job
    actions: list[dict[str, Any]] = []
    if job.parameters:
        actions.append(parameters_action(item.params))
    actions.append(user_cause("sandbox"))
    out: dict[str, Any] = {
        "_class": "hudson.model.Queue$LeftItem" if item.left else "hudson.model.Queue$WaitingItem",
        "actions": actions,
        "blocked": False,
        "buildable": False,
        "id": item.id,
        "inQueueSince": ms(item.entered),
        "params": "".join(f"\n{n}={v}" for n, v in item.params),
        "stuck": False,
        "task": item_ref(root, job),
        "url": f"queue/item/{item.id}/",
        "why": None,
    }
    if item.left:
        out["cancelled"] = item.cancelled
        out["executable"] = build_ref(root, item.build)
    else:
        remaining = max(0.0, item.ready_at - (now if now is not None else item.entered))
        out["why"] = (
            f"{job.full_name} is disabled"
            if job.disabled
            else f"In the quiet period. Expires in {quiet_period_text(remaining)}"
        )
        out["timestamp"] = ms(item.ready_at)
    return out


def queue_json(model: JenkinsModel, root: str, now: float) -> dict[str, Any]:
    """`GET /queue/api/json`: only items still in the queue (left items are not listed)."""
    return {
        "_class": "hudson.model.Queue",
        "discoverableItems": [],
        "items": [queue_item_json(i, root, now) for i in model.queue.values() if not i.left],
    }
