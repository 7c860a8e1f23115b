"""ServiceNow: the system of record for changes, their tasks, the CMDB, schedules and incidents.

This module only wires hooks to the modules that translate each one into ServiceNow's API:
`change` (steps 6, 7 and every state change), `cmdb` (8), `schedules` (5), `change_tasks`
(9, 11, 14), `task_closure` (the tasks left open when a release ends), `incidents` (13),
`intake` (1-2) and `service_levels` (17). All HTTP goes through `client`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import (
    Approval,
    BacklogItem,
    ChangeRef,
    ConnectionCheck,
    Event,
    ExternalRecord,
    Finding,
    Freeze,
    Impact,
    Release,
    ReleaseNotes,
    ReleaseState,
    Signal,
    Task,
    TaskSpec,
    Window,
    WorkItem,
)
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_servicenow import (
    change,
    change_tasks,
    cmdb,
    connection,
    incidents,
    intake,
    schedules,
    service_levels,
    task_closure,
    webhook,
)
from itsm_bridge_servicenow.choices import check_overrides
from itsm_bridge_servicenow.client import ServiceNowClient, check_instance_url

SYSTEM = "servicenow"


class IntakeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # Encoded queries selecting what becomes backlog work (steps 1 and 2). Unset: the state
    # whose choice label is "Approved" (dmn_demand) / "Fix in Progress" (problem), read from
    # the instance's sys_choice (see choices.py).
    demand_query: str | None = None
    problem_query: str | None = None


class ServiceLevelSettings(BaseModel):
    """Step 17: fields of the service CI (or another table) set from the release."""

    model_config = ConfigDict(extra="forbid")
    table: str = "cmdb_ci_service"
    # field -> template; `{version}`, `{service}`, `{release_id}`, `{closed_at}` are filled in.
    fields: dict[str, str] = Field(default_factory=dict)


class Settings(BaseModel):
    """`plugins.servicenow` in the configuration file."""

    model_config = ConfigDict(extra="forbid")
    url: str
    user: str
    password: SecretStr
    assignment_group: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    page_size: int = Field(default=100, ge=1, le=10000)
    retries: int = Field(default=4, ge=1, le=10)
    risk: Literal[1, 2, 3, 4] = 3  # change_request.risk: 1 very high .. 4 low
    impact: Literal[1, 2, 3] = 2  # change_request.impact: 1 high, 2 medium, 3 low
    category: str = "Software"
    standard_template: str | None = None  # std_change_producer_version sys_id or name
    relationship_types: list[str] = Field(
        default_factory=lambda: ["Depends on::Used by", "Runs on::Runs"]
    )
    cmdb_depth: int = Field(default=3, ge=0, le=10)
    conflict_check: bool = True
    create_incident_on_failure: bool = False
    incident_assignment_group: str | None = None
    webhook_token: SecretStr | None = None
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    service_levels: ServiceLevelSettings = Field(default_factory=ServiceLevelSettings)
    # "<table>.<field>" -> meaning -> value, overriding the instance's sys_choice (choices.py).
    choices: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_instance_url(value)

    @field_validator("choices")
    @classmethod
    def _choices(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return check_overrides(value)


_Settings = Settings


class ServiceNowPlugin:
    """The hook implementations; each delegates to one module."""

    Settings = Settings

    def __init__(self, config: _Settings, settings: BridgeSettings) -> None:
        self.config = config
        self.bridge = settings
        self.client = ServiceNowClient(
            config.url,
            config.user,
            config.password,
            timeout=config.timeout_seconds,
            page_size=config.page_size,
            attempts=config.retries,
            choices=config.choices,
        )

    # -- steps 1-2 -------------------------------------------------------------------------
    @hookimpl
    def collect_work_items(self, since: datetime | None) -> list[WorkItem]:
        return intake.collect(self.client, self.config, since)

    @hookimpl
    def work_item_added(self, item: WorkItem, backlog_item: BacklogItem) -> None:
        intake.note_backlog_item(self.client, item, backlog_item)

    # -- step 5 ----------------------------------------------------------------------------
    @hookimpl
    def maintenance_windows(self, release: Release, start: datetime, end: datetime) -> list[Window]:
        return schedules.maintenance_windows(
            self.client, self.config, release, start, end, self.bridge
        )

    @hookimpl
    def freeze_periods(self, release: Release, start: datetime, end: datetime) -> list[Freeze]:
        return schedules.blackouts(self.client, self.config, release, start, end, self.bridge)

    # -- steps 6-7 -------------------------------------------------------------------------
    @hookimpl
    def create_change(self, release: Release, notes: ReleaseNotes | None) -> ChangeRef:
        return change.find_or_create(self.client, self.config, self.bridge, release, notes)

    @hookimpl
    def evaluate_change(self, release: Release) -> list[Finding]:
        return change.evaluate(self.client, self.config, self.bridge, release)

    @hookimpl
    def approval_status(self, release: Release) -> Approval | None:
        return change.approval(self.client, release)

    # -- step 8 ----------------------------------------------------------------------------
    @hookimpl
    def identify_impact(self, release: Release) -> Impact | None:
        return cmdb.identify_impact(self.client, self.config, self.bridge, release)

    # -- steps 9, 11 -----------------------------------------------------------------------
    @hookimpl
    def create_tasks(self, release: Release, tasks: list[TaskSpec]) -> list[ExternalRecord] | None:
        return change_tasks.find_or_create(self.client, self.config, release, tasks)

    @hookimpl
    def task_status(self, release: Release, task: Task) -> Task | None:
        return change_tasks.status(self.client, task)

    @hookimpl
    def task_finished(self, release: Release, task: Task) -> None:
        change_tasks.close(self.client, release, task)

    # -- step 13 ---------------------------------------------------------------------------
    @hookimpl
    def detect_failure(self, release: Release, since: datetime) -> list[Signal]:
        return incidents.signals(self.client, self.config, release, since)

    # -- step 17 ---------------------------------------------------------------------------
    @hookimpl
    def update_service_levels(self, release: Release) -> list[str]:
        return service_levels.update(self.client, self.config, self.bridge, release)

    # -- every change of the release -------------------------------------------------------
    @hookimpl
    def release_changed(self, release: Release, event: Event) -> None:
        # first the tasks: once the change is closed or canceled they are read-only
        task_closure.close_open(self.client, release, event)
        change.sync(self.client, self.config, release, event)
        if self.config.create_incident_on_failure:
            if event.kind == "failure":
                incidents.open_for_failure(self.client, self.config, self.bridge, release, event)
            elif event.kind == "signal" and release.state == ReleaseState.EARLY_LIFE_SUPPORT:
                incidents.open_for_signal(self.client, self.config, self.bridge, release, event)

    @hookimpl
    def register_webhooks(self, register: Callable[..., Any]) -> None:
        register("servicenow", webhook.Handler(self.config))

    # -- `itsm-bridge check-config --connect` ----------------------------------------------
    @hookimpl
    def check_connection(self) -> list[ConnectionCheck]:
        return [connection.check(self.client, self.config)]
