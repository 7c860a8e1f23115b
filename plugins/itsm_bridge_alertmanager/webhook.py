"""`POST /webhooks/alertmanager`: Alertmanager's webhook notification (payload version 4), one
`signal` inbox event per alert that counts.

The payload (`notify/webhook/webhook.go` `Message`: `template.Data` plus `version` "4",
`groupKey`, `truncatedAlerts`; captured from 0.25 in tests/plugins/alertmanager/samples)::

    {"receiver": "bridge", "status": "firing", "alerts": [{"status": "firing",
     "labels": {...}, "annotations": {...}, "startsAt": "...", "endsAt": "...",
     "generatorURL": "...", "fingerprint": "1d31034106d44412"}, ...],
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": "...", "version": "4", "groupKey": "...", "truncatedAlerts": 0}

Only `alerts` (each with `status`, `labels`, `startsAt`, `fingerprint`) is required; every
other field is optional and unknown fields (such as the newer `notification_reason`) are
ignored. A notification lists every alert of its group, the resolved ones too
(`send_resolved`, the default): each becomes its own event, so a repeated notification
stores nothing new. `truncatedAlerts` > 0 (the receiver's `max_alerts`) is logged: the
poller finds the alerts left out.

The token: the receiver's `http_config.authorization` (type Bearer, the default) makes
Alertmanager send `Authorization: Bearer <credentials>`; it is compared in constant time
with `webhook_token`. Answers (Alertmanager retries a 5xx and drops any other failure,
`notify.Retrier.Check`): 401 for a missing or wrong token, or when no `webhook_token` is
set; 400 for a body that is not JSON; 422 for JSON that is not a notification, with the
first problem's location (never the value).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.webhook_auth import require_bearer
from itsm_bridge_alertmanager import alerts
from itsm_bridge_alertmanager.alerts import PushedAlert

if TYPE_CHECKING:
    from itsm_bridge_alertmanager.settings import Settings

log = logging.getLogger(__name__)
TOKEN_KEY = "plugins.alertmanager.webhook_token"


class Notification(BaseModel):
    """A webhook notification (version 4): what the plugin reads of it."""

    model_config = ConfigDict(extra="ignore")
    alerts: list[PushedAlert]
    receiver: str = ""
    externalURL: str = ""  # the vendor's field names
    truncatedAlerts: int = Field(default=0, ge=0)


def problem(error: ValidationError) -> str:
    """The first validation problem: where and what, never the value received."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"  # msg never quotes it
    return f"{where}: {first['msg']}"


class Handler:
    """Authenticates a notification and returns one event per alert that counts."""

    def __init__(self, config: Settings) -> None:
        self.config = config

    def _authenticate(self, headers: dict[str, str]) -> None:
        require_bearer(
            headers,
            self.config.webhook_token,
            "Alertmanager",
            TOKEN_KEY,
            hint="http_config.authorization",
        )

    def __call__(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Authenticate, parse and return the `signal` events; `query` is not read."""
        self._authenticate(headers)
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(400, "the body is not JSON") from None
        try:
            notification = Notification.model_validate(document)
        except ValidationError as exc:
            reason = f"not an Alertmanager notification: {problem(exc)}"
            raise WebhookRejected(422, reason) from None
        if notification.truncatedAlerts:
            log.warning(
                "Alertmanager left %d alert(s) out of a notification (max_alerts); the poller "
                "reads them",
                notification.truncatedAlerts,
            )
        context = {"receiver": notification.receiver, "externalURL": notification.externalURL}
        events = [alerts.event(a, a.status, self.config, context) for a in notification.alerts]
        return [e for e in events if e is not None]
