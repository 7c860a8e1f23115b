"""The `alertmanager` poller: the alerts firing now, read from `GET /api/v2/alerts`, as the
same `signal` events the webhook stores (same dedupe keys: a pushed and a polled alert are
one). It catches a notification that was lost (the bridge down, a 4xx Alertmanager does not
retry, `max_alerts` truncation) and is the only path when no webhook is configured.

The query (`api/v2/openapi.yaml` `getAlerts`; `filter` is `collectionFormat: multi`, one
matcher per parameter, all of them must match)::

    GET /api/v2/alerts?active=true&silenced=false&inhibited=false
        &filter=service=~".+"&filter=severity=~"critical"[&filter=env="prod"]

Alertmanager leaves resolved alerts out of this answer (`alertFilter`: `EndsAt` before now),
so every polled alert is firing; a resolution is only ever pushed. Silenced and inhibited
alerts are left out as they are from notifications. Every alert carrying the service label
is read, not only those of configured services: an alert may name one of a release's CIs
from the CMDB, and the worker keeps only what concerns a watched release.

Matcher values use the OpenMetrics escaping Alertmanager's matcher parser reads (`\\`, `\"`,
`\n`); regular expressions are RE2, anchored, and literal values in them are escaped as Go's
`regexp.QuoteMeta` does. The poller keeps no cursor: it reads what fires now.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from itsm_bridge.http import HTTPRequestError
from itsm_bridge_alertmanager import alerts
from itsm_bridge_alertmanager.alerts import Alert
from itsm_bridge_alertmanager.client import AlertmanagerClient

if TYPE_CHECKING:
    from itsm_bridge_alertmanager.settings import Settings

log = logging.getLogger(__name__)

RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
ALERTS = TypeAdapter(list[Alert])


def quote_meta(value: str) -> str:
    """`value` as a literal inside an RE2 expression (Go's `regexp.QuoteMeta`)."""
    return "".join("\\" + c if c in RE2_SPECIAL else c for c in value)


def matcher(name: str, operator: str, value: str) -> str:
    """`name<op>"value"` with the value escaped for Alertmanager's matcher parser."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}{operator}"{escaped}"'


def query(config: Settings) -> list[tuple[str, str]]:
    """The query parameters of one poll (in order; `filter` repeated)."""
    levels = "|".join(quote_meta(s) for s in config.counted())
    params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    params.append(("filter", matcher(config.service_label, "=~", ".+")))
    params.append(("filter", matcher(config.severity_label, "=~", levels)))
    if config.env is not None:
        params.append(("filter", matcher(config.env_label, "=", config.env)))
    return params


class Poller:
    """`poll(cursor) -> (events, cursor)` for `register_pollers`; the cursor is kept as is."""

    def __init__(self, client: AlertmanagerClient, config: Settings) -> None:
        self.client = client
        self.config = config

    def __call__(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        what = "GET /api/v2/alerts"
        answer = self.client.get("/alerts", what, params=query(self.config))
        try:
            found = ALERTS.validate_python(answer)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise HTTPRequestError(
                f"{what}: not Alertmanager's alert list ({where}: {first['msg']}); check "
                "plugins.alertmanager.url",
                502,
            ) from None
        events = [alerts.event(alert, "firing", self.config) for alert in found]
        kept = [e for e in events if e is not None]
        log.debug("alertmanager: %d alert(s) firing, %d counted", len(found), len(kept))
        return kept, cursor
