"""`plugins.notify`: every key the notify plugin reads, with its default (see docs/notify.md).

Three channels, each optional, at least one configured: e-mail (`smtp_url`, `sender`),
Slack (`slack.webhook_url`) and Microsoft Teams (`teams.webhook_url`). Secrets (the SMTP
password, both webhook URLs: each carries its own credential) belong in `{$env: ...}` or
`{$file: ...}`; a URL never carries credentials of its own.
"""

from __future__ import annotations

import email.utils
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from itsm_bridge_notify.templates import FIELDS, KINDS, check_template

SMTP_SCHEMES = {"smtp": 25, "smtps": 465}


def check_smtp_url(value: str) -> str:
    """`smtp://host[:port]` (STARTTLS per `starttls`) or `smtps://host[:port]` (TLS from the
    first byte); no credentials (`user` and `password` hold them), no path or query."""
    parts = urlsplit(value.strip())
    example = "smtp://mail.acme.com:587 or smtps://mail.acme.com"
    if parts.scheme not in SMTP_SCHEMES:
        raise ValueError(f"must be smtp:// or smtps://, e.g. {example}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not carry credentials; set plugins.notify.user and password")
    if not parts.hostname:
        raise ValueError(f"has no host; e.g. {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"must be a scheme, a host and a port only, e.g. {example}")
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value.strip().rstrip("/")


def check_address(value: str) -> str:
    """One e-mail address, optionally with a display name (`Releases <releases@acme.com>`)."""
    _, address = email.utils.parseaddr(value)
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or any(c.isspace() for c in address):
        raise ValueError("must be an e-mail address, e.g. releases@acme.com")
    return value.strip()


class ChatSettings(BaseModel):
    """`plugins.notify.slack` / `.teams`: one incoming webhook."""

    model_config = ConfigDict(extra="forbid")
    webhook_url: SecretStr = Field(
        description="the webhook URL (it carries its own credential: keep it in $env or $file)"
    )

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be the https:// URL the service gave for the webhook")
        return SecretStr(value.get_secret_value().strip())


class TemplateSet(BaseModel):
    """Overrides for one notice kind (Jinja2, sandboxed); a key left out keeps the default."""

    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(default=None, description="the e-mail subject (one line)")
    text: str | None = Field(default=None, description="the e-mail's plain-text body")
    html: str | None = Field(default=None, description="the e-mail's HTML body (autoescaped)")
    slack: str | None = Field(default=None, description="the Slack message (mrkdwn)")
    teams: str | None = Field(default=None, description="the Teams card's text (Markdown)")


class Settings(BaseModel):
    """`plugins.notify` in the configuration file (every key: docs/notify.md)."""

    model_config = ConfigDict(extra="forbid")
    smtp_url: str | None = Field(
        default=None, description="smtp://host:port (STARTTLS) or smtps://host:port (TLS)"
    )
    starttls: Literal["auto", "required"] = Field(
        default="auto",
        description="smtp:// only. auto: STARTTLS when the server offers it; required: "
        "refuse to send over a connection that could not be encrypted",
    )
    sender: str | None = Field(default=None, description="the From address")
    user: str | None = Field(default=None, description="SMTP AUTH user; none: no login")
    password: SecretStr | None = Field(default=None, description="SMTP AUTH password")
    to: list[str] = Field(default_factory=list, description="told besides the stakeholders")
    cc: list[str] = Field(default_factory=list, description="copied on every e-mail")
    tls_ca_file: str | None = Field(
        default=None, description="a PEM CA bundle for the SMTP server; none: the system's"
    )
    message_id_domain: str | None = Field(
        default=None, description="the right side of Message-IDs; none: the sender's domain"
    )
    slack: ChatSettings | None = None
    teams: ChatSettings | None = None
    templates: dict[str, TemplateSet] = Field(
        default_factory=dict, description="per notice kind: subject, text, html, slack, teams"
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=300, description="per connection")
    retries: int = Field(default=3, ge=1, le=10, description="attempts per channel")
    max_retry_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        le=600,
        description="longest wait between attempts; a Retry-After beyond it is not waited",
    )

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        return None if value is None else check_smtp_url(value)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [check_address(v) for v in value]

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError("is not a readable file; give the path of a PEM CA bundle")
        return value

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, TemplateSet]) -> dict[str, TemplateSet]:
        for kind, overrides in value.items():
            if kind not in KINDS:
                raise ValueError(f"{kind!r} is not a notice kind; use one of {', '.join(KINDS)}")
            for field in FIELDS:
                source = getattr(overrides, field)
                if source is not None:
                    check_template(source, field, f"templates.{kind}.{field}")
        return value

    @model_validator(mode="after")
    def _channels(self) -> Settings:
        if self.smtp_url is None and self.slack is None and self.teams is None:
            raise ValueError(
                "configure at least one channel: smtp_url (with sender), slack or teams"
            )
        if self.smtp_url is not None and self.sender is None:
            raise ValueError("sender: required with smtp_url; the From address of every e-mail")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password: set both (SMTP AUTH) or neither")
        if self.user is not None and self.smtp_url is None:
            raise ValueError("user and password: only used with smtp_url; set smtp_url")
        return self

    @property
    def smtp_parts(self) -> tuple[str, str, int]:
        """(scheme, host, port) of `smtp_url`, the port defaulting to 25 or 465."""
        parts = urlsplit(self.smtp_url or "")
        return parts.scheme, parts.hostname or "", parts.port or SMTP_SCHEMES[parts.scheme]
