"""The ServiceNow REST client: the Table API through pysnow 0.7, plus the few calls pysnow
cannot make well. Everything else in the plugin talks to ServiceNow through this class.

pysnow 0.7 traits this module designs around (so the rest of the plugin need not know them):
- a resource shares its query parameters between requests: a fresh resource per call;
- `update()` costs a GET and a PUT: we write by sys_id with one PATCH on pysnow's session;
- no `Link` following and no retry: we follow `Link` and retry ourselves (see Paging);
- a 4xx/5xx raises `HTTPError` before ServiceNow's error body is read: we read
  `response.json()["error"]` so users see ServiceNow's own message;
- it pins an old pytz: our code uses `zoneinfo` only.

Dates in queries are plain UTC `YYYY-MM-DD HH:MM:SS`; the integration user's time zone must
be UTC (the Table API reads and writes date-times in the user's zone).

Paging ("Table API", ServiceNowDocs `markdown/api-reference/rest-apis/c_TableAPI.md`, GET
/now/table/{tableName}): `sysparm_limit` "is applied before ACL evaluation", so a page may
hold fewer rows than asked for, or none, while more rows follow. A short page therefore never
ends a read: the client follows the `Link` response header's `rel="next"` entry (documented
as `<url>;rel="next"`, next to `prev`, `first` and `last`, in no order we rely on) and stops
when the header has no `next`. Only `sysparm_offset` is taken from that URL; the request is
ours (same host, parameters and retries). `sysparm_suppress_pagination_header` is `false`.
An answer without a `Link` header (a proxy that strips it) falls back to `X-Total-Count`,
and without that to the old rule (a short page is the last).

Values inside encoded queries go through `escape` (see there); a CI or record configured by
name may also be given as a 32-hex sys_id (`by_name_or_sys_id`).

Creates do not go through pysnow either: pysnow sends its whole parameter set (an empty
`sysparm_query`, `sysparm_limit=10000` ...) with every POST, and a resource reused after a read
would carry that read's query. A create here is one bare POST (`sysparm_exclude_reference_link`
and `sysparm_fields` only), never retried: the caller looks the record up before trying again.

Many creates at once (`create_many`) go through the Batch API (`batch.py`): one request per
`batch_size` rows, never retried either. An instance without it (the batch URL answers 400
"Requested URI does not represent any resource" or 404) gets one POST per row instead, and the
client remembers that for its lifetime (`batch_api` becomes False).

Errors keep ServiceNow's own message (`{"error": {"message", "detail"}, "status": "failure"}`,
"Table API", docs.servicenow.com) and never the password. A 403 whose message is
"Operation Failed" is a business rule or data policy refusing the write, not a permission
problem, and says so.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pysnow
import requests
from pydantic import SecretStr

from itsm_bridge.http import (
    USER_AGENT,
    HTTPNeedsHuman,
    HTTPRequestError,
    call_with_retries,
    check_base_url,
    error_for,
    instrument,
    network_error,
    redact,
    retrying,
)
from itsm_bridge_servicenow import batch
from itsm_bridge_servicenow.choices import Choices

log = logging.getLogger(__name__)
Record = dict[str, Any]
SN_DATETIME = "%Y-%m-%d %H:%M:%S"


def check_instance_url(value: str) -> str:
    """A ServiceNow instance URL; see `check_base_url`."""
    return check_base_url(
        value,
        "the instance URL",
        "https://acme.service-now.com",
        "plugins.servicenow.user and password",
    )


def sn_datetime(value: datetime) -> str:
    """A timezone-aware instant as ServiceNow's UTC `YYYY-MM-DD HH:MM:SS`."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime(SN_DATETIME)


def parse_sn_datetime(value: str) -> datetime | None:
    """ServiceNow's `YYYY-MM-DD HH:MM:SS` (UTC for the integration user) as an aware instant."""
    if not value:
        return None
    return datetime.strptime(value, SN_DATETIME).replace(tzinfo=UTC)


def reference(value: Any) -> str:
    """The sys_id of a reference field, whether it came as a string or as {link, value}."""
    if isinstance(value, dict):
        return str(value.get("value") or "")
    return str(value or "")


