"""Release tasks from the service's `tasks` templates (step 9)."""

from __future__ import annotations

import re

from pydantic import BaseModel

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Impact, Release, TaskSpec
from itsm_bridge.settings import BridgeSettings

# Orders leave room around the implicit deploy (100) and smoke test (200) tasks.
DEPLOY_ORDER, SMOKE_ORDER = 100, 200


def task_key(name: str) -> str:
    """A stable key from a task name: "Stop database" -> "stop-database"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "task"


class TemplateTasks:
    """Turns `services.<name>.tasks` into task specifications around deploy and smoke test."""

    def __init__(self, config: BaseModel | None, settings: BridgeSettings) -> None:
        self.services = settings.services

    @hookimpl(trylast=True)
    def plan_tasks(self, release: Release, impact: Impact) -> list[TaskSpec]:
        service = self.services.get(release.service)
        if service is None:
            return []
        specs = []
        for index, template in enumerate(service.tasks, start=1):
            anchor = template.before or template.after or "deploy"
            base = DEPLOY_ORDER if anchor == "deploy" else SMOKE_ORDER
            order = base - 50 + index if template.before else base + index
            specs.append(
                TaskSpec(
                    key=task_key(template.name),
                    name=template.name,
                    kind=template.kind,
                    group=template.group,
                    order=order,
                    job=template.job,
                    purpose=template.job and "task",
                )
            )
        return specs


plugin = TemplateTasks
