"""`check_connection`: one cheap authenticated read, so `itsm-bridge check-config --connect`
can tell an operator whether the instance is reachable and the credentials work.

The request (Table API, "Table - GET /now/table/{tableName}", ServiceNowDocs
markdown/api-reference/rest-apis/c_TableAPI.md, release australia)::

    GET /api/now/table/change_request?sysparm_limit=1&sysparm_fields=sys_id
        &sysparm_no_count=true&sysparm_suppress_pagination_header=true

`sysparm_limit=1` and `sysparm_fields=sys_id` keep the answer to one short row,
`sysparm_no_count=true` skips the `select count(*)` the Table API runs by default. The table is
`change_request`, the plugin's own, rather than the user's `sys_user` row: "the calling user
must have sufficient roles to access the data in the table", so a 200 proves both the
credentials and the read access the plugin needs, while `sys_user` read rights vary between
instances and the plugin never reads that table. A 200 with an empty `result` still counts:
the limit is applied before ACL evaluation, so a hidden first row gives an empty page.

One attempt (no retry), at most 10 seconds. A 200 whose body is not the Table API's JSON
(a single sign-on login page, a hibernating developer instance, a proxy) is a failure: the URL
does not reach the Table API. Errors use ServiceNow's own message
(`{"error": {"message", "detail"}}`) and never the password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from itsm_bridge.http import redact
from itsm_bridge.models import ConnectionCheck
from itsm_bridge_servicenow.client import ServiceNowClient, servicenow_message

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

SYSTEM = "servicenow"
CHECK_TABLE = "change_request"
CHECK_TIMEOUT = 10.0


def check(client: ServiceNowClient, config: Settings) -> ConnectionCheck:
    """Reach the instance once with the configured credentials; never raises for HTTP faults."""
    timeout = min(CHECK_TIMEOUT, config.timeout_seconds)

    def answer(ok: bool, detail: str, status: int | None = None) -> ConnectionCheck:
        text = redact(detail, config.password)
        return ConnectionCheck(
            plugin=SYSTEM, system=SYSTEM, url=config.url, ok=ok, status=status, detail=text
        )

    try:
        response = client.probe(CHECK_TABLE, timeout)
    except requests.Timeout:
        return answer(False, f"unreachable: no answer within {timeout:g} s")
    except requests.RequestException as exc:
        return answer(False, f"unreachable: {network_reason(exc)}")
    status = response.status_code
    if status == 200:
        if _is_table_answer(response):
            return answer(True, f"{CHECK_TABLE} readable")
        return answer(
            False,
            "answered, but not as the Table API (a login page, a hibernating instance or a "
            "proxy?); check plugins.servicenow.url",
            status,
        )
    message = servicenow_message(response)
    if status == 401:
        return answer(False, f"{message}; check plugins.servicenow.user/password", status)
    if status == 403:
        return answer(
            False, f"{message}; give {config.user} the roles to read {CHECK_TABLE}", status
        )
    if status == 404:
        return answer(False, f"{message}; is plugins.servicenow.url a ServiceNow instance?", status)
    return answer(False, message or response.reason, status)


def _is_table_answer(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("result"), list)


def network_reason(exc: requests.RequestException) -> str:
    """The cause of a network failure without urllib3's wrapping (`[Errno 111] ...`)."""
    cause = exc.args[0] if exc.args else exc
    cause = getattr(cause, "reason", None) or cause
    text = str(cause)
    if text.startswith("HTTP") and "): " in text:  # "HTTPConnection(host=..., port=...): ..."
        text = text.split("): ", 1)[1]
    return text.splitlines()[0][:300] if text else type(exc).__name__
