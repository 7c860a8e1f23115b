"""The REST API (`/api/v1`): what the CLI's `release` commands do, over HTTP.

Every route goes through the application layer the CLI uses (`ReleaseCommands`, `views`), so
both check and record the same way; an action then wakes the worker (`ctx.wake()`) so the
release moves at once. Ids are exact (no prefixes, unlike the CLI). The handlers are plain
functions: FastAPI runs them in its thread pool, so the event loop never waits on the
database or a plugin.

Errors answer `{"detail": reason}` (never a traceback): 404 an unknown release or task;
409 an action the release's state does not allow, or a second open release of a version;
422 invalid input; 502 a vendor refused a call; 503 a passing fault (database, vendor): retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from itsm_bridge import views
from itsm_bridge.daemon.auth import BearerToken
from itsm_bridge.daemon.context import DaemonContext
from itsm_bridge.errors import NeedsHuman, OperationFailed, TransientError, UsageError
from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import ReleaseNotes, ReleaseState

log = logging.getLogger(__name__)

ACTOR = "api"
ID_MAX = 64  # the length of a release id column
TEXT_MAX = 4000  # a reason or a note
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TEXT_MAX)]
Note = Annotated[str, StringConstraints(max_length=TEXT_MAX)]
ReleaseId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX, examples=["rel-20261128-1f3a9c2e"])
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRelease(_In):
    """The fields of `release create`."""

    service: str = Field(min_length=1, max_length=200, description="a service of `services`")
    version: str = Field(
        min_length=1,
        max_length=200,
        description="at most 64 characters, no whitespace; matches policy.version_pattern",
    )
    name: str = Field(default="", max_length=500)
    type: Literal["normal", "standard", "emergency"] = "normal"
    major: bool = Field(default=False, description="early life support after release")
    not_before: AwareDatetime | None = Field(default=None, description="earliest start")
    duration: str | None = Field(default=None, max_length=32, examples=["2h", "90m"])
    reason: Note = Field(default="", description="why; required for emergency releases")


class ReasonBody(_In):
    reason: Reason


class ApproveBody(_In):
    reject: bool = False
    note: Note = ""


class TaskDoneBody(_In):
    task: str = Field(min_length=1, max_length=200, description="the key `show` lists")
    failed: bool = False
    note: Note = ""


class NoteBody(_In):
    note: Note = ""


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields added to the views later pass through


class StepOut(_Out):
    number: int
    name: str
    status: str
    started_at: str | None
    finished_at: str | None
    detail: str


class TaskOut(_Out):
    key: str
    name: str
    kind: str
    group: str | None
    status: str
    record: dict[str, Any] | None
    note: str


class ReleaseOut(_Out):
    """The JSON of `release show --json` (times as ISO 8601 text, UTC)."""

    id: str
    service: str
    version: str
    name: str
    type: str
    major: bool
    state: str
    not_before: str | None
    reason: str
    window_start: str | None
    window_end: str | None
    deploy_started_at: str | None
    created_at: str
    failure_reason: str
    duration_minutes: int
    build: dict[str, Any] | None
    attention: Any
    steps: list[StepOut]
    findings: list[dict[str, Any]]
    tasks: list[TaskOut]
    records: list[dict[str, Any]]
    events: list[dict[str, Any]]
    events_total: int


class TaskDoneOut(ReleaseOut):
    warning: str = Field(default="", description="the task's record is closed later")


class ReleaseSummary(_Out):
    id: str
    service: str
    version: str
    name: str
    type: str
    major: bool
    state: str
    window_start: datetime | None
    window_end: datetime | None
    created_at: datetime


class PlanOut(_Out):
    lines: list[str]


class ListQuery(_In):
    """`?state=`; any other parameter is refused (a typo must not list everything)."""

    state: ReleaseState | None = None


NOTES_CONTENT = {kind: {"schema": {"type": "string"}} for kind in ("text/markdown", "text/html")}


class NotesQuery(_In):
    format: Literal["md", "html"] = "md"


class ErrorOut(BaseModel):
    detail: str = Field(description="why, in one line")


class InvalidOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="why the bridge refused the values (text), or where the request does not "
        "fit the schema (FastAPI's list of errors)"
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body is not JSON"},
    401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
    404: {"model": ErrorOut, "description": "no such release (or task)"},
    409: {"model": ErrorOut, "description": "the release's state does not allow it"},
    422: {"model": InvalidOut, "description": "invalid values"},
    502: {"model": ErrorOut, "description": "a vendor refused a call"},
    503: {"model": ErrorOut, "description": "a passing fault (database, vendor); retry"},
}


@contextmanager
def answers(usage: int = 409) -> Iterator[None]:
    """Turn the bridge's errors into HTTP answers; a `UsageError` answers `usage`."""
    try:
        yield
    except UsageError as exc:
        raise HTTPException(usage, str(exc)) from None
    except (HTTPRequestError, NeedsHuman) as exc:
        raise HTTPException(502, str(exc)) from None
    except TransientError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    except OperationFailed as exc:
        raise HTTPException(409, str(exc)) from None
    except sa.exc.IntegrityError:
        raise HTTPException(409, "a concurrent change conflicted; try again") from None
    except sa.exc.SQLAlchemyError as exc:
        log.warning("API request failed on the database: %s", type(exc).__name__)
        raise HTTPException(
            503, "the database is not available; retry later", headers={"Retry-After": "5"}
        ) from None


