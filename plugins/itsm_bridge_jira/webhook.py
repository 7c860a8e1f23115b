"""`POST /webhooks/jira`: issue events from a Jira admin webhook, as `scope` inbox events.

Authentication: with `webhook_secret` set, the delivery must carry `X-Hub-Signature:
sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with the secret ("Managing webhooks",
Jira Data Center 10: "each request is signed via a Hash-based Message Authentication Code
(HMAC). The default for this algorithm is HMACSha256. The header X-Hub-Signature is defined
and contains the HMAC"; Jira Cloud "secure admin webhooks", WebSub `method=signature`). It is
checked over the bytes received, before any parsing, in constant time; a missing, malformed
or wrong signature is a 401 and nothing is stored. Without a secret (the contract's "when a
secret is set": Data Center before 10 cannot sign) deliveries are accepted unsigned, and a
signed one is refused, since it cannot be checked. Only admin webhooks (System > WebHooks,
or `/rest/webhooks/1.0/webhook`) are signed; webhooks of Connect or OAuth apps are not.

Deduplication: Jira Cloud retries a delivery answered 408, 409, 425, 429 or 5xx, or not at
all ("some webhooks might be delivered more than once"), with the same body and the same
`X-Atlassian-Webhook-Identifier` ("Identifies this delivery ... unchanged across retries")
and an `X-Atlassian-Webhook-Retry` count. The event's dedupe key is that identifier
(`jira:webhook:<id>`), so the inbox stores a retried delivery once; without the header (older
Data Center), `jira:<webhookEvent>:<issue id>:<timestamp>` from the body, equally stable
across retries of one delivery.

What is stored: for the configured project only, `jira:issue_created`, `jira:issue_deleted`,
and `jira:issue_updated` whose changelog touches the fix versions, summary or issue type (what
the release's scope and notes show), become one `scope` event: payload `key`, `id`, and
`versions`, the issue's fixVersion names plus those the change removed, so a release whose
version lost the issue is found too. Other deliveries are accepted (an empty list). Answers:
400 for a body that is not JSON, 422 for JSON that is not a webhook event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import WebhookRejected

if TYPE_CHECKING:
    from itsm_bridge_jira.settings import Settings

log = logging.getLogger(__name__)
SOURCE = "jira"
ISSUE_EVENTS = frozenset({"jira:issue_created", "jira:issue_updated", "jira:issue_deleted"})
SCOPE_FIELDS = frozenset({"fix version", "fixversions", "summary", "issuetype", "issue type"})


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _changed(changelog: Any) -> list[dict[str, Any]]:
    items = changelog.get("items") if isinstance(changelog, dict) else None
    return [i for i in items or [] if isinstance(i, dict)]


def _touches_scope(items: list[dict[str, Any]]) -> bool:
    names = {str(i.get(k) or "").casefold() for i in items for k in ("field", "fieldId")}
    return bool(names & SCOPE_FIELDS)


class Handler:
    """Authenticates a delivery and turns an issue event into at most one inbox event."""

    def __init__(self, config: Settings) -> None:
        self.config = config

    def _authenticate(self, headers: dict[str, str], body: bytes) -> None:
        given = headers.get("x-hub-signature", "").strip()
        secret = self.config.webhook_secret
        if secret is None or not secret.get_secret_value():
            if given:
                raise WebhookRejected(
                    401, "signed delivery but plugins.jira.webhook_secret is not set"
                )
            return
        if not given.lower().startswith("sha256="):
            raise WebhookRejected(401, "missing or malformed X-Hub-Signature (sha256=...)")
        expected = signature(secret.get_secret_value(), body)
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise WebhookRejected(401, "X-Hub-Signature does not match the body")

    def __call__(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Authenticate, parse and return `[]` or `[{source, kind: scope, dedupe_key,
        payload}]`. `query` is not read: the signature travels in a header."""
        lowered = {name.lower(): value for name, value in headers.items()}
        self._authenticate(lowered, body)
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(400, "the body is not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("webhookEvent"), str):
            raise WebhookRejected(422, "expected a Jira webhook event (webhookEvent)")
        event = document["webhookEvent"]
        issue = document.get("issue")
        if event not in ISSUE_EVENTS:
            return []
        if not isinstance(issue, dict) or not issue.get("key") or not issue.get("id"):
            raise WebhookRejected(422, f"{event[:60]} without an issue key and id")
        fields: dict[str, Any] = issue["fields"] if isinstance(issue.get("fields"), dict) else {}
        project = str((fields.get("project") or {}).get("key") or str(issue["key"]).split("-")[0])
        items = _changed(document.get("changelog"))
        if project != self.config.project:
            return []
        if event == "jira:issue_updated" and not _touches_scope(items):
            return []
        versions = [str(v.get("name")) for v in fields.get("fixVersions") or [] if v.get("name")]
        versions += [
            str(i["fromString"])
            for i in items
            if str(i.get("field") or "").casefold() == "fix version" and i.get("fromString")
        ]
        identifier = lowered.get("x-atlassian-webhook-identifier", "").strip()
        key = (
            f"jira:webhook:{identifier}"
            if identifier
            else f"jira:{event}:{issue['id']}:{document.get('timestamp', '')}"
        )
        return [
            {
                "source": SOURCE,
                "kind": "scope",
                "dedupe_key": key,
                "payload": {
                    "key": str(issue["key"]),
                    "id": str(issue["id"]),
                    "versions": list(dict.fromkeys(versions)),
                    "event": event,
                },
            }
        ]
