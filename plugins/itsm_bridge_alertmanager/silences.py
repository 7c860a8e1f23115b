"""Optional: silence the expected noise of a deployment while the release is implementing.

When a release enters `implementing` (its deployment tasks run), the plugin creates one
silence (`POST /api/v2/silences`, `postableSilence`: `matchers`, `startsAt`, `endsAt`,
`createdBy`, `comment`; answer `{"silenceID": ...}`) whose matchers are:

- the configured `silence.matchers` (e.g. `alertname="TargetDown"`);
- `<service_label>=~"<the service and the label values service_map maps to it>"`, so only
  that service's alerts are touched;
- `<severity_label>!~"<the severities at least min_severity>"` (`isEqual: false`, since
  Alertmanager 0.22): a silence can never hide an alert that would fail a release.

It lasts `silence.minutes` at most, and is expired (`DELETE /api/v2/silence/{id}`; 200, or
404 when it is already gone) as soon as the release leaves `implementing` (verifying,
failed, cancelled). The silence is found again by `createdBy` `itsm-bridge` and its comment
(`itsm-bridge <release id>: ...`) among `GET /api/v2/silences` in state active or pending,
so a retried delivery creates none twice and a restart still expires it.

A silence is a convenience, never a condition of the release: a failure here is logged and
the release goes on (the hook never raises, so it cannot hold back other plugins' records).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import BridgeError
from itsm_bridge.models import Event, Release
from itsm_bridge_alertmanager.poller import quote_meta

if TYPE_CHECKING:
    from itsm_bridge_alertmanager.client import AlertmanagerClient
    from itsm_bridge_alertmanager.settings import Settings

log = logging.getLogger(__name__)

CREATED_BY = "itsm-bridge"
IMPLEMENTING = "implementing"
LIVE = ("active", "pending")


def comment_prefix(release: Release) -> str:
    return f"{CREATED_BY} {release.id}:"


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def body(config: Settings, release: Release, now: datetime) -> dict[str, Any]:
    """The `postableSilence` for the release's deployment."""
    assert config.silence is not None
    names = [release.service, *(k for k, v in config.service_map.items() if v == release.service)]
    matchers: list[dict[str, Any]] = [
        {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
        for m in config.silence.matchers
    ]
    matchers.append(
        {
            "name": config.service_label,
            "value": "|".join(quote_meta(n) for n in dict.fromkeys(names)),
            "isRegex": True,
            "isEqual": True,
        }
    )
    matchers.append(
        {
            "name": config.severity_label,
            "value": "|".join(quote_meta(s) for s in config.counted()),
            "isRegex": True,
            "isEqual": False,
        }
    )
    return {
        "matchers": matchers,
        "startsAt": stamp(now),
        "endsAt": stamp(now + timedelta(minutes=config.silence.minutes)),
        "createdBy": CREATED_BY,
        "comment": f"{comment_prefix(release)} deployment of {release.service} {release.version}",
    }


def live_silences(client: AlertmanagerClient, release: Release) -> list[str]:
    """Ids of the release's silences still active or pending."""
    found = client.get("/silences", "GET /api/v2/silences") or []
    prefix = comment_prefix(release)
    return [
        str(s["id"])
        for s in found
        if isinstance(s, dict)
        and s.get("createdBy") == CREATED_BY
        and str(s.get("comment") or "").startswith(prefix)
        and (s.get("status") or {}).get("state") in LIVE
    ]


def on_change(
    client: AlertmanagerClient,
    config: Settings,
    release: Release,
    event: Event,
    now: datetime | None = None,
) -> None:
    """Create or expire the release's silence on a state transition; never raises."""
    if event.kind != "state":
        return
    entering = event.evidence.get("to") == IMPLEMENTING
    leaving = event.evidence.get("from") == IMPLEMENTING and not entering
    if not (entering or leaving):
        return
    try:
        existing = live_silences(client, release)
        if entering and not existing:
            postable = body(config, release, now or datetime.now(UTC))
            answer = client.post("/silences", "POST /api/v2/silences", postable)
            log.info("alertmanager: silence %s for %s", (answer or {}).get("silenceID"), release.id)
        elif leaving:
            for silence_id in existing:
                client.delete(f"/silence/{silence_id}", f"DELETE /api/v2/silence/{silence_id}")
                log.info("alertmanager: silence %s for %s expired", silence_id, release.id)
    except (BridgeError, ValueError, KeyError, TypeError) as exc:
        log.warning("alertmanager: the deployment silence of %s: %s", release.id, exc)
