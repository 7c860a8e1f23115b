"""The configuration: a YAML file, secret references, and environment overrides.

Order of precedence (highest first): `ITSM_BRIDGE_*` environment variables (`__` between
levels, e.g. `ITSM_BRIDGE_PLUGINS__JIRA__PROJECT=PAY`), then the YAML file. Any value in the
file may be `{$env: NAME}` or `{$file: PATH}`; both are resolved at load time and a missing
variable or file is a configuration error. Unknown keys are errors everywhere. Each plugin
validates its own section (`plugins.<name>`) with its own model when it is enabled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from itsm_bridge.errors import ConfigError
from itsm_bridge.windows import maintenance_windows, parse_duration

ENV_PREFIX = "ITSM_BRIDGE_"
# Variables with the prefix that are not configuration keys.
RESERVED_ENV = {"ITSM_BRIDGE_CONFIG", "ITSM_BRIDGE_TRACE"}
DEFAULT_CONFIG_PATH = Path("config/itsm-bridge.yaml")


class StrictModel(BaseModel):
    """Base of every configuration section: a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(StrictModel):
    listen: str = "127.0.0.1:8765"
    token: SecretStr | None = None
    lease_seconds: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1)  # larger request bodies: 413
    workers: int = Field(default=4, ge=1, le=64)  # releases advanced at once (thread pool)
    shutdown_seconds: float = Field(default=8, ge=0, le=60)  # in-flight steps may finish
    intake_seconds: int = Field(default=300, ge=1)  # how often demands and problems are read

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('must be "host:port", e.g. "127.0.0.1:8765"')
        return value


