"""Chat: Slack incoming webhooks and Microsoft Teams webhooks (Workflows), over `requests`.

Slack (docs.slack.dev, "Sending messages using incoming webhooks"): POST JSON with `text`
(the notification fallback) and `blocks` (Block Kit: a `header`, at most 150 characters of
plain text; `section`s of mrkdwn, at most 3000 characters each; a `context` line; at most 50
blocks). Slack answers 200 `ok`; 400 `invalid_payload`, 403 `action_prohibited`, 404
`channel_not_found`, 410 `channel_is_archived` (permanent), 429 with `Retry-After` seconds,
500 `rollup_error` (transient).

Teams (learn.microsoft.com, "Create incoming webhooks with Workflows", and "Send Adaptive
Cards using an incoming webhook"): POST `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <AdaptiveCard>}]}`.
The same envelope is accepted by a Workflows webhook ("When a Teams webhook request is
received"; it answers 202) and by a legacy Office 365 connector URL (it answers 200 `1`, and
reports throttling inside a 200 body: "Microsoft Teams endpoint returned HTTP error 429").
The legacy MessageCard format is not sent: Workflows document Adaptive Cards only, and the
connectors that took MessageCards are retired. A card is at most 28 KB.

A webhook URL is a credential: a detail names the host only, never the URL or its path.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from pydantic import SecretStr

from itsm_bridge.http import USER_AGENT, retry_after_seconds
from itsm_bridge_notify.delivery import DeliveryError
from itsm_bridge_notify.templates import mrkdwn

CONNECT_TIMEOUT = 5.0
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_MAX_BLOCKS = 50
TEAMS_MAX_BYTES = 28_000
TEAMS_CARD_VERSION = "1.4"
TEAMS_LEGACY_THROTTLED = "Microsoft Teams endpoint returned HTTP error 429"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ELLIPSIS = "\u2026"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def chunks(text: str, size: int, most: int) -> list[str]:
    """`text` in at most `most` pieces of at most `size` characters, split between lines
    where it can; the last piece ends with an ellipsis when text had to be left out."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > size:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:size])
            line = line[size:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > size:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        pieces.append(current)
    pieces = [p for p in pieces if p.strip()]
    if len(pieces) > most:
        pieces = pieces[:most]
        pieces[-1] = pieces[-1][: size - 1] + ELLIPSIS
    return pieces


def slack_payload(heading: str, body: str, facts: list[tuple[str, str]]) -> dict[str, Any]:
    """`text` (the fallback shown in notifications) and `blocks` (header, sections, context)."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(heading, SLACK_HEADER_MAX), "emoji": True},
        }
    ]
    for piece in chunks(body, SLACK_SECTION_MAX, SLACK_MAX_BLOCKS - 2):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": piece}})
    line = " \u00b7 ".join(f"{name}: {value}" for name, value in facts if value)
    if line:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    return {"text": mrkdwn(heading), "blocks": blocks}


def teams_payload(
    heading: str, body: str, facts: list[tuple[str, str]], link: str | None
) -> dict[str, Any]:
    """A message with one Adaptive Card attachment (heading, text, facts, a link)."""

    def envelope(text: str) -> dict[str, Any]:
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": TEAMS_CARD_VERSION,
            "body": [
                {
                    "type": "TextBlock",
                    "text": heading,
                    "weight": "Bolder",
                    "size": "Medium",
                    "wrap": True,
                }
            ],
            "msteams": {"width": "Full"},
        }
        if text:
            card["body"].append({"type": "TextBlock", "text": text, "wrap": True})
        shown = [{"title": name, "value": value} for name, value in facts if value]
        if shown:
            card["body"].append({"type": "FactSet", "facts": shown})
        if link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the change", "url": link}]
        return {
            "type": "message",
            "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
        }

    payload = envelope(body)
    excess = len(json.dumps(payload).encode()) - TEAMS_MAX_BYTES
    while excess > 0 and body:
        body = _cut(body, max(1, len(body) - excess - 16))
        payload = envelope(body)
        excess = len(json.dumps(payload).encode()) - TEAMS_MAX_BYTES
    return payload


class ChatSender:
    """Posts to one webhook; one call is one attempt, on its own session (notices are rare,
    and the daemon may advance several releases at once: nothing shared between threads)."""

    def __init__(self, channel: str, url: SecretStr, timeout: float) -> None:
        self.channel = channel
        self._url = url
        self.host = urlsplit(url.get_secret_value()).hostname or "?"
        self.timeout = timeout

    @property
    def target(self) -> str:
        """The webhook as a delivery names it: the host, the credential path left out."""
        return f"https://{self.host}/\u2026"

    def post(self, payload: dict[str, Any]) -> str:
        """One POST; a short detail on success, `DeliveryError` otherwise."""
        try:
            with requests.Session() as session:
                response = session.post(
                    self._url.get_secret_value(),
                    json=payload,
                    headers={"User-Agent": USER_AGENT},
                    timeout=(CONNECT_TIMEOUT, self.timeout),
                    allow_redirects=False,
                )
        except requests.Timeout:
            raise DeliveryError(
                f"{self.host}: no answer within {self.timeout:g} s", transient=True
            ) from None
        except requests.RequestException as exc:  # its message holds the URL: left out
            raise DeliveryError(
                f"{self.host} unreachable: {type(exc).__name__}", transient=True
            ) from None
        status = response.status_code
        answer = self._answer(response)
        if status == 429:
            raise DeliveryError(
                f"{self.host}: HTTP 429 rate limited",
                transient=True,
                retry_after=retry_after_seconds(response),
            )
        if status in (408, 425) or status >= 500:
            raise DeliveryError(f"{self.host}: HTTP {status} {answer}".rstrip(), transient=True)
        if status >= 300:
            raise DeliveryError(f"{self.host}: HTTP {status} {answer}".rstrip(), transient=False)
        if self.channel == "teams" and TEAMS_LEGACY_THROTTLED in response.text:
            raise DeliveryError(f"{self.host}: throttled (HTTP 429 in the answer)", transient=True)
        return f"HTTP {status}"

    def _answer(self, response: requests.Response) -> str:
        """The service's own words (Slack's `invalid_payload`), short, without the URL."""
        text = " ".join(response.text.split())[:200]
        secret = self._url.get_secret_value()
        parts = urlsplit(secret)
        values = [secret, parts.path, *(v for _, v in parse_qsl(parts.query) if len(v) >= 6)]
        for value in values:
            if value and value != "/":
                text = text.replace(value, "***")
        return text
