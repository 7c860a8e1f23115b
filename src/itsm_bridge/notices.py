"""What stakeholders are told, and the record of every delivery.

The core decides what to say (the kind, subject, bodies, recipients, evidence); notification
plugins decide how (`notify_stakeholders`: e-mail, chat, the log). Every plugin reports one
`Delivery` per channel; the core keeps them with the release (`release show`, the metrics)
and never fails a release because a delivery failed.
"""

from __future__ import annotations

import html
from typing import Any

from itsm_bridge.models import (
    ACTOR,
    Attachment,
    Delivery,
    Event,
    Notice,
    Release,
    ReleaseNotes,
)
from itsm_bridge.plugins import PluginHost
from itsm_bridge.settings import BridgeSettings

SUBJECTS = {
    "succeeded": "Released: {title}",
    "rolled_back": "Rolled back: {title}",
    "els_started": "Early life support started: {title}",
    "els_incident": "Incident during early life support: {title}",
    "els_ended": "Early life support ended: {title}",
    "post_mortem": "Post-mortem: {title}",
}


def notice(
    settings: BridgeSettings,
    release: Release,
    kind: str,
    lines: list[str],
    *,
    notes: ReleaseNotes | None = None,
    evidence: dict[str, Any] | None = None,
    attachments: list[Attachment] | None = None,
) -> Notice:
    """A notice of `kind` for the release: `lines` of text first, then the release notes."""
    service = settings.services.get(release.service)
    text = "\n".join(lines)
    body = "".join(f"<p>{html.escape(line)}</p>\n" for line in lines if line)
    if notes is not None:
        text = f"{text}\n\n{notes.markdown}".strip()
        body += notes.html
    return Notice(
        kind=kind,  # type: ignore[arg-type]
        subject=SUBJECTS[kind].format(title=release.title),
        text=text,
        html=body,
        recipients=list(service.stakeholders) if service else [],
        notes=notes,
        evidence=evidence or {},
        attachments=attachments or [],
    )


def send(host: PluginHost, release: Release, told: Notice) -> tuple[list[Delivery], Event]:
    """Tell every notification plugin; the deliveries, and the `notified` event saying so."""
    deliveries = [
        delivery
        for answer in host.hook.notify_stakeholders(release=release, notice=told)
        for delivery in answer or []
    ]
    failed = [d for d in deliveries if not d.ok]
    summary = f"{told.subject}: {len(deliveries)} delivery(ies)"
    if failed:
        summary += "; failed: " + "; ".join(f"{d.channel} {d.target}: {d.detail}" for d in failed)
    event = Event(
        actor=ACTOR,
        kind="notified",
        message=summary,
        evidence={
            "notice": told.kind,
            "deliveries": [d.model_dump(mode="json") for d in deliveries],
        },
    )
    return deliveries, event


def recorded(core: dict[str, Any], kind: str, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """The release's deliveries so far plus these (the core data key `deliveries`)."""
    return [
        *core.get("deliveries", []),
        *({"notice": kind, **d.model_dump(mode="json")} for d in deliveries),
    ]