class PluginsSettings(BaseModel):
    """`enabled` lists the plugins to run; every other key is one plugin's own section."""

    model_config = ConfigDict(extra="allow")
    enabled: list[str] = Field(default_factory=list)

    def section(self, name: str) -> dict[str, Any]:
        """The raw section of plugin `name` (empty when absent)."""
        value = (self.model_extra or {}).get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"plugins.{name}: must be a mapping of that plugin's settings")
        return value

    def sections(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class JobsSettings(StrictModel):
    """The CI/CD job that serves each purpose, e.g. `payments/deploy` (a Jenkins folder path)."""

    build: str | None = None
    deploy: str | None = None
    smoke_test: str | None = None
    rollback: str | None = None


class TaskTemplate(StrictModel):
    """A release task of a service (step 9); deploy and smoke test are implicit."""

    name: str
    kind: Literal["manual", "automated"] = "manual"
    group: str | None = None
    before: Literal["deploy", "smoke_test"] | None = None
    after: Literal["deploy", "smoke_test"] | None = None
    job: str | None = Field(default=None, description="for automated tasks: the job to run")

    @model_validator(mode="after")
    def _job_only_when_automated(self) -> TaskTemplate:
        if self.job and self.kind != "automated":
            raise ValueError("job is for automated tasks; set kind: automated or remove job")
        if self.before and self.after:
            raise ValueError("give either before or after, not both")
        return self


class ServiceSettings(StrictModel):
    ci: str | None = None
    stakeholders: list[str] = Field(default_factory=list)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    tasks: list[TaskTemplate] = Field(default_factory=list)
    service_levels: dict[str, str] = Field(
        default_factory=dict,
        description="what every release of the service prescribes (step 17), e.g. "
        "{availability: '99.95', support_hours: '24x7'}; `release create --service-level` "
        "overrides a key",
    )


def _duration(value: str) -> str:
    parse_duration(value)
    return value


class MaintenanceWindowSettings(StrictModel):
    name: str
    rrule: str
    duration: str

    _check_duration = field_validator("duration")(_duration)

    @property
    def length(self) -> timedelta:
        return parse_duration(self.duration)


class FreezeSettings(StrictModel):
    name: str
    start: date
    end: date
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> FreezeSettings:
        if self.end < self.start:
            raise ValueError("end is before start; both are whole days, end inclusive")
        return self


class WindowsSettings(StrictModel):
    timezone: str = "UTC"
    maintenance: list[MaintenanceWindowSettings] = Field(default_factory=list)
    freezes: list[FreezeSettings] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not an IANA time zone, e.g. Europe/Berlin") from exc
        return value

    @model_validator(mode="after")
    def _rules_expand(self) -> WindowsSettings:
        """Expand each RRULE once so a bad rule fails at load time, not at step 5."""
        probe = datetime(2026, 1, 1, tzinfo=UTC)
        for index, window in enumerate(self.maintenance):
            try:
                maintenance_windows(
                    window.name,
                    window.rrule,
                    self.timezone,
                    window.length,
                    probe,
                    probe + timedelta(days=1),
                )
            except ValueError as exc:
                raise ValueError(f"maintenance[{index}].rrule: {exc}") from None
        return self


class PostMortemSettings(StrictModel):
    """Step 16: when a post-mortem is written, and its meeting."""

    after_success: bool = False  # also after successful releases (always after a failed one)
    follow_ups: bool = True  # each follow-up becomes a backlog item (a backlog plugin needed)
    meeting_offset: str = "2d"  # the meeting starts this long after the release ended
    meeting_duration: str = "1h"
    attendees: list[str] = Field(default_factory=list)  # the transition team, besides stakeholders

    _check_duration = field_validator("meeting_offset", "meeting_duration")(_duration)


class PolicySettings(StrictModel):
    verify_minutes: int = Field(default=30, ge=0)
    els_days: int = Field(default=7, ge=0)
    els_auto_rollback: bool = False
    require_backout_plan: bool = True
    max_failed_tests: int = Field(default=0, ge=0)
    default_duration: str = "1h"
    retry_limit: int = Field(default=8, ge=1)
    poll_seconds: int = Field(default=30, ge=0)
    failure_severity: Literal["critical", "warning", "info"] = "warning"
    failure_limit: int = Field(
        default=1, ge=1, description="distinct firing signals that fail a release in its watch"
    )
    clock_skew_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="a signal may start this long before the deployment began and still count",
    )
    version_pattern: str | None = Field(
        default=None,
        description="a regular expression every release version must match as a whole",
    )
    require_tests: bool = Field(
        default=False, description="a build without a test report blocks the release"
    )
    unstable: Literal["failure", "success"] = Field(
        default="failure",
        description="what an UNSTABLE deploy, smoke-test, task or rollback job counts as",
    )
    post_mortem: PostMortemSettings = Field(default_factory=PostMortemSettings)
    give_up_after: str = Field(
        default="1h",
        description="a step whose system keeps failing transiently (unreachable, 5xx) is "
        "failed only after this long and `retry_limit` attempts",
    )

    _check_duration = field_validator("default_duration", "give_up_after")(_duration)

    @property
    def give_up_delay(self) -> timedelta:
        return parse_duration(self.give_up_after)

    @field_validator("version_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        """Compile the pattern once so a bad one fails at load time, naming the key."""
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"not a valid regular expression ({exc.msg} at position {exc.pos}), "
                r'e.g. "\d+\.\d+\.\d+"'
            ) from None
        return value


class BridgeSettings(BaseSettings):
    """The whole configuration file of the contract (DESIGN.md, "Configuration file")."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database: str = "sqlite:///var/lib/itsm-bridge/bridge.db"
    data_dir: str = "var/lib/itsm-bridge"
    server: ServerSettings = Field(default_factory=ServerSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)
    services: dict[str, ServiceSettings] = Field(default_factory=dict)
    windows: WindowsSettings = Field(default_factory=WindowsSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init values); nothing else is read.
        return (env_settings, init_settings)


def resolve_references(value: Any, path: str = "") -> Any:
    """Replace every `{$env: NAME}` / `{$file: PATH}` in a parsed YAML tree by its value."""
    if isinstance(value, Mapping):
        keys = set(value)
        if keys & {"$env", "$file"}:
            if len(keys) != 1:
                raise ConfigError(
                    f"{path or '<root>'}: a reference takes exactly one key, $env or $file"
                )
            if "$env" in value:
                name = str(value["$env"])
                if name not in os.environ:
                    raise ConfigError(
                        f"{path}: environment variable {name} is not set; "
                        f"export {name}=... or change the reference"
                    )
                return os.environ[name]
            file_path = Path(str(value["$file"])).expanduser()
            try:
                return file_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{path}: cannot read secret file {file_path}: {exc.strerror}; "
                    "create it or change the reference"
                ) from exc
        return {
            k: resolve_references(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [resolve_references(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, naming the key path and the fix, never the offending value.

    Pydantic's messages leave the input out; a validator's own message may quote it (an
    RRULE, a duration), so every string of the input that appears in the message is masked:
    the value may have come from a secret reference.
    """
    lines = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"] if part != "__root__")
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "<root>")
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key; remove it or check its spelling")
        elif item["type"] == "missing":
            lines.append(f"{key}: required key is missing; add it")
        else:
            lines.append(f"{key}: {_mask(item['msg'], item.get('input'))}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


MASK_MIN_LENGTH = 6  # shorter strings are not secrets, and masking them would garble words


def _mask(message: str, value: Any) -> str:
    """`message` with every string of `value` (a leaf, or inside a mapping), and each part of
    it between `;`, `=`, `,`, `:` or spaces (an RRULE error quotes one part), replaced by ***."""
    strings: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, str):
            parts = [node, *re.split(r"[;=,:\s]+", node)]
            strings.extend(part for part in parts if len(part) >= MASK_MIN_LENGTH)
        elif isinstance(node, Mapping):
            for child in node.values():
                collect(child)
        elif isinstance(node, list | tuple):
            for child in node:
                collect(child)

    collect(value)
    for text in sorted(strings, key=len, reverse=True):
        message = re.sub(re.escape(text), "***", message, flags=re.IGNORECASE)
    return message


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The file to read: `-c`, else `$ITSM_BRIDGE_CONFIG`, else `config/itsm-bridge.yaml`."""
    if explicit:
        return Path(explicit)
    if os.environ.get("ITSM_BRIDGE_CONFIG"):
        return Path(os.environ["ITSM_BRIDGE_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_settings(path: str | os.PathLike[str] | None = None) -> BridgeSettings:
    """Read, resolve and validate the configuration; `ConfigError` says what to fix."""
    file = config_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read configuration file {file}: {exc.strerror}; copy "
            "config/itsm-bridge.example.yaml (every key, commented) to that path, or pass "
            "-c FILE or set ITSM_BRIDGE_CONFIG"
        ) from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}; fix the syntax") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys")
    return settings_from_mapping(raw)


def settings_from_mapping(raw: Mapping[str, Any]) -> BridgeSettings:
    """Validate an already-parsed configuration tree (references are resolved here)."""
    resolved = resolve_references(dict(raw))
    stray = sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in RESERVED_ENV
        and name.upper()[len(ENV_PREFIX) :].split("__")[0].lower()
        not in BridgeSettings.model_fields
    )
    if stray:
        raise ConfigError(
            f"environment variable {stray[0]} names no configuration key; "
            "unset it or use ITSM_BRIDGE_<SECTION>__<KEY>"
        )
    try:
        return BridgeSettings(**resolved)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
