"""`check_connection`: one authenticated, cheap read, so `check-config --connect` can tell an
operator whether the site is reachable and the credentials work.

The request is `GET /rest/api/2/myself` ("Get current user", Jira Cloud REST v2 and Data
Center 9): it needs a logged-in user and returns that user, so a 200 proves the credentials
(`serverInfo` would not: it "can be accessed anonymously"). It goes through the `jira`
library's session without reading `serverInfo` first (`get_server_info=False`): one request,
one attempt (`max_retries=0`), at most 10 seconds. A 200 whose body is not a user (a login
page, a proxy) is a failure. Jira's own message is shown (Cloud answers a 401 in plain text),
never the token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from jira import JIRAError

from itsm_bridge.http import redact
from itsm_bridge.models import ConnectionCheck
from itsm_bridge_jira.client import JiraClient, jira_message

if TYPE_CHECKING:
    from itsm_bridge_jira.settings import Settings

SYSTEM = "jira"
CHECK_TIMEOUT = 10.0


def network_reason(exc: requests.RequestException) -> str:
    """The cause of a network failure without urllib3's wrapping."""
    cause = exc.args[0] if exc.args else exc
    cause = getattr(cause, "reason", None) or cause
    text = str(cause)
    if text.startswith("HTTP") and "): " in text:
        text = text.split("): ", 1)[1]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def check(client: JiraClient, config: Settings) -> ConnectionCheck:
    """Reach the site once with the configured credentials; never raises for HTTP faults."""
    timeout = min(CHECK_TIMEOUT, config.timeout_seconds)

    def answer(ok: bool, detail: str, status: int | None = None) -> ConnectionCheck:
        return ConnectionCheck(
            plugin=SYSTEM,
            system=SYSTEM,
            url=config.url,
            ok=ok,
            status=status,
            detail=redact(detail, config.token),
        )

    response: requests.Response | None
    try:
        jira = client.open(server_info=False, timeout=timeout)
        response = jira._session.get(f"{config.url}/rest/api/2/myself")
    except JIRAError as exc:
        response = exc.response
    except requests.Timeout:
        return answer(False, f"unreachable: no answer within {timeout:g} s")
    except requests.RequestException as exc:
        return answer(False, f"unreachable: {network_reason(exc)}")
    if response is None:
        return answer(False, "no answer from the site")
    status = response.status_code
    if status == 200:
        try:
            me = response.json()
        except ValueError:
            me = None
        if isinstance(me, dict) and (me.get("accountId") or me.get("name")):
            who = me.get("displayName") or me.get("emailAddress") or me.get("name")
            return answer(True, f"authenticated as {who}")
        return answer(
            False,
            "answered, but not as Jira's REST API (a login page or a proxy?); "
            "check plugins.jira.url",
            status,
        )
    message = jira_message(response)
    if status == 401:
        hint = "check plugins.jira.user and token" + (
            " (Cloud: the account e-mail and an API token)" if config.auth == "basic" else ""
        )
        return answer(False, f"{message}; {hint}", status)
    if status == 403:
        return answer(False, f"{message}; the account may not use the REST API", status)
    if status == 404:
        return answer(False, f"{message}; is plugins.jira.url a Jira site?", status)
    return answer(False, message or response.reason, status)
