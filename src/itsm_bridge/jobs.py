"""Starting and following CI/CD jobs through the `start_job` / `job_status` hooks."""

from __future__ import annotations

from typing import Any

from itsm_bridge.models import JobRef, JobStatus, Release
from itsm_bridge.outcome import StepContext
from itsm_bridge.plugins import PluginHost


def job_params(release: Release, purpose: str, **extra: str) -> dict[str, str]:
    """The parameters every job receives; `RELEASE_ID` makes the start idempotent."""
    change = release.record(None, "change_request")
    params = {
        "RELEASE_ID": release.id,
        "SERVICE": release.service,
        "VERSION": release.version,
        "CHANGE": (change.number or change.id) if change else "",
    }
    params.update({k: v for k, v in extra.items() if v is not None})
    return params


def follow_job(
    host: PluginHost,
    ctx: StepContext,
    purpose: str,
    stored: dict[str, Any] | None,
    params: dict[str, str],
    task: str | None = None,
    superseded: list[dict[str, Any]] | None = None,
) -> tuple[JobStatus | None, JobRef | None, bool]:
    """Start the job once, or ask for the status of the one already started.

    `task`: the key of the task the job runs for; when this run created that task and has not
    started it yet (`ctx.unstarted`), the start is its first attempt (taken, so any retry in
    this run, like any later run, looks for an earlier job first). `superseded`: the stored
    references of jobs a person chose to run again (`release retry`); a new one is started.

    Returns (status, job, started_now). A job just started is returned without status so the
    caller commits its reference before anything else happens. `job` is None when no plugin
    runs jobs for this purpose; otherwise the newest reference the plugin gave (a status may
    carry a better one, e.g. the build number once the queue item became a build), which the
    caller stores so the next poll starts from it.
    """
    if stored:
        job = JobRef(**stored)
        status = host.hook.job_status(job=job)
        return status, (status.job if status is not None else job), False
    first = task is not None and task in ctx.unstarted
    if task is not None:
        ctx.unstarted.discard(task)  # taken: any later start of it looks first
    job = host.hook.start_job(
        release=ctx.release,
        purpose=purpose,
        params=params,
        first_attempt=first,
        superseded=[JobRef(**ref) for ref in superseded or []],
    )
    return None, job, job is not None
