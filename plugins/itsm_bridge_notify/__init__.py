"""Stakeholder notifications (step 15, early life support, the post-mortem invitation):
e-mail over SMTP, Slack and Microsoft Teams webhooks.

The core decides what to say (`Notice`); this plugin renders each channel's words from
sandboxed templates (`templates`), sends with retries (`delivery`) through hand-written
senders on `smtplib` (`smtp`, `mail`) and `requests` (`chat`), and answers one `Delivery`
per channel, ok or not, never raising: a failed notification never fails a release. Delivery
is at least once: a notice repeated after a crash is sent again, with the same Message-ID.
See docs/notify.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import ConnectionCheck, Delivery, Notice, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_notify import chat, mail
from itsm_bridge_notify.delivery import RetryPolicy, deliver
from itsm_bridge_notify.settings import Settings
from itsm_bridge_notify.smtp import Outcome, SmtpSender
from itsm_bridge_notify.templates import TemplateFailure, Templates, context

_Settings = Settings
log = logging.getLogger("itsm_bridge.notify")
NOT_CHECKED = "not checked: a webhook only accepts messages, and a test message would reach people"


class NotifyPlugin:
    """The hook implementations; `sleep` and `clock` are replaced by tests."""

    Settings = Settings

    def __init__(self, config: _Settings, settings: BridgeSettings) -> None:
        self.config = config
        self.bridge = settings
        self.templates = Templates(config.templates)
        self.smtp = SmtpSender(config) if config.smtp_url else None
        self.chats = {
            name: chat.ChatSender(name, channel.webhook_url, config.timeout_seconds)
            for name, channel in (("slack", config.slack), ("teams", config.teams))
            if channel is not None
        }
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.config.retries, self.config.max_retry_wait_seconds, self.sleep)

    # -- steps 15, 16, 18 -----------------------------------------------------------------
    @hookimpl
    def notify_stakeholders(self, release: Release, notice: Notice) -> list[Delivery]:
        """One delivery per configured channel: e-mail, Slack, Teams (in that order)."""
        channels: list[tuple[str, str, Callable[[], Delivery]]] = []
        if self.smtp is not None:
            channels.append(
                ("email", self.smtp.url, partial(self.email, self.smtp, release, notice))
            )
        for name, sender in self.chats.items():
            channels.append(
                (name, sender.target, partial(self.chat, name, sender, release, notice))
            )
        return [_guarded(name, target, send) for name, target, send in channels]

    def email(self, smtp: SmtpSender, release: Release, notice: Notice) -> Delivery:
        """The e-mail to the stakeholders (and `to`, `cc`), retried per recipient."""
        config = self.config
        sender = config.sender or ""
        to, cc = mail.recipients(notice.recipients, config.to, config.cc)
        envelope = [mail.address_of(a) for a in (*to, *cc)]
        target = ", ".join(envelope) or "no recipients"
        if not envelope:
            return Delivery(
                channel="email",
                target=target,
                ok=False,
                attempts=0,
                detail=f"no recipients: set services.{release.service}.stakeholders "
                "or plugins.notify.to",
            )
        seen = context(release, notice, "email")
        try:
            message = mail.build_message(
                sender=sender,
                to=to,
                cc=cc,
                subject=self.templates.render(notice.kind, "subject", seen),
                text=self.templates.render(notice.kind, "text", seen),
                html=self.templates.render(notice.kind, "html", seen),
                attachments=notice.attachments,
                msgid=mail.message_id(
                    release.id,
                    notice.kind,
                    notice.evidence,
                    config.message_id_domain or mail.domain_of(sender),
                ),
                date=self.clock(),
                headers={"X-ITSM-Bridge-Release": release.id, "X-ITSM-Bridge-Notice": notice.kind},
            )
        except TemplateFailure as exc:
            return Delivery(channel="email", target=target, ok=False, attempts=0, detail=str(exc))
        outcome = Outcome(pending=envelope)
        from_address = mail.address_of(sender)
        return deliver(
            "email",
            target,
            lambda: smtp.send(message, from_address, outcome, config.timeout_seconds),
            self.policy,
        )

    def chat(
        self, name: str, sender: chat.ChatSender, release: Release, notice: Notice
    ) -> Delivery:
        """One message to the Slack or Teams webhook."""
        seen = context(release, notice, name)
        try:
            heading = f"{seen['icon']} {self.templates.render(notice.kind, 'subject', seen)}"
            body = self.templates.render(notice.kind, name, seen)
        except TemplateFailure as exc:
            return Delivery(
                channel=name, target=sender.target, ok=False, attempts=0, detail=str(exc)
            )
        change = seen["release"]["change"]
        facts = [
            ("Release", release.id),
            ("Service", f"{release.service} {release.version}"),
            ("Change", change["number"] if change else ""),
        ]
        if name == "slack":
            payload = chat.slack_payload(heading.strip(), body, facts)
        else:
            payload = chat.teams_payload(heading.strip(), body, facts, change and change["url"])
        return deliver(name, sender.target, lambda: sender.post(payload), self.policy)

    # -- `itsm-bridge check-config --connect` ----------------------------------------------
    @hookimpl
    def check_connection(self) -> list[ConnectionCheck]:
        """SMTP: connect, TLS, login, QUIT (nothing sent). Webhooks: not checked."""
        checks = [self.smtp.check()] if self.smtp is not None else []
        checks += [
            ConnectionCheck(plugin="notify", system=name, url=s.target, ok=True, detail=NOT_CHECKED)
            for name, s in self.chats.items()
        ]
        return checks


def _guarded(channel: str, target: str, send: Callable[[], Delivery]) -> Delivery:
    """`send()`, or a failed delivery if preparing the message itself went wrong."""
    try:
        return send()
    except Exception as exc:  # e.g. an address the e-mail library refuses: never raise
        log.exception("%s notification could not be prepared", channel)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        detail = f"could not prepare the message: {type(exc).__name__}: {first}".rstrip(": ")
        return Delivery(channel=channel, target=target, ok=False, attempts=0, detail=detail)
