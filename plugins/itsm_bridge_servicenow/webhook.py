"""`POST /webhooks/servicenow`: change, change task and incident records pushed by the instance.

ServiceNow has no built-in outbound webhook for table records; the instance sends them with
an outbound REST call. Expected setup (the fast path; polling remains the safety net):

1. A REST Message (System Web Services > Outbound > REST Message) named `itsm-bridge`, with
   an HTTP method `post` to `https://<bridge>/webhooks/servicenow` and the header
   `Content-Type: application/json`; the token in a system property of type password2
   (here `itsm_bridge.webhook_token`) holding the value of `plugins.servicenow.webhook_token`.
2. An **async** business rule (after insert/update) on `change_request`, `change_task` and
   `incident`, filtered to the records the bridge made or follows (e.g. `correlation_display`
   is `itsm-bridge`, or `caused_by` is not empty), running::

       var body = {};
       ['sys_id', 'sys_class_name', 'number', 'state', 'close_code', 'close_notes',
        'correlation_id', 'sys_updated_on', 'sys_mod_count', 'caused_by', 'cmdb_ci',
        'priority', 'opened_at', 'short_description'].forEach(function (f) {
           if (current.isValidField(f)) body[f] = current.getValue(f);
       });
       var rm = new sn_ws.RESTMessageV2('itsm-bridge', 'post');
       rm.setRequestHeader('Authorization',
                           'Bearer ' + gs.getProperty('itsm_bridge.webhook_token'));
       rm.setRequestBody(JSON.stringify(body));
       rm.executeAsync();

   (`sn_ws.RESTMessageV2`, `setRequestHeader`, `setRequestBody`, `executeAsync`: "RESTMessageV2
   - Scoped, Global", ServiceNowDocs `markdown/api-reference/server-api-reference/
   c_RESTMessageV2API.md`; an async business rule keeps the user's transaction from waiting
   on the call.) A Flow Designer flow with a REST step sending the same JSON works as well.

Accepted bodies: a bare record or a Table API answer `{"result": record}`; field values as
plain strings or as `{"value", "display_value"}` objects (`sysparm_display_value=all`). The
table comes from `sys_class_name`. Answers: 401 for a missing or wrong token (compared in
constant time), 400 for a body that is not JSON, 422 for JSON that is not such a record.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.webhook_auth import require_bearer

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

SOURCE = "servicenow"
TABLES = frozenset({"change_request", "change_task", "incident"})
EXPECTED = "expected a change_request, change_task or incident record"


def _value(field: Any) -> str:
    """A field as a plain string, whether it came as a value or a {value, display_value}."""
    if isinstance(field, dict):
        field = field.get("value", "")
    return "" if field is None else str(field)


def _record(document: Any) -> dict[str, Any]:
    """The record in a body: the object itself, or its `result`."""
    if isinstance(document, dict) and isinstance(document.get("result"), dict):
        return dict(document["result"])
    if isinstance(document, dict):
        return document
    raise WebhookRejected(422, f"the body is JSON but not an object: {EXPECTED}")


def dedupe_key(table: str, record: dict[str, Any]) -> str:
    """`servicenow:<table>:<sys_id>:<version>`: the version is `sys_mod_count` (exact, one
    more per update), else `sys_updated_on` (to the second), else a digest of the record."""
    sys_id = _value(record.get("sys_id"))
    version = _value(record.get("sys_mod_count")) or _value(record.get("sys_updated_on"))
    if not version:
        canonical = json.dumps(record, sort_keys=True, default=str).encode()
        version = hashlib.sha256(canonical).hexdigest()[:16]
    return f"{SOURCE}:{table}:{sys_id}:{version}"


class Handler:
    """Authenticates a delivery and turns it into one inbox event."""

    def __init__(self, config: Settings) -> None:
        self.config = config

    def _authenticate(self, headers: dict[str, str]) -> None:
        key = "plugins.servicenow.webhook_token"
        require_bearer(headers, self.config.webhook_token, "ServiceNow", key)

    def __call__(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Authenticate, parse and return `[{"source", "kind", "dedupe_key", "payload"}]`
        (with `release_id` when the record carries the bridge's correlation id). `query` is
        not read: the token travels in the Authorization header."""
        self._authenticate(headers)
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(400, "the body is not JSON") from None
        record = _record(document)
        table = _value(record.get("sys_class_name"))
        if not table:
            raise WebhookRejected(422, f"sys_class_name is missing: {EXPECTED}")
        if table not in TABLES:
            raise WebhookRejected(
                422, f"sys_class_name {table[:60]!r} is not supported: {EXPECTED}"
            )
        if not _value(record.get("sys_id")):
            raise WebhookRejected(422, f"the {table} record has no sys_id")
        event: dict[str, Any] = {
            "source": SOURCE,
            "kind": table,
            "dedupe_key": dedupe_key(table, record),
            "payload": record,
        }
        correlation = _value(record.get("correlation_id"))
        if table in ("change_request", "change_task") and correlation.startswith("rel-"):
            event["release_id"] = correlation.split(":", 1)[0]  # "<release id>[:<task key>]"
        return [event]