def servicenow_message(response: requests.Response) -> str:
    """ServiceNow's own error text: `{"error": {"message", "detail"}, "status": "failure"}`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):  # not ServiceNow's shape (a proxy, a router): as given
        return str(error or body)[:200]
    message, detail = error.get("message") or "", error.get("detail") or ""
    return f"{message}: {detail}" if detail else message


class ServiceNowClient:
    """Table API reads (paged, narrowed, retried), creates (never retried), PATCH updates.

    Thread-safe: each thread has its own session and pysnow client (pysnow resources share
    state with their client); every session reports to `http.set_observer`."""

    def __init__(
        self,
        url: str,
        user: str,
        password: SecretStr,
        *,
        timeout: float = 30.0,
        page_size: int = 100,
        attempts: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        batch_size: int = batch.BATCH_SIZE,
        choices: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        try:
            parts = urlsplit(check_instance_url(url))
        except ValueError as exc:
            raise ValueError(f"not an instance URL: {exc}") from None
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.page_size = page_size
        self.batch_size = max(batch_size, 1)
        #: None until the Batch API has answered; False once the instance showed it has none.
        self.batch_api: bool | None = None
        self._retry = retrying(attempts=attempts, max_wait=max_wait, sleep=sleep)
        self._netloc, self._ssl = parts.netloc, parts.scheme == "https"
        self._user = user
        self._secret = password
        self._local = threading.local()
        #: Choice values of this instance (`sys_choice`), read once each (see choices.py).
        self.choices = Choices(self, choices)

    @property
    def _pysnow(self) -> pysnow.Client:
        """This thread's pysnow client, on this thread's session (made on first use)."""
        client: pysnow.Client | None = getattr(self._local, "pysnow", None)
        if client is None:
            session = instrument(requests.Session(), "servicenow")
            session.auth = (self._user, self._secret.get_secret_value())
            client = pysnow.Client(host=self._netloc, use_ssl=self._ssl, session=session)
            client.session.headers["User-Agent"] = USER_AGENT
            self._local.pysnow = client
        return client

    @property
    def session(self) -> requests.Session:
        """This thread's session (the one its pysnow client uses)."""
        session: requests.Session = self._pysnow.session
        return session

    # -- Table API -----------------------------------------------------------------------
    def _resource(self, table: str) -> Any:
        """A fresh pysnow resource (pysnow carries parameters across calls on one)."""
        return self._pysnow.resource(api_path=f"/table/{table}", timeout=self.timeout)

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except requests.HTTPError as exc:
            if exc.response is None:
                raise self._scrub(network_error(exc, what)) from None
            raise self._error(exc.response, what) from None
        except pysnow.exceptions.ResponseError as exc:
            raise self._scrub(error_for_body(what, exc)) from None
        except requests.RequestException as exc:
            raise self._scrub(network_error(exc, what)) from None

    def _error(self, response: requests.Response, what: str) -> Exception:
        """The typed error for a failed answer, with ServiceNow's message and no secret."""
        message = servicenow_message(response)
        if response.status_code == 403 and message.startswith("Operation Failed"):
            text = f"{what}: HTTP 403: {message}".strip()
            return self._scrub(
                HTTPNeedsHuman(f"{text} (refused by a business rule or data policy)", 403)
            )
        return self._scrub(error_for(response, message, what))

    def _scrub(self, error: Exception) -> Exception:
        """`error` with the password replaced by *** wherever it appears in the message."""
        error.args = tuple(
            redact(arg, self._secret) if isinstance(arg, str) else arg for arg in error.args
        )
        return error

    def query(
        self,
        table: str,
        query: str,
        fields: Sequence[str],
        *,
        limit: int | None = None,
    ) -> list[Record]:
        """Every record matching the encoded query (at most `limit`), `fields` only.

        Page by page, following `Link: <...>;rel="next"` (see the module docstring): a short
        or empty page does not end the read while the instance says a next page exists.
        """
        found: list[Record] = []
        offset = 0
        while True:
            size = self.page_size if limit is None else min(self.page_size, limit - len(found))
            page, after = self._page(table, query, fields, size, offset)
            found += page
            if limit is not None and len(found) >= limit:
                return found[:limit]
            if after is None or after <= offset:  # the last page (or a Link going backwards)
                return found
            offset = after

    def _page(
        self, table: str, query: str, fields: Sequence[str], size: int, offset: int
    ) -> tuple[list[Record], int | None]:
        """One page of rows and the offset of the next page (None: this was the last)."""

        def fetch() -> tuple[list[Record], int | None]:
            resource = self._resource(table)
            # pysnow would send its booleans as "True"/"False": the documented values are
            # lowercase, so they go as custom parameters (which override pysnow's own). The
            # Link header is what paging follows: never suppressed.
            resource.parameters.add_custom(
                {
                    "sysparm_exclude_reference_link": "true",
                    "sysparm_suppress_pagination_header": "false",
                    "sysparm_display_value": "false",
                }
            )
            response = resource.get(query=query, fields=list(fields), limit=size, offset=offset)
            rows = list(response.all())
            return rows, next_offset(response.headers, offset, size, len(rows))

        what = f"GET {table}"
        result: tuple[list[Record], int | None] = call_with_retries(
            self._retry, lambda: self._run(what, fetch)
        )
        return result

    def get(self, table: str, sys_id: str, fields: Sequence[str]) -> Record | None:
        """One record by sys_id, or None when it does not exist."""
        rows = self.query(table, f"sys_id={sys_id}", fields, limit=1)
        return rows[0] if rows else None

    def create(self, table: str, payload: Record, fields: Sequence[str] = ()) -> Record:
        """Insert one record (one POST). Never retried: the caller looks it up before retrying."""
        url = f"{self.base_url}/api/now/table/{table}"
        params = {"sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        result = self.call("POST", url, f"POST {table}", retry=False, json=payload, params=params)
        return dict(result)

    def create_many(
        self, table: str, payloads: Sequence[Record], fields: Sequence[str] = ()
    ) -> list[Record]:
        """Insert many records through the Batch API, `batch_size` per request; the created
        records come back in the order of `payloads`.

        Never retried: a batch of creates sent twice would create every row twice, so the
        caller looks the rows up before trying again. The first batch with a failed or
        unserviced item raises (later batches are not sent): ServiceNow's message for a 4xx
        item, a transient error for a 429/5xx item or an unserviced one; rows of that batch
        that were created stay created. Without a Batch API on the instance: `create` per row.
        """
        created: list[Record] = []
        for start in range(0, len(payloads), self.batch_size):
            chunk = payloads[start : start + self.batch_size]
            rows = self._create_batch(table, chunk, fields) if self.batch_api is not False else None
            if rows is None:
                rows = [self.create(table, payload, fields) for payload in chunk]
            created += rows
        return created

    def _create_batch(
        self, table: str, payloads: Sequence[Record], fields: Sequence[str]
    ) -> list[Record] | None:
        """One Batch API request of creates; None when the instance has no Batch API."""
        what = f"POST {table} (batch of {len(payloads)})"
        body = batch.request_body(
            uuid.uuid4().hex, "POST", batch.table_url(table, fields), payloads
        )
        url = f"{self.base_url}{batch.BATCH_PATH}"
        try:
            response = self.session.post(url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise self._scrub(network_error(exc, what)) from None
        if response.status_code >= 400:
            if batch.no_batch_api(response, servicenow_message(response)):
                log.info("servicenow: no Batch API on the instance; one POST per record")
                self.batch_api = False
                return None
            raise self._error(response, what)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise self._scrub(
                HTTPRequestError(f"{what}: answer is not a batch: {response.text[:200]}", 502)
            )
        self.batch_api = True
        return batch.created_rows(table, answer, len(payloads), self._error)

    def update(
        self, table: str, sys_id: str, payload: Record, fields: Sequence[str] = ()
    ) -> Record:
        """One PATCH by sys_id (idempotent, so retried)."""
        url = f"{self.base_url}/api/now/table/{table}/{sys_id}"
        params = {"sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        return dict(self.call("PATCH", url, f"PATCH {table}", json=payload, params=params))

    # -- other APIs ----------------------------------------------------------------------
    def call(self, method: str, url: str, what: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """A request on pysnow's session; returns the `result` of the JSON body.

        Retried on transient errors unless `retry` is False (creates: one attempt only).
        """

        def send() -> Any:
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                raise self._scrub(network_error(exc, what)) from None
            if response.status_code >= 400:
                raise self._error(response, what)
            if not response.content:
                return {}
            try:
                body = response.json()
            except ValueError:
                raise self._scrub(
                    HTTPRequestError(f"{what}: answer is not JSON: {response.text[:200]}", 502)
                ) from None
            return body.get("result", {}) if isinstance(body, dict) else body

        if not retry:
            return send()
        return call_with_retries(self._retry, send)

    def api(self, method: str, path: str, what: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """A call to a scripted or product REST API under /api (e.g. sn_chg_rest)."""
        return self.call(method, f"{self.base_url}{path}", what, retry=retry, **kwargs)

    def probe(self, table: str, timeout: float) -> requests.Response:
        """One GET of at most one row of `table` (sys_id only, no count), never retried, for
        `check_connection`: the raw answer, whatever its status; network faults raise."""
        params = {
            "sysparm_limit": "1",
            "sysparm_fields": "sys_id",
            "sysparm_no_count": "true",
            "sysparm_suppress_pagination_header": "true",
        }
        url = f"{self.base_url}/api/now/table/{table}"
        return self.session.get(url, params=params, timeout=timeout)


def next_offset(headers: Mapping[str, str], offset: int, size: int, count: int) -> int | None:
    """Where the next page starts, from a Table API answer's headers; None after the last.

    `Link` decides when present (its `rel="next"` URL's `sysparm_offset`, else no next page);
    without it `X-Total-Count`; without both, a page shorter than `size` is the last.
    """
    link = headers.get("Link")
    if link is not None:
        for item in requests.utils.parse_header_links(link):
            if item.get("rel") == "next":
                query = parse_qs(urlsplit(item.get("url", "")).query)
                try:
                    return int(query["sysparm_offset"][0])
                except (KeyError, IndexError, ValueError):
                    return offset + size
        return None
    total = headers.get("X-Total-Count")
    if total is not None and total.isdigit():
        return offset + size if offset + size < int(total) else None
    return offset + size if count >= size else None


def error_for_body(what: str, exc: Exception) -> Exception:
    """pysnow's ResponseError (an `error` object in a 2xx body) as a request error."""
    return HTTPRequestError(f"{what}: {exc}", 400)
