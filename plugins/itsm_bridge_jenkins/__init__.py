"""Jenkins: the build package (step 4) and the automated tasks (deploy, smoke test, rollback).

This module only wires hooks to the modules that translate each one into Jenkins' remote
access API: `jobs` (start a job once, find it again after a restart), `status` (queue item,
build, JUnit report), `webhook` (the Notification plugin) and `connection`
(`check-config --connect`). All HTTP goes through `client`. See docs/jenkins.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import ConnectionCheck, JobRef, JobStatus, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_jenkins import connection, jobs, status, webhook
from itsm_bridge_jenkins.client import JenkinsClient, check_jenkins_url


class Settings(BaseModel):
    """`plugins.jenkins` in the configuration file (every key: docs/jenkins.md)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="the Jenkins root URL, e.g. https://ci.acme.com")
    user: str = Field(description="the Jenkins user the bridge acts as")
    token: SecretStr = Field(description="that user's API token (a password needs crumbs)")
    webhook_token: SecretStr | None = Field(
        default=None,
        description="the token Notification plugin deliveries must carry; unset: refused",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="read timeout per request")
    retries: int = Field(default=4, ge=1, le=10, description="attempts for each read")
    max_builds: int = Field(
        default=50,
        ge=1,
        le=100,
        description="newest builds of a job searched for a build the bridge started",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_jenkins_url(value)


_Settings = Settings


class JenkinsPlugin:
    """The hook implementations; each delegates to one module."""

    Settings = Settings

    def __init__(self, config: _Settings, settings: BridgeSettings) -> None:
        self.config = config
        self.bridge = settings
        self.client = JenkinsClient(
            config.url,
            config.user,
            config.token,
            timeout=config.timeout_seconds,
            attempts=config.retries,
        )
        self.definitions = jobs.Definitions()

    # -- steps 4, 11, 12, 14 ---------------------------------------------------------------
    @hookimpl
    def start_job(
        self,
        release: Release,
        purpose: str,
        params: dict[str, str],
        first_attempt: bool = False,
        superseded: list[JobRef] | None = None,
    ) -> JobRef | None:
        """Start the service's job for `purpose` once (found again by RELEASE_ID and TASK;
        not looked for on the core's proven first attempt; never one of `superseded`)."""
        return jobs.start(
            self.client,
            self.config,
            self.bridge,
            release,
            purpose,
            params,
            first_attempt=first_attempt,
            known=self.definitions,
            superseded=superseded or [],
        )

    @hookimpl
    def job_status(self, job: JobRef) -> JobStatus | None:
        """Follow the queue item to the build; result, duration, artifacts and tests."""
        return status.status(self.client, self.config, job)

    # -- the daemon ------------------------------------------------------------------------
    @hookimpl
    def register_webhooks(self, register: Callable[..., Any]) -> None:
        """`POST /webhooks/jenkins`: the Notification plugin's FINALIZED phase wakes a job."""
        register("jenkins", webhook.Handler(self.config))

    # -- `itsm-bridge check-config --connect` ----------------------------------------------
    @hookimpl
    def check_connection(self) -> list[ConnectionCheck]:
        """Jenkins reachable with the credentials, and every configured job ready."""
        return [connection.check(self.client, self.config, self.bridge)]
