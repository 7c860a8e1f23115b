"""Alertmanager's API v2 (`/api/v2`, `api/v2/openapi.yaml`): reads retried, writes once.

Alertmanager's API has no authentication of its own (a reverse proxy may add some, which the
bridge does not speak: `check-config --connect` says so on a 401/403). Error answers are a
JSON string or plain text (`responses: BadRequest: schema: type: string`): the message is
that text. Each thread has its own `requests` session, instrumented for the outbound metrics.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from itsm_bridge.http import (
    USER_AGENT,
    HTTPRequestError,
    call_with_retries,
    error_for,
    instrument,
    network_error,
    retrying,
)

API = "/api/v2"
CONNECT_TIMEOUT = 5.0
Params = dict[str, Any] | list[tuple[str, str]]


def vendor_message(response: requests.Response) -> str:
    """Alertmanager's error text: a JSON string, or the body as it is."""
    text = (response.text or "").strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return " ".join(str(value).split())[:200]


class AlertmanagerClient:
    """`get` (retried on 429/5xx and network faults), `post` and `delete` (once)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = url.rstrip("/")
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self._retry = retrying(attempts=attempts, max_wait=max_wait, sleep=sleep)
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = instrument(requests.Session(), "alertmanager")
            session.headers["User-Agent"] = USER_AGENT
            session.headers["Accept"] = "application/json"
            self._local.session = session
        return session

    def url(self, path: str) -> str:
        return f"{self.base_url}{API}{path}"

    def probe(self, path: str, timeout: float) -> requests.Response:
        """One GET, not retried, raising only `requests` errors (for the connection check)."""
        return self.session.get(self.url(path), timeout=(min(CONNECT_TIMEOUT, timeout), timeout))

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(
                method, self.url(path), timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            raise network_error(exc, what) from None
        if response.status_code >= 300:
            raise error_for(response, vendor_message(response), what)
        return response

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise HTTPRequestError(
                f"{what}: the answer is not JSON (a proxy or a login page?); check "
                "plugins.alertmanager.url",
                502,
            ) from None

    def get(self, path: str, what: str, params: Params | None = None) -> Any:
        """The JSON at `/api/v2<path>`; retried."""

        def fetch() -> Any:
            return self._json(self._send("GET", path, what, params=params), what)

        return call_with_retries(self._retry, fetch)

    def post(self, path: str, what: str, body: Any) -> Any:
        """POST JSON once (a create is never retried here); the JSON answer."""
        return self._json(self._send("POST", path, what, json=body), what)

    def delete(self, path: str, what: str) -> int:
        """DELETE once; the status, 404 included (already gone)."""
        try:
            return self._send("DELETE", path, what).status_code
        except HTTPRequestError as exc:
            if exc.status == 404:
                return 404
            raise