def router(ctx: DaemonContext) -> APIRouter:
    """The `/api/v1` routes, behind the bearer token `server.token`."""
    api = APIRouter(
        prefix="/api/v1",
        tags=["releases"],
        dependencies=[Depends(BearerToken(ctx.settings.server.token))],
        responses=ERRORS,
    )

    def existing(release_id: str) -> None:
        with answers(), ctx.store.read() as tx:
            if tx.release(release_id) is None:
                raise HTTPException(404, f"no release {release_id!r}")

    def shown(release_id: str) -> dict[str, Any]:
        with answers(), ctx.store.read() as tx:
            try:
                return views.release_json(tx, release_id)
            except KeyError:
                raise HTTPException(404, f"no release {release_id!r}") from None

    @api.post("/releases", status_code=201, response_model=ReleaseOut)
    def create_release(body: CreateRelease) -> dict[str, Any]:
        """Create a release (`release create`); 409 when the version already has an open one."""
        try:
            with answers(usage=422):
                release = ctx.commands.create(
                    body.service,
                    body.version,
                    name=body.name,
                    type=body.type,
                    major=body.major,
                    not_before=body.not_before,
                    duration=body.duration,
                    reason=body.reason,
                    actor=ACTOR,
                )
        except HTTPException as exc:
            if exc.status_code == 422 and _open_release(ctx, body.service, body.version):
                exc.status_code = 409
            raise
        ctx.wake()
        return shown(release.id)

    @api.get("/releases", response_model=list[ReleaseSummary])
    def list_releases(query: Annotated[ListQuery, Query()]) -> list[dict[str, Any]]:
        """Every release (or those in `state`), newest first."""
        state = query.state.value if query.state else None
        with answers(), ctx.store.read() as tx:
            return tx.release_summaries(state=state)

    @api.get("/releases/{release_id}", response_model=ReleaseOut)
    def show_release(release_id: ReleaseId) -> dict[str, Any]:
        """Steps, tasks, external records and timeline (`release show --json`)."""
        return shown(release_id)

    @api.get("/releases/{release_id}/plan", response_model=PlanOut)
    def plan(release_id: ReleaseId) -> dict[str, Any]:
        """The dry run of `release plan`: every hook call the next steps would make."""
        with answers(), ctx.store.begin() as tx:
            release = tx.release(release_id)
            if release is None:
                raise HTTPException(404, f"no release {release_id!r}")
            steps, tasks = tx.steps(release_id), tx.tasks(release_id)
        return {"lines": views.plan_lines(ctx.process.env, release, steps, tasks)}

    @api.get(
        "/releases/{release_id}/notes",
        response_model=None,
        responses={200: {"description": "the notes", "content": NOTES_CONTENT}},
    )
    def notes(release_id: ReleaseId, query: Annotated[NotesQuery, Query()]) -> PlainTextResponse:
        """The release notes (`release notes`), Markdown or HTML; 404 before step 10 ran."""
        with answers(), ctx.store.read() as tx:
            if tx.release(release_id) is None:
                raise HTTPException(404, f"no release {release_id!r}")
            raw = tx.core_data(release_id).get("notes")
        if not raw:
            raise HTTPException(404, f"release {release_id} has no notes yet (step 10 has not run)")
        text = ReleaseNotes(**raw)
        if query.format == "html":
            return PlainTextResponse(text.html, media_type="text/html")
        return PlainTextResponse(text.markdown, media_type="text/markdown")

    def act(release_id: str, action: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        existing(release_id)
        with answers():
            result = action(release_id, *args, actor=ACTOR, **kwargs)
        ctx.wake()
        data = shown(release_id)
        if isinstance(result, str):
            data["warning"] = result
        return data

    @api.post("/releases/{release_id}/rollback", status_code=202, response_model=ReleaseOut)
    def rollback(release_id: ReleaseId, body: ReasonBody) -> dict[str, Any]:
        """Roll a deployed release back (`release rollback`); the worker runs step 14."""
        return act(release_id, ctx.commands.rollback, body.reason)

    @api.post("/releases/{release_id}/cancel", response_model=ReleaseOut)
    def cancel(release_id: ReleaseId, body: ReasonBody) -> dict[str, Any]:
        """Cancel a release that has not started deploying (`release cancel`)."""
        return act(release_id, ctx.commands.cancel, body.reason)

    @api.post("/releases/{release_id}/approve", status_code=202, response_model=ReleaseOut)
    def approve(
        release_id: ReleaseId, body: Annotated[ApproveBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Approve (or `reject`) the change a planned release waits for at step 7, where no
        plugin owns approval (`release approve`)."""
        body = body or ApproveBody()
        return act(release_id, ctx.commands.approve, reject=body.reject, note=body.note)

    @api.post("/releases/{release_id}/task-done", status_code=202, response_model=TaskDoneOut)
    def task_done(release_id: ReleaseId, body: TaskDoneBody) -> dict[str, Any]:
        """Finish a manual task (`release task-done`); `warning` when its record waits."""
        existing(release_id)
        with answers(), ctx.store.read() as tx:
            if body.task not in {task.key for task in tx.tasks(release_id)}:
                raise HTTPException(404, f"release {release_id} has no task {body.task!r}")
        data = act(
            release_id, ctx.commands.task_done, body.task, failed=body.failed, note=body.note
        )
        data.setdefault("warning", "")
        return data

    @api.post("/releases/{release_id}/retry", status_code=202, response_model=ReleaseOut)
    def retry(release_id: ReleaseId) -> dict[str, Any]:
        """Run a blocked release's failed steps (or a failed rollback) again (`release retry`)."""
        return act(release_id, ctx.commands.retry)

    @api.post("/releases/{release_id}/end-support", status_code=202, response_model=ReleaseOut)
    def end_support(
        release_id: ReleaseId, body: Annotated[NoteBody | None, Body()] = None
    ) -> dict[str, Any]:
        """End a major release's early life support now (`release end-support`)."""
        return act(release_id, ctx.commands.end_support, note=(body or NoteBody()).note)

    return api


def _open_release(ctx: DaemonContext, service: str, version: str) -> bool:
    try:
        with ctx.store.read() as tx:
            return tx.open_release(service, version) is not None
    except sa.exc.SQLAlchemyError:
        return False
