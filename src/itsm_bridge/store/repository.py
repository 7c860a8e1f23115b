"""The store: every read and write of the bridge's state, one transaction at a time.

`Store.begin()` yields a `Tx`; everything done through it commits together or not at all, so
a step's outcome (status, external references, events, release fields) is never half-written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from itsm_bridge.models import (
    Approval,
    BacklogItem,
    BuildInfo,
    ExternalRecord,
    Impact,
    Release,
    ReleaseState,
    ReleaseType,
    utcnow,
)
from itsm_bridge.store import schema as t
from itsm_bridge.store.audit import AuditRows
from itsm_bridge.store.claims import ClaimRows
from itsm_bridge.store.tasks import TaskRows

log = logging.getLogger(__name__)

WOKEN_AHEAD = timedelta(hours=1)  # see `Tx.wake`

# Keys of `releases.data` that are fields of the Release model (the rest is core-only state).
MODEL_DATA_KEYS = (
    "approval",
    "scope",
    "impact",
    "failure_reason",
    "jobs",
    "build",
    "service_levels",
)


@dataclass
class StepRow:
    """The persisted status of one of the 18 steps of a release."""

    number: int
    name: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    detail: str = ""
    attempts: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "detail": self.detail,
        }


class Tx(AuditRows, ClaimRows, TaskRows):
    """One transaction's view of the store."""

    def __init__(self, connection: Connection) -> None:
        self.conn = connection

    # -- releases ------------------------------------------------------------------------
    def insert_release(self, release: Release, steps: list[tuple[int, str]]) -> None:
        now = utcnow()
        self.conn.execute(
            t.releases.insert().values(
                **_release_columns(release),
                data=_model_data(release),
                created_at=release.created_at,
                updated_at=now,
                next_run_at=now,
            )
        )
        self.conn.execute(
            t.steps.insert(),
            [
                {
                    "release_id": release.id,
                    "number": n,
                    "name": name,
                    "status": "pending",
                    "state": {},
                }
                for n, name in steps
            ],
        )

    def release(self, release_id: str, *, records: bool = True) -> Release | None:
        """The release, with its external records unless `records` is False."""
        found = self.release_with_core(release_id, records=records)
        return found[0] if found is not None else None

    def release_with_core(
        self, release_id: str, *, records: bool = True
    ) -> tuple[Release, dict[str, Any]] | None:
        """The release and its core data (`core_data`), from one read of its row."""
        row = (
            self.conn.execute(sa.select(t.releases).where(t.releases.c.id == release_id))
            .mappings()
            .first()
        )
        if row is None:
            return None
        known = self.records(release_id) if records else []
        return _release_from_row(row, known), dict(row["data"] or {})

    def find_release_id(self, prefix: str) -> list[str]:
        """Release ids equal to, or starting with, `prefix` (for short ids on the CLI)."""
        exact = (
            self.conn.execute(sa.select(t.releases.c.id).where(t.releases.c.id == prefix))
            .scalars()
            .all()
        )
        if exact:
            return list(exact)
        return list(
            self.conn.execute(
                sa.select(t.releases.c.id)
                .where(t.releases.c.id.startswith(prefix))
                .order_by(t.releases.c.id)
                .limit(5)
            ).scalars()
        )

    def list_releases(self, state: str | None = None, limit: int | None = None) -> list[Release]:
        query = sa.select(t.releases).order_by(t.releases.c.created_at.desc(), t.releases.c.id)
        if state:
            query = query.where(t.releases.c.state == state)
        if limit:
            query = query.limit(limit)
        return [_release_from_row(row, []) for row in self.conn.execute(query).mappings()]

    def release_summaries(self, state: str | None = None) -> list[dict[str, Any]]:
        """Id, service, version, type, state and dates of releases, newest first (no JSON)."""
        c = t.releases.c
        query = sa.select(
            c.id,
            c.service,
            c.version,
            c.name,
            c.type,
            c.major,
            c.state,
            c.window_start,
            c.window_end,
            c.created_at,
        ).order_by(c.created_at.desc(), c.id)
        if state:
            query = query.where(c.state == state)
        return [dict(row) for row in self.conn.execute(query).mappings()]

    def update_release(self, release: Release) -> None:
        """Write the release's fields (records are written with `add_record`)."""
        current = self.core_data(release.id)
        current.update(_model_data(release))
        self.conn.execute(
            t.releases.update()
            .where(t.releases.c.id == release.id)
            .values(**_release_columns(release), data=current, updated_at=utcnow())
        )

    def core_data(self, release_id: str) -> dict[str, Any]:
        value = self.conn.execute(
            sa.select(t.releases.c.data).where(t.releases.c.id == release_id)
        ).scalar_one()
        return dict(value or {})

    def set_core_data(self, release_id: str, **values: Any) -> None:
        data = self.core_data(release_id)
        data.update(values)
        self.replace_core_data(release_id, data)

    def replace_core_data(self, release_id: str, data: dict[str, Any]) -> None:
        """Write the whole core data (read with `core_data`, changed, written back)."""
        self.conn.execute(
            t.releases.update().where(t.releases.c.id == release_id).values(data=data)
        )

    def open_release(self, service: str, version: str) -> tuple[str, str] | None:
        """(id, state) of a release of `service` and `version` not closed nor cancelled."""
        c = t.releases.c
        row = self.conn.execute(
            sa.select(c.id, c.state)
            .where(
                c.service == service,
                c.version == version,
                c.state.not_in([ReleaseState.CLOSED.value, ReleaseState.CANCELLED.value]),
            )
            .order_by(c.created_at)
            .limit(1)
        ).first()
        return (str(row.id), str(row.state)) if row is not None else None

    def releases_in(self, states: Collection[ReleaseState]) -> list[Release]:
        """Releases in any of `states` (their fields and scope; records are not read)."""
        query = sa.select(t.releases).where(t.releases.c.state.in_([s.value for s in states]))
        rows = self.conn.execute(query.order_by(t.releases.c.created_at)).mappings()
        return [_release_from_row(row, []) for row in rows]

    def impacts_in(
        self, states: Collection[ReleaseState], naming: str | None = None
    ) -> list[tuple[str, str, Any]]:
        """`(id, service, impact as stored)` of the releases in any of `states`: what
        correlating a signal reads, without building each release.

        `naming`: only those that may concern a signal naming it: of that service, or whose
        stored document holds it as a JSON string (`"name"`, a superset of its CIs' and
        services' ids and names, which the caller checks). Only a name that any JSON encoder
        writes as it is (`VERBATIM_IN_JSON`) narrows the query; any other reads them all.
        """
        c = t.releases.c
        query = sa.select(c.id, c.service, c.data["impact"]).where(
            c.state.in_([s.value for s in states])
        )
        if naming is not None and VERBATIM_IN_JSON.fullmatch(naming):
            query = query.where(
                sa.or_(
                    c.service == naming,
                    sa.cast(c.data, sa.Text).contains(f'"{naming}"', autoescape=True),
                )
            )
        rows = self.conn.execute(query)
        return [(str(rid), str(service), impact) for rid, service, impact in rows]

    def last_good_version(self, service: str, exclude: str) -> str:
        """The version of the newest release of `service` that deployed and did not fail.

        Its rollback target: succeeded, in early life support, or closed without a failure,
        newest deployment first (one indexed query for that service, not a scan).
        """
        c = t.releases.c
        failure = c.data["failure_reason"].as_string()
        version = self.conn.execute(
            sa.select(c.version)
            .where(
                c.service == service,
                c.id != exclude,
                c.state.in_(
                    [
                        ReleaseState.SUCCEEDED.value,
                        ReleaseState.EARLY_LIFE_SUPPORT.value,
                        ReleaseState.CLOSED.value,
                    ]
                ),
                c.deploy_started_at.is_not(None),
                sa.or_(failure.is_(None), failure == ""),
            )
            .order_by(c.deploy_started_at.desc(), c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        return str(version or "")

    # -- scheduling and leases -----------------------------------------------------------
    def wake(self, release_id: str, now: datetime) -> None:
        """Make the release due now, ahead of the releases whose timed poll is due, and its
        waiting steps ask their plugins at once.

        Releases are claimed oldest due first, so the due time of a woken release (an event
        concerns it, or a person acted) is set `WOKEN_AHEAD` back: an alert's release is not
        queued behind a burst of watched releases polling their plugins.
        """
        for step in self.steps(release_id, status="waiting"):
            if step.state.get("retry_at"):
                step.state["retry_at"] = None
                self.save_step(release_id, step)
        self.set_next_run(release_id, now - WOKEN_AHEAD)
        self.notify_wake()  # the replicas that sleep look again (PostgreSQL)

    # -- steps ---------------------------------------------------------------------------
    def steps(self, release_id: str, status: str | None = None) -> list[StepRow]:
        """The release's steps in order (only those with `status`, when given)."""
        query = sa.select(t.steps).where(t.steps.c.release_id == release_id)
        if status is not None:
            query = query.where(t.steps.c.status == status)
        rows = self.conn.execute(query.order_by(t.steps.c.number)).mappings()
        return [
            StepRow(
                number=r["number"],
                name=r["name"],
                status=r["status"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                detail=r["detail"],
                attempts=r["attempts"],
                state=dict(r["state"] or {}),
            )
            for r in rows
        ]

    def save_step(self, release_id: str, step: StepRow) -> None:
        self.conn.execute(
            t.steps.update()
            .where(t.steps.c.release_id == release_id, t.steps.c.number == step.number)
            .values(
                status=step.status,
                started_at=step.started_at,
                finished_at=step.finished_at,
                detail=step.detail[:4000],
                attempts=step.attempts,
                state=step.state,
            )
        )


def _release_columns(release: Release) -> dict[str, Any]:
    return {
        "id": release.id,
        "service": release.service,
        "version": release.version,
        "name": release.name,
        "type": release.type.value,
        "major": release.major,
        "state": release.state.value,
        "not_before": release.not_before,
        "duration_seconds": int(release.duration.total_seconds()),
        "reason": release.reason,
        "window_start": release.window_start,
        "window_end": release.window_end,
        "deploy_started_at": release.deploy_started_at,
    }


def _model_data(release: Release) -> dict[str, Any]:
    dumped = release.model_dump(mode="json", include=set(MODEL_DATA_KEYS))
    return dumped


def _release_from_row(row: Any, records: list[ExternalRecord]) -> Release:
    data = row["data"] or {}
    return Release(
        id=row["id"],
        service=row["service"],
        version=row["version"],
        name=row["name"],
        type=ReleaseType(row["type"]),
        major=row["major"],
        state=ReleaseState(row["state"]),
        not_before=row["not_before"],
        duration=timedelta(seconds=row["duration_seconds"]),
        reason=row["reason"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        deploy_started_at=row["deploy_started_at"],
        created_at=row["created_at"],
        records=records,
        approval=Approval(**data["approval"]) if data.get("approval") else None,
        scope=[BacklogItem(**item) for item in data.get("scope") or []],
        impact=Impact(**data["impact"]) if data.get("impact") else None,
        failure_reason=data.get("failure_reason") or "",
        jobs=data.get("jobs") or {},
        build=BuildInfo(**data["build"]) if data.get("build") else None,
        service_levels=data.get("service_levels") or {},
    )


# Characters no JSON encoder escapes (Python's escapes `"`, `\\` and, by default, non-ASCII;
# others also `/`, `<`, `>`, `&`).
VERBATIM_IN_JSON = re.compile(r"[A-Za-z0-9 ._:@+=,;()!#$%*?|^~'\[\]{}-]+")
