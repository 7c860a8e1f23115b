"""The Jira REST client: the `jira` library's session, our retries, Jira's own error messages.

How the `jira` library (3.10) is used, and why:
- `JIRA(..., get_server_info=True)` reads `serverInfo` once, so the library (and we, through
  `deploymentType`) know Cloud from Data Center. The construction is lazy (the plugin is built
  when the configuration loads, before any network is wanted) and retried like any read.
- `max_retries=0`: the library's `ResilientSession` retries 429/503 **and connection errors on
  every method, POST included** (a lost answer to a create would create twice), waits
  `min(max_retry_delay=60, 2 x Retry-After) x uniform(0.5, 1.0)` (so it may come back before
  the server asked, and never waits more than 60 s), sleeps with `time.sleep`, and fails on a
  `Retry-After` given as an HTTP date. We retry ourselves (tenacity, `policy`): reads and
  idempotent writes only; `Retry-After` is honoured exactly, up to `max_retry_wait_seconds`;
  a longer ask ends the attempt with a transient error and the core retries the step later.
  Creates (issue, comment, version) are sent once: callers look the record up before trying
  again.
- Requests go through the library's session (its auth, headers and timeout) with our URLs:
  the library's own helpers would take a detour here and there (`create_version` sleeps a
  second, `add_remote_link` lists application links first, `create_issue` reads the issue
  back, the Cloud search goes to `/rest/api/2/search/jql`).

Search, per deployment:
- Cloud: `POST /rest/api/3/search/jql` ("Search for issues using JQL enhanced search", Jira
  Cloud REST v3, Issue search; Atlassian changelog CHANGE-2046 removed `/search`): the page
  token is `nextPageToken`, absent on the last page; there is no `total`; only `id` comes
  back unless `fields` names more, so every search names its fields; `maxResults` is a
  ceiling ("may return fewer items per page"), so a short page never ends the read.
- Data Center: `POST /rest/api/2/search` (Jira Server/Data Center REST 9, "Search for issues
  using JQL"): `startAt` advances by the issues received until `total`; the server may cap
  `maxResults` (`jira.search.views.default.max`).

Errors keep Jira's own words: `{"errorMessages": [...], "errors": {"field": "message"}}`
("Status codes", Jira Cloud REST intro; the same shape on Data Center), both parts shown;
a body that is not that JSON (Cloud's plain-text 401, a proxy page) is shown as text, cut.
The token never appears in a message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
import tenacity
from jira import JIRA, JIRAError

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import (
    USER_AGENT,
    HTTPRequestError,
    HTTPTransientError,
    call_with_retries,
    error_for,
    instrument,
    network_error,
    observe,
    redact,
    wait_retry_after,
)
from itsm_bridge_jira.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Issue = dict[str, Any]
CONNECT_TIMEOUT = 5.0


def jira_message(response: requests.Response | None) -> str:
    """Jira's own error text: every `errorMessages` entry, then `field: message` pairs."""
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(m) for m in body.get("errorMessages") or [] if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    for key in ("message", "errorMessage"):
        if not parts and body.get(key):
            parts.append(str(body[key]))
    return "; ".join(parts) or str(body)[:200]


class _AskedTooLong(tenacity.stop.stop_base):
    """Stop when the server asks for a longer wait than we are willing to sleep."""

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = getattr(exc, "retry_after", None)
        return asked is not None and float(asked) > self.max_wait


