"""`check_connection`: one `GET /api/v2/status` (`getStatus`), at most 10 seconds, not retried.

Its answer (`alertmanagerStatus`) requires `cluster` (`status`: ready, settling or
disabled), `versionInfo` (`version`, ...), `config` and `uptime`: a 200 without
`versionInfo.version` is not Alertmanager (a proxy, a login page). The detail also says
when webhooks are off (no `webhook_token`: the poller is the only path) or polling is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from itsm_bridge.models import ConnectionCheck
from itsm_bridge_alertmanager.alerts import SOURCE
from itsm_bridge_alertmanager.client import AlertmanagerClient, vendor_message

if TYPE_CHECKING:
    from itsm_bridge_alertmanager.settings import Settings

CHECK_TIMEOUT = 10.0


def paths(config: Settings) -> str:
    """Which of the two paths are on."""
    hooks = config.webhook_token is not None and config.webhook_token.get_secret_value()
    if hooks and config.poll_seconds:
        return f"webhooks and polling every {config.poll_seconds} s"
    if hooks:
        return "webhooks only (poll_seconds: 0)"
    if config.poll_seconds:
        return f"polling every {config.poll_seconds} s only (no webhook_token: webhooks refused)"
    return "neither webhooks (no webhook_token) nor polling (poll_seconds: 0): no alert arrives"


def check(client: AlertmanagerClient, config: Settings) -> ConnectionCheck:
    """Reach Alertmanager's API once; never raises for HTTP or network faults."""
    timeout = min(CHECK_TIMEOUT, config.timeout_seconds)

    def answer(ok: bool, detail: str, status: int | None = None) -> ConnectionCheck:
        return ConnectionCheck(
            plugin=SOURCE, system=SOURCE, url=client.base_url, ok=ok, status=status, detail=detail
        )

    try:
        response = client.probe("/status", timeout)
    except requests.Timeout:
        return answer(False, f"unreachable: no answer within {timeout:g} s")
    except requests.RequestException as exc:
        return answer(False, f"unreachable: {type(exc).__name__}: {str(exc)[:200]}")
    status = response.status_code
    if status in (401, 403):
        return answer(
            False,
            "the API asks for credentials (a proxy?); the bridge sends none: let it reach "
            "Alertmanager directly",
            status,
        )
    if status == 404:
        return answer(
            False,
            "no API v2 here; is plugins.alertmanager.url the root (with --web.route-prefix)?",
            status,
        )
    if status != 200:
        return answer(False, f"HTTP {status}: {vendor_message(response)}", status)
    try:
        document = response.json()
        version = str(document["versionInfo"]["version"])
        cluster = str((document.get("cluster") or {}).get("status") or "unknown")
    except (ValueError, KeyError, TypeError):
        return answer(
            False, "not Alertmanager's API (no versionInfo); check plugins.alertmanager.url", 200
        )
    return answer(True, f"Alertmanager {version}, cluster {cluster}; {paths(config)}", 200)
