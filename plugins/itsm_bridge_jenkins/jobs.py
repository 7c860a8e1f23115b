"""`start_job`: look for the build a release already started, and trigger it only when none
exists, so that a bridge restarted between the trigger and Jenkins' answer never builds twice.

Which job: `services.<service>.jobs.<purpose>` for build, deploy, smoke_test and rollback; for
any other purpose the core passes the job of an automated task (`services.<service>.tasks[].
job`), which runs only when a task of the service names it. Folders are `a/b`.

Identity. Every build carries the core's parameters; `RELEASE_ID` (and `TASK`, for the tasks of
step 11) say which release and task it belongs to. Before triggering, in this order:

1. the queue (`GET /queue/api/json?tree=items[id,task[url],actions[parameters[name,value]]]`,
   every waiting item; the item's `task.url` names its job):
   an item of this job with the same identity is the build, not yet started;
2. the job (`GET /job/.../api/json?tree=...,builds[number,url,queueId,actions[parameters[name,
   value]]]{0,N}`, newest first, `N` = `max_builds`): a running or finished build with the
   same identity. The queue is read first, so an item that leaves the queue between the two
   reads is a build by the second one. One window remains: `Executor.run` takes the item out
   of the queue (`Queue.onStartExecuting`) just before it creates the run
   (`Task.createExecutable`), so for those few milliseconds the build is in neither list; a
   restart whose lookup falls exactly there would trigger a second build.

After `release retry` of a failed build the core passes the builds it gave up on
(`superseded`): an item or build that is one of them (same queue id or build number) is not
the one this run looks for, so a new build is triggered.

A first attempt (`first_attempt=True`: the core created the task in the run now calling and has
not asked for its start before, so nothing can have started it) skips both lookups and
triggers at once; a retry, a restart or the build of step 4 always looks first.

An identity matches when `RELEASE_ID` is equal and, when the item carries a `TASK` parameter,
`TASK` is equal too. Jenkins drops parameters a job does not define (SECURITY-170,
`ParametersAction`), so a job without `RELEASE_ID` could never be recognised: it is refused
before any trigger (a person adds the parameter). A first attempt checks the definitions
of the job's last read if it is at most `DEFINITIONS_TTL` seconds old, else reads them alone
(`tree=buildable,property[parameterDefinitions[name]]`). A job that serves several purposes
of one service (e.g. deploy and rollback) must also define `TASK`, or the rollback would find
the deploy's build.

Trigger: `POST /job/.../buildWithParameters` with every parameter the core gives, as form
fields; `201` with `Location: <root>/queue/item/<id>/` ("Remote access API"; python-jenkins
`build_job` reads the same header). The queue item's id is the reference the core stores;
`job_status` follows it to the build. No `Location` (a very old Jenkins, a proxy): the trigger
counts as sent and the step is retried, and the next attempt finds the build by its identity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import NeedsHuman, OperationFailed
from itsm_bridge.http import HTTPRequestError, HTTPTransientError
from itsm_bridge.models import JobRef, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jenkins.client import JenkinsClient, job_from_url, parameters_of, queue_id_from

if TYPE_CHECKING:
    from itsm_bridge_jenkins import Settings

log = logging.getLogger(__name__)

SYSTEM = "jenkins"
PURPOSES = ("build", "deploy", "smoke_test", "rollback")
IDENTITY = ("RELEASE_ID", "TASK")
QUEUE_TREE = "items[id,task[url],actions[parameters[name,value]]]"
DEFINITIONS_TREE = "buildable,property[parameterDefinitions[name]]"
DEFINITIONS_TTL = 60.0  # seconds a job's definitions, once read, serve a first attempt


class Definitions:
    """The definitions (and `buildable`) of each job as last read, for first attempts."""

    def __init__(
        self, ttl: float = DEFINITIONS_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._read: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def remember(self, job: str, document: dict[str, Any]) -> None:
        """Keep what a read of the job said (its builds are not kept)."""
        kept = {"buildable": document.get("buildable"), "property": document.get("property")}
        with self._lock:
            self._read[job] = (self.clock(), kept)

    def of(self, client: JenkinsClient, config: Settings, job: str) -> dict[str, Any]:
        """The job's definitions read at most `ttl` seconds ago, else read now."""
        with self._lock:
            found = self._read.get(job)
        if found is not None and self.clock() - found[0] <= self.ttl:
            return found[1]
        document = read_job(client, config, job, DEFINITIONS_TREE)
        self.remember(job, document)
        return document


