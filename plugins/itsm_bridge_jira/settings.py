"""`plugins.jira`: every key the Jira plugin reads, with its default (see docs/jira.md).

A URL is the site's base URL (`https://acme.atlassian.net`, or a Data Center base URL with
its context path, `https://jira.acme.com/jira`): http(s), a host, no credentials (they go in
`user` and `token`), no query. Templates name only the placeholders they document.
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from itsm_bridge.http import check_base_url

PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")


def check_site_url(value: str) -> str:
    """A Jira base URL (a Data Center context path is kept); see `check_base_url`."""
    return check_base_url(
        value, "the site URL", "https://acme.atlassian.net", "plugins.jira.user and token"
    )


def check_template(value: str, allowed: set[str], required: set[str], key: str) -> str:
    """A `str.format` template naming only `allowed` placeholders and every `required` one."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc})") from None
    unknown = names - allowed
    if unknown:
        raise ValueError(
            f"{key} may use {', '.join('{' + n + '}' for n in sorted(allowed))} only, "
            f"not {{{sorted(unknown)[0]}}}"
        )
    missing = required - names
    if missing:
        raise ValueError(f"{key} must contain {{{sorted(missing)[0]}}}")
    return value


class IssueTypes(BaseModel):
    """The issue type a work item of each kind becomes (intake, step 3)."""

    model_config = ConfigDict(extra="forbid")
    demand: str = "Story"
    problem: str = "Bug"


class Settings(BaseModel):
    """`plugins.jira` in the configuration file."""

    model_config = ConfigDict(extra="forbid")
    url: str
    # Cloud: the account's e-mail and an API token (basic auth). Data Center: a user name and
    # password (basic), or a personal access token with `auth: bearer` (no user needed).
    user: str = ""
    token: SecretStr
    auth: Literal["basic", "bearer"] = "basic"
    # "auto" asks the site (`serverInfo.deploymentType`); "cloud"/"datacenter" override it.
    deployment: Literal["auto", "cloud", "datacenter"] = "auto"
    project: str
    backlog_status: str = "To Do"
    done_status: str | None = "Done"  # null: issues are not moved when a release succeeds
    resolution: str = "Done"  # sent only when a transition's screen has the Resolution field
    issue_types: IssueTypes = Field(default_factory=IssueTypes)
    version_name: str = "{version}"  # the Jira version of a release; {service}, {version}
    # The release's issues; {project}, {version_id}, {version} (the version's name, quoted).
    scope_jql: str = "project = {project} AND fixVersion = {version_id}"
    move_to_backlog: bool = True  # rollback: out of open sprints (Jira Software boards)
    webhook_secret: SecretStr | None = None  # X-Hub-Signature of POST /webhooks/jira
    poll_seconds: float = Field(default=60.0, gt=0)
    poll_overlap_seconds: int = Field(default=120, ge=0, le=86400)
    page_size: int = Field(default=100, ge=1, le=1000)
    timeout_seconds: float = Field(default=30.0, gt=0)
    retries: int = Field(default=4, ge=1, le=10)
    # Retry-After is honoured up to this many seconds; a longer wait ends the attempt with a
    # transient error, and the core retries the step later (the `jira` library caps at 60 s).
    max_retry_wait_seconds: float = Field(default=300.0, gt=0, le=3600)
    max_transitions: int = Field(default=8, ge=1, le=30)  # per issue, to reach a status

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_site_url(value)

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not PROJECT_KEY.match(value):
            raise ValueError("must be a project key, e.g. PAY (capital letters and digits)")
        return value

    @field_validator("backlog_status", "resolution")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("version_name")
    @classmethod
    def _version_name(cls, value: str) -> str:
        return check_template(value, {"service", "version"}, {"version"}, "version_name")

    @field_validator("scope_jql")
    @classmethod
    def _scope_jql(cls, value: str) -> str:
        allowed = {"project", "version_id", "version"}
        return check_template(value, allowed, set(), "scope_jql")

    @model_validator(mode="after")
    def _credentials(self) -> Settings:
        if self.auth == "basic" and not self.user.strip():
            raise ValueError(
                "plugins.jira.user is required with basic auth (Cloud: the account's e-mail); "
                "for a Data Center personal access token set auth: bearer"
            )
        if not self.token.get_secret_value():
            raise ValueError("plugins.jira.token must not be empty")
        return self
