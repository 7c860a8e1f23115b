"""One alert, pushed (webhook) or polled (API v2), as one inbox event of kind `signal`.

Both paths describe an alert with the same fields (webhook `template.Alert`; API v2
`gettableAlert`): `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`, `fingerprint`
(a hash of the label set). They stamp time differently: the webhook marshals Go's
`time.Time` (RFC 3339 with nanoseconds, trailing zeros dropped: `05:27:57.100823157Z`), the
API go-openapi's `strfmt.DateTime` (`MarshalFormat = RFC3339Millis`: `05:27:57.100Z`, the
fraction truncated). So `startsAt` is normalised to UTC milliseconds, truncated, before it
enters a key: the same alert then has the same key on both paths (see the captured samples
in tests/plugins/alertmanager/samples).

The event: `dedupe_key` `alertmanager:<fingerprint>:<startsAt>:<status>` (a repeated
notification of the same alert is stored once, its resolution once more); payload a
`Signal` whose `key` is `<fingerprint>:<startsAt>` (the firing and resolved updates share
it: the core keeps the latest), `service` the `service_label` value after `service_map`,
`at` startsAt, `severity` the standard level (`Settings.standard`), `summary`
`<alertname>: <annotations.summary>` and `evidence` what a person needs to judge it.

Not stored (accepted all the same): an alert without the service label, with a severity
below `min_severity` or unknown, or (with `env` set) of another environment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from itsm_bridge.models import Signal

if TYPE_CHECKING:
    from itsm_bridge_alertmanager.settings import Settings

SOURCE = "alertmanager"
KIND = "signal"
MAX_SUMMARY = 300
RUNBOOK_ANNOTATIONS = ("runbook_url", "runbook")


class Alert(BaseModel):
    """The fields of one alert the plugin needs; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime  # the vendor's field names
    endsAt: AwareDatetime | None = None
    generatorURL: str | None = None
    fingerprint: str = Field(min_length=1, max_length=64)


class PushedAlert(Alert):
    """An alert of a webhook notification: it says whether it is firing or resolved."""

    status: Literal["firing", "resolved"]


def instant(value: datetime) -> str:
    """UTC, truncated to the millisecond: `2026-11-28T05:27:57.100Z` (what API v2 prints)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def signal_key(alert: Alert) -> str:
    return f"{alert.fingerprint}:{instant(alert.startsAt)}"


def dedupe_key(alert: Alert, status: str) -> str:
    return f"{SOURCE}:{signal_key(alert)}:{status}"


def service_of(alert: Alert, config: Settings) -> str | None:
    """The service (or CI) the alert names, through `service_map`; None without the label."""
    value = alert.labels.get(config.service_label)
    if not value:
        return None
    return config.service_map.get(value, value)


def counts(alert: Alert, config: Settings) -> bool:
    """Whether the alert may concern a release: it names a service, its severity is at least
    `min_severity`, and (with `env` set) it is of that environment."""
    if service_of(alert, config) is None:
        return False
    if not config.counts(alert.labels.get(config.severity_label)):
        return False
    return config.env is None or alert.labels.get(config.env_label) == config.env


def summary_of(alert: Alert) -> str:
    name = alert.labels.get("alertname", "")
    text = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    line = f"{name}: {text}" if name and text else (name or text or alert.fingerprint)
    line = " ".join(line.split())
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


def event(
    alert: Alert, status: str, config: Settings, context: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The inbox event for one alert, or None when it does not count (see `counts`).
    `context` joins the evidence (the webhook's receiver and externalURL)."""
    if not counts(alert, config):
        return None
    severity = alert.labels[config.severity_label]
    notes = alert.annotations
    runbook = next((notes[a] for a in RUNBOOK_ANNOTATIONS if a in notes), "")
    evidence: dict[str, Any] = {
        "status": status,
        "alertname": alert.labels.get("alertname", ""),
        "fingerprint": alert.fingerprint,
        "severity": severity,
        "labels": dict(sorted(alert.labels.items())),
        "summary": alert.annotations.get("summary", ""),
        "generatorURL": alert.generatorURL or "",
        "runbook": runbook,
        "startsAt": instant(alert.startsAt),
        **(context or {}),
    }
    if status == "resolved" and alert.endsAt is not None:
        evidence["endsAt"] = instant(alert.endsAt)
    signal = Signal(
        source=SOURCE,
        key=signal_key(alert),
        severity=config.standard(severity),
        summary=summary_of(alert),
        at=datetime.fromisoformat(instant(alert.startsAt)),
        service=service_of(alert, config),
        evidence=evidence,
    )
    return {
        "source": SOURCE,
        "kind": KIND,
        "dedupe_key": dedupe_key(alert, status),
        "payload": signal.model_dump(mode="json"),
    }