def build_tree(max_builds: int) -> str:
    """The job fields `start_job` reads: definitions, and the newest builds' identities.

    `builds` is a job's newest builds, at most 100 (`Job.getNewBuilds()`), hence the cap on
    `max_builds`.
    """
    return (
        "buildable,property[parameterDefinitions[name]],"
        f"builds[number,url,queueId,actions[parameters[name,value]]]{{0,{max_builds}}}"
    )


def job_for(bridge: BridgeSettings, release: Release, purpose: str) -> str | None:
    """The Jenkins job that serves `purpose` for the release's service, if any."""
    service = bridge.services.get(release.service)
    if service is None:
        return None
    if purpose in PURPOSES:
        job: str | None = getattr(service.jobs, purpose)
        return job or None
    tasks = {t.job for t in service.tasks if t.job and t.kind == "automated"}
    return purpose if purpose in tasks else None


def purposes_of(bridge: BridgeSettings, service_name: str, job: str) -> list[str]:
    """Every purpose and task of the service that runs `job`."""
    service = bridge.services.get(service_name)
    if service is None:
        return []
    found = [p for p in PURPOSES if getattr(service.jobs, p) == job]
    found += [f"task {t.name}" for t in service.tasks if t.job == job]
    return found


def matches(parameters: dict[str, str], identity: dict[str, str]) -> bool:
    """Same RELEASE_ID, and the same TASK when the item carries one."""
    if parameters.get("RELEASE_ID") != identity["RELEASE_ID"]:
        return False
    return "TASK" not in parameters or parameters["TASK"] == identity.get("TASK", "")


def start(
    client: JenkinsClient,
    config: Settings,
    bridge: BridgeSettings,
    release: Release,
    purpose: str,
    params: dict[str, str],
    *,
    first_attempt: bool,
    known: Definitions,
    superseded: list[JobRef],
) -> JobRef | None:
    """Find the build this release and purpose already started, else trigger it once; on a
    first attempt, trigger it at once. `known` keeps the definitions each job had."""
    job = job_for(bridge, release, purpose)
    if job is None:
        return None
    if not params.get("RELEASE_ID"):
        raise OperationFailed(f"start_job({purpose}) without RELEASE_ID: cannot be made safe")
    identity = {key: params[key] for key in IDENTITY if key in params}
    ref = JobRef(system=SYSTEM, job=job, purpose=purpose, url=client.job_url(job))

    skip = Superseded.of(job, superseded)
    if first_attempt:
        document = known.of(client, config, job)
    else:
        item = find_queued(client, job, identity, skip)
        if item is not None:
            log.info("jenkins: %s for %s is already queued (item %s)", job, release.id, item["id"])
            return ref.model_copy(update={"queue_id": str(item["id"])})
        document = read_job(client, config, job, build_tree(config.max_builds))
        known.remember(job, document)
        build = find_build(document, identity, skip)
        if build is not None:
            log.info("jenkins: %s for %s already exists: #%s", job, release.id, build["number"])
            return ref.model_copy(
                update={
                    "build_id": str(build["number"]),
                    "queue_id": str(build["queueId"]) if build.get("queueId") else None,
                    "url": build.get("url") or ref.url,
                }
            )
    check_definitions(document, job, params, purposes_of(bridge, release.service, job))
    response = client.post_form(
        client.job_url(job) + "buildWithParameters", f"POST {job} buildWithParameters", params
    )
    queue_id = queue_id_from(response.headers.get("Location"))
    if queue_id is None:
        raise HTTPTransientError(
            f"POST {job} buildWithParameters: HTTP {response.status_code} without a queue item "
            "(Location); the build is looked up by its parameters on the next attempt"
        )
    log.info("jenkins: triggered %s for %s (queue item %s)", job, release.id, queue_id)
    return ref.model_copy(update={"queue_id": str(queue_id)})


