"""Part of `Tx`: a release's tasks, and the job each automated task started."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from itsm_bridge.models import ExternalRecord, JobRef, Task, TaskStatus, utcnow
from itsm_bridge.store import schema as t
from itsm_bridge.store.queues import QueueRows


class TaskRows(QueueRows):
    """The `tasks` table."""

    def tasks(self, release_id: str) -> list[Task]:
        return self.tasks_with_jobs(release_id)[0]

    def tasks_with_jobs(self, release_id: str) -> tuple[list[Task], dict[str, JobRef]]:
        """The release's tasks in order, and the job each started (by task key): one read."""
        rows = list(
            self.conn.execute(
                sa.select(t.tasks)
                .where(t.tasks.c.release_id == release_id)
                .order_by(t.tasks.c.position)
            ).mappings()
        )
        tasks = [
            Task(
                **r["spec"],
                status=TaskStatus(r["status"]),
                record=ExternalRecord(**r["record"]) if r["record"] else None,
                note=r["note"],
            )
            for r in rows
        ]
        return tasks, {r["key"]: JobRef(**r["job"]) for r in rows if r["job"]}

    def task_job(self, release_id: str, key: str) -> JobRef | None:
        """The job the task `key` started, if any."""
        return self.tasks_with_jobs(release_id)[1].get(key)

    def insert_tasks(self, release_id: str, tasks: list[Task]) -> list[str]:
        """Add the tasks the release does not have yet (by key); returns the keys added."""
        existing = set(
            self.conn.execute(
                sa.select(t.tasks.c.key).where(t.tasks.c.release_id == release_id)
            ).scalars()
        )
        rows = [
            {
                "release_id": release_id,
                "key": task.key,
                "position": len(existing) + index,
                "spec": task.model_dump(mode="json", exclude={"status", "record", "note"}),
                "status": task.status.value,
                "record": task.record.model_dump(mode="json") if task.record else None,
                "note": task.note,
            }
            for index, task in enumerate(tasks)
            if task.key not in existing
        ]
        if rows:
            self.conn.execute(t.tasks.insert(), rows)
        return [str(row["key"]) for row in rows]

    def save_task(self, release_id: str, task: Task, job: JobRef | None = None) -> None:
        values: dict[str, Any] = {
            "status": task.status.value,
            "record": task.record.model_dump(mode="json") if task.record else None,
            "note": task.note,
        }
        if job is not None:
            values["job"] = job.model_dump(mode="json")
        now = utcnow()
        if task.status == TaskStatus.RUNNING:
            values["started_at"] = sa.func.coalesce(t.tasks.c.started_at, now)
        if task.status in (TaskStatus.DONE, TaskStatus.FAILED):
            values["finished_at"] = now
        self.conn.execute(
            t.tasks.update()
            .where(t.tasks.c.release_id == release_id, t.tasks.c.key == task.key)
            .values(**values)
        )