def policy(
    attempts: int, max_wait: float, sleep: Callable[[float], None] = time.sleep
) -> tenacity.Retrying:
    """Retries for reads and idempotent writes: transient errors only, `Retry-After` as asked
    (never shortened), exponential backoff with jitter otherwise."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(HTTPTransientError),
        wait=wait_retry_after(max_wait, tenacity.wait_exponential_jitter(initial=1, max=30)),
        stop=tenacity.stop_after_attempt(attempts) | _AskedTooLong(max_wait),
        sleep=sleep,
        reraise=True,
        before_sleep=lambda state: log.info(
            "jira: retrying after %s (attempt %d)",
            state.outcome.exception() if state.outcome else "?",
            state.attempt_number,
        ),
    )


class JiraClient:
    """One Jira site: lazily connected, every call typed into transient / needs a human /
    bad request, reads retried, creates sent once.

    Thread-safe: each thread connects its own `jira.JIRA` (and so its own session); every
    session reports to `http.set_observer`."""

    def __init__(
        self,
        config: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        factory: Callable[..., JIRA] = JIRA,
    ) -> None:
        self.config = config
        self.base_url = config.url
        self._factory = factory
        self._local = threading.local()
        self._project_id: str | None = None
        self.retry = policy(config.retries, config.max_retry_wait_seconds, sleep)

    # -- the library -----------------------------------------------------------------------
    def open(self, *, server_info: bool = True, timeout: float | None = None) -> JIRA:
        """A `jira.JIRA` on the site (one `serverInfo` read when `server_info`)."""
        read = timeout or self.config.timeout_seconds
        auth: dict[str, Any] = (
            {"token_auth": self.config.token.get_secret_value()}
            if self.config.auth == "bearer"
            else {"basic_auth": (self.config.user, self.config.token.get_secret_value())}
        )
        try:
            client = self._factory(
                server=self.base_url,
                get_server_info=server_info,
                max_retries=0,
                timeout=(min(CONNECT_TIMEOUT, read), read),
                options={"headers": {"User-Agent": USER_AGENT}},
                **auth,
            )
        except JIRAError as exc:  # the serverInfo read, made before the session is ours
            if server_info:
                observe("jira", str(exc.status_code) if exc.status_code else "error")
            raise
        except requests.RequestException:
            if server_info:
                observe("jira", "error")
            raise
        if server_info:
            observe("jira", "200")
        session = getattr(client, "_session", None)
        if isinstance(session, requests.Session):
            instrument(session, "jira")
        return client

    @property
    def jira(self) -> JIRA:
        """This thread's connected library client (reads `serverInfo` on its first use,
        retried)."""
        connected: JIRA | None = getattr(self._local, "jira", None)
        if connected is None:
            try:
                connected = self._local.jira = self.run("GET serverInfo", self.open)
            except (KeyError, TypeError, ValueError, HTTPRequestError) as exc:
                if isinstance(exc, HTTPRequestError) and exc.status != 502:
                    raise
                raise NeedsHuman(  # a 200 that is not Jira's serverInfo
                    f"GET serverInfo: {self.base_url} does not answer as a Jira site; "
                    "check plugins.jira.url"
                ) from None
        return connected

    @property
    def cloud(self) -> bool:
        """Jira Cloud (REST v3, `/search/jql`, ADF) rather than Data Center (v2, `/search`)."""
        if self.config.deployment != "auto":
            return self.config.deployment == "cloud"
        return bool(self.jira._is_cloud)

    @property
    def deployment(self) -> str:
        return "Cloud" if self.cloud else "Data Center"

    def browse_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    # -- calls -----------------------------------------------------------------------------
    def run(self, what: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        """`fn` (a library call) with Jira's errors typed; retried unless `retry` is False."""

        def once() -> T:
            try:
                return fn()
            except JIRAError as exc:
                if exc.response is None or exc.status_code is None:
                    text = f"{what}: {exc.text or 'no answer'}"
                    raise self._scrub(HTTPTransientError(text)) from None
                message = jira_message(exc.response)
                raise self._scrub(error_for(exc.response, message, what)) from None
            except requests.JSONDecodeError:
                raise HTTPRequestError(f"{what}: the answer is not JSON", 502) from None
            except requests.RequestException as exc:
                raise self._scrub(network_error(exc, what)) from None

        return call_with_retries(self.retry, once) if retry else once()

    def call(
        self,
        method: str,
        path: str,
        what: str = "",
        *,
        api: str = "2",
        params: dict[str, Any] | None = None,
        body: Any = None,
        retry: bool = True,
    ) -> Any:
        """One REST call on the library's session; the JSON answer (None when empty).

        `api` is "2", "3" (Cloud only) or "agile" (`/rest/agile/1.0`).
        """
        root = "/rest/agile/1.0" if api == "agile" else f"/rest/api/{api}"
        url = f"{self.base_url}{root}/{path}"
        what = what or f"{method} {root}/{path}"
        data = json.dumps(body) if body is not None else None

        def send() -> Any:
            response = self.jira._session.request(method, url, params=params, data=data)
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                text = " ".join(response.text.split())[:200]
                raise HTTPRequestError(f"{what}: the answer is not JSON: {text}", 502) from None

        return self.run(what, send, retry=retry)

    def _scrub(self, error: Exception) -> Exception:
        error.args = tuple(
            redact(arg, self.config.token) if isinstance(arg, str) else arg for arg in error.args
        )
        return error

    # -- search ----------------------------------------------------------------------------
    def search(
        self, jql: str, fields: Sequence[str], *, what: str = "search", limit: int | None = None
    ) -> list[Issue]:
        """Every issue matching `jql` (at most `limit`), with `fields` only, page by page."""
        if self.cloud:
            return self._search_cloud(jql, fields, what, limit)
        return self._search_data_center(jql, fields, what, limit)

    def _size(self, found: int, limit: int | None) -> int:
        size = self.config.page_size
        return size if limit is None else max(1, min(size, limit - found))

    def _search_cloud(
        self, jql: str, fields: Sequence[str], what: str, limit: int | None
    ) -> list[Issue]:
        found: list[Issue] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            body: dict[str, Any] = {
                "jql": jql,
                "fields": list(fields),
                "maxResults": self._size(len(found), limit),
            }
            if token:
                body["nextPageToken"] = token
            page = self.call("POST", "search/jql", what, api="3", body=body) or {}
            found += page.get("issues") or []
            token = page.get("nextPageToken")
            if limit is not None and len(found) >= limit:
                return found[:limit]
            if not token:
                return found
            if token in seen:
                raise HTTPRequestError(f"{what}: Jira sent the same page token twice", 502)
            seen.add(token)

    def _search_data_center(
        self, jql: str, fields: Sequence[str], what: str, limit: int | None
    ) -> list[Issue]:
        found: list[Issue] = []
        while True:
            body = {
                "jql": jql,
                "startAt": len(found),
                "maxResults": self._size(len(found), limit),
                "fields": list(fields),
            }
            page = self.call("POST", "search", what, body=body) or {}
            issues = page.get("issues") or []
            found += issues
            if limit is not None and len(found) >= limit:
                return found[:limit]
            total = page.get("total")
            if not issues or total is None or len(found) >= int(total):
                return found

    # -- the project -----------------------------------------------------------------------
    def project_id(self) -> str:
        """The configured project's id (read once)."""
        if self._project_id is None:
            key = self.config.project
            project = self.call("GET", f"project/{key}", f"GET project {key}")
            self._project_id = str(project["id"])
        return self._project_id


def quote(value: str) -> str:
    """A JQL string literal: double quotes, with `"` and `\\` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
