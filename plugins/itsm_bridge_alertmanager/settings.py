"""`plugins.alertmanager`: every key the Alertmanager plugin reads, with its default (see
docs/alertmanager.md).

Label names follow Prometheus' rule (`[a-zA-Z_][a-zA-Z0-9_]*`), so the matchers the plugin
builds from them are always well-formed. Severities are an ordered list, least severe first;
`min_severity` must be one of them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from itsm_bridge.http import check_base_url

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
STANDARD = ("info", "warning", "critical")  # the severities a `Signal` carries
DEFAULT_SEVERITIES = list(STANDARD)


def _label_name(value: str) -> str:
    if not LABEL_NAME.match(value):
        raise ValueError("must be a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*), e.g. service")
    return value


class SilenceMatcher(BaseModel):
    """One matcher of a deployment silence (Alertmanager API v2 `matcher`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    _check_name = field_validator("name")(_label_name)


class SilenceSettings(BaseModel):
    """Silence the expected noise of a deployment while its deployment runs (optional)."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[SilenceMatcher] = Field(
        min_length=1, description="what to silence, e.g. [{name: alertname, value: TargetDown}]"
    )
    minutes: int = Field(
        default=120, ge=1, le=1440, description="the silence's longest life (expired earlier)"
    )


class Settings(BaseModel):
    """`plugins.alertmanager` in the configuration file."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="Alertmanager's root URL, with its --web.route-prefix if any")
    webhook_token: SecretStr | None = Field(
        default=None,
        description="the bearer token Alertmanager sends (http_config.authorization); unset: "
        "webhooks are refused and the poller is the only path",
    )
    service_label: str = Field(default="service", description="the label naming the service")
    service_map: dict[str, str] = Field(
        default_factory=dict,
        description="label values to the service (or CI) names the bridge knows",
    )
    severity_label: str = "severity"
    severities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SEVERITIES),
        min_length=1,
        description="severity label values, least severe first",
    )
    min_severity: str = Field(default="critical", description="the least severe that counts")
    env_label: str = "env"
    env: str | None = Field(
        default=None, description="only alerts whose env_label is this value count; unset: all"
    )
    poll_seconds: int = Field(
        default=60, ge=0, description="the reconciliation poller's interval; 0: no poller"
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=3, ge=1, le=10, description="attempts for each read")
    silence: SilenceSettings | None = None

    _check_labels = field_validator("service_label", "severity_label", "env_label")(_label_name)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_base_url(
            value, "Alertmanager's root URL", "http://alertmanager:9093", "a reverse proxy"
        )

    @model_validator(mode="after")
    def _severities(self) -> Settings:
        if len(set(self.severities)) != len(self.severities):
            raise ValueError("severities: each value once, least severe first")
        if self.min_severity not in self.severities:
            raise ValueError(
                f"min_severity must be one of severities ({', '.join(self.severities)})"
            )
        return self

    def rank(self, severity: str | None) -> int | None:
        """The position of a severity label value in `severities`; None when unknown."""
        if severity is None or severity not in self.severities:
            return None
        return self.severities.index(severity)

    def counts(self, severity: str | None) -> bool:
        """A severity at least `min_severity` (an unknown or missing one never counts)."""
        rank = self.rank(severity)
        return rank is not None and rank >= self.severities.index(self.min_severity)

    def counted(self) -> list[str]:
        """The severity values at least `min_severity`, in order."""
        return self.severities[self.severities.index(self.min_severity) :]

    def standard(self, severity: str) -> Literal["info", "warning", "critical"]:
        """What a `Signal` says for a counted severity: the value itself when it is standard,
        else the nearest standard value below it in `severities` (none below: info; a
        severity above critical, such as `page`, is critical)."""
        if severity in STANDARD:
            return severity  # type: ignore[return-value]
        below = self.severities[: self.severities.index(severity)]
        known = [s for s in below if s in STANDARD]
        if not known:
            return "info"
        return known[-1]  # type: ignore[return-value]
