"""The e-mail itself: headers, the two alternatives and the attachments (RFC 5322, MIME).

Structure: `multipart/alternative` (text/plain first, text/html last: the richer part last,
as RFC 2046 orders alternatives) and, with attachments, `multipart/mixed` around it with
each attachment as its own part carrying its content type and parameters (an invitation is
`text/calendar; method=REQUEST`). Without an HTML body the message is text/plain only.

`Message-ID` is stable per release and notice kind (`<itsm-bridge.<release>.<kind>@domain>`;
an early-life-support incident, which can happen many times, adds a digest of its
evidence): a notice sent again after a crash carries the same Message-ID, so mail clients
and archives can recognise the duplicate (delivery is at least once).
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import json
import re
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from itsm_bridge.models import Attachment

REPEATED_KINDS = frozenset({"els_incident"})
_UNSAFE_LOCAL = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_UNSAFE_DOMAIN = re.compile(r"[^A-Za-z0-9.-]+")


def message_id(release_id: str, kind: str, evidence: dict[str, Any], domain: str) -> str:
    """`<itsm-bridge.<release>.<kind>[.<digest>]@<domain>>`, the same for the same notice."""
    local = f"itsm-bridge.{release_id}.{kind}"
    if kind in REPEATED_KINDS:
        blob = json.dumps(evidence, sort_keys=True, default=str).encode()
        local += "." + hashlib.sha256(blob).hexdigest()[:16]
    local = re.sub(r"\.{2,}", ".", _UNSAFE_LOCAL.sub("-", local)).strip(".")
    host = _UNSAFE_DOMAIN.sub("-", domain).strip(".") or "localhost"
    return f"<{local}@{host}>"


def address_of(value: str) -> str:
    """The bare address of `Name <a@b>` (what the SMTP envelope carries)."""
    return email.utils.parseaddr(value)[1]


def domain_of(value: str) -> str:
    """The domain of an address (`releases@acme.com` -> `acme.com`)."""
    return address_of(value).rpartition("@")[2]


def recipients(
    stakeholders: list[str], to: list[str], cc: list[str]
) -> tuple[list[str], list[str]]:
    """(To, Cc): the stakeholders then the configured `to`, then `cc`; each address once
    (compared without case), Cc without anyone already in To."""
    seen: set[str] = set()

    def unique(values: list[str]) -> list[str]:
        kept = []
        for value in values:
            key = address_of(value).lower()
            if key and key not in seen:
                seen.add(key)
                kept.append(value.strip())
        return kept

    first = unique([*stakeholders, *to])
    return first, unique(cc)


def build_message(
    *,
    sender: str,
    to: list[str],
    cc: list[str],
    subject: str,
    text: str,
    html: str,
    attachments: list[Attachment],
    msgid: str,
    date: datetime,
    headers: dict[str, str],
) -> EmailMessage:
    """The message to send; `headers` adds informational ones (release id, notice kind)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = msgid
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(text or subject)
    if html:
        msg.add_alternative(html, subtype="html")
    for attachment in attachments:
        attach(msg, attachment)
    return msg


def attach(msg: EmailMessage, attachment: Attachment) -> None:
    """Add one attachment as its own MIME part, with its content type and parameters."""
    header: Any = email.policy.default.header_factory("Content-Type", attachment.content_type)
    params = {k: v for k, v in header.params.items() if k != "charset"}
    if header.maintype == "text":
        msg.add_attachment(
            attachment.content,
            subtype=header.subtype,
            charset=header.params.get("charset", "utf-8"),
            filename=attachment.filename,
            params=params,
        )
    else:
        msg.add_attachment(
            attachment.content.encode("utf-8"),
            maintype=header.maintype,
            subtype=header.subtype,
            filename=attachment.filename,
            params=params,
        )