class Superseded:
    """The queue items and builds of one job that an earlier run started and gave up on."""

    def __init__(self, queue_ids: set[str], builds: set[str]) -> None:
        self.queue_ids = queue_ids
        self.builds = builds

    @classmethod
    def of(cls, job: str, refs: list[JobRef]) -> Superseded:
        mine = [ref for ref in refs if ref.job == job]
        return cls(
            {ref.queue_id for ref in mine if ref.queue_id},
            {ref.build_id for ref in mine if ref.build_id},
        )

    def item(self, item: dict[str, Any]) -> bool:
        return str(item.get("id")) in self.queue_ids

    def build(self, build: dict[str, Any]) -> bool:
        number, queue_id = str(build.get("number")), str(build.get("queueId"))
        return number in self.builds or queue_id in self.queue_ids


def find_queued(
    client: JenkinsClient, job: str, identity: dict[str, str], skip: Superseded
) -> dict[str, Any] | None:
    """The queue item of `job` with this identity, if one waits (and is not superseded)."""
    queue = client.get_json(client.url("/queue/api/json"), "GET queue", tree=QUEUE_TREE)
    for item in (queue or {}).get("items") or []:
        task = item.get("task") or {}
        if job_from_url(str(task.get("url") or "")) != job:
            continue
        if matches(parameters_of(item), identity) and not skip.item(item):
            return dict(item)
    return None


def read_job(client: JenkinsClient, config: Settings, job: str, tree: str) -> dict[str, Any]:
    """The job's fields in `tree`; a missing job is an error naming the key."""
    document = client.get_json(
        client.job_url(job) + "api/json",
        f"GET {job}",
        tree=tree,
        missing_ok=True,
    )
    if document is None:
        raise HTTPRequestError(
            f"Jenkins has no job {job} (or {config.user} may not read it): check the job "
            "names in services.<service>.jobs and the user's Job/Read permission",
            404,
        )
    return dict(document)


def find_build(
    document: dict[str, Any], identity: dict[str, str], skip: Superseded
) -> dict[str, Any] | None:
    """The newest build of the job document with this identity (and not superseded)."""
    for build in document.get("builds") or []:
        if not isinstance(build, dict) or skip.build(build):
            continue
        if matches(parameters_of(build), identity):
            return build
    return None


def definitions(document: dict[str, Any]) -> set[str]:
    """The names of the job's parameter definitions (`ParametersDefinitionProperty`)."""
    names: set[str] = set()
    for prop in document.get("property") or []:
        for definition in (prop or {}).get("parameterDefinitions") or []:
            if isinstance(definition, dict) and definition.get("name"):
                names.add(str(definition["name"]))
    return names


def check_definitions(
    document: dict[str, Any], job: str, params: dict[str, str], purposes: list[str]
) -> None:
    """Refuse a job whose builds could not be recognised after a restart."""
    defined = definitions(document)
    if "RELEASE_ID" not in defined:
        raise NeedsHuman(
            f"Jenkins job {job} does not define the string parameter RELEASE_ID: Jenkins "
            "drops undefined parameters, so a restarted bridge could not find the build it "
            "started and might run it twice; add the parameters RELEASE_ID, SERVICE, VERSION, "
            "CHANGE (and TASK, ROLLBACK_TO where used) to the job"
        )
    if "TASK" in params and "TASK" not in defined and len(purposes) > 1:
        raise NeedsHuman(
            f"Jenkins job {job} serves {', '.join(purposes)} but does not define the string "
            "parameter TASK: their builds could not be told apart; add TASK to the job"
        )
    if document.get("buildable") is False:
        raise HTTPRequestError(f"Jenkins job {job} is disabled: enable it, then retry", 409)
    dropped = sorted(set(params) - defined)
    if dropped:
        log.info("jenkins: %s does not define %s: Jenkins drops them", job, ", ".join(dropped))
