"""The Jenkins remote access API client: a `requests` session per thread, timeouts, retried
reads, a trigger that is never retried, crumbs when the server asks for them. Everything else
in the plugin talks to Jenkins through this class.

Vendor facts this module builds on ("Remote access API", jenkins.io / wiki.jenkins.io;
Jenkins core sources; python-jenkins 1.8 `jenkins/__init__.py`):

- Every object has `.../api/json`; `tree=` names the fields to return (sub-fields in square
  brackets, ranges such as `builds[number]{0,50}`), so answers stay small. A job is
  `/job/<a>/job/<b>/` for folder `a`, job `b` (CloudBees Folder; python-jenkins'
  `_get_job_folder`); each name is URL-quoted.
- `POST /job/.../buildWithParameters` answers `201 Created` with `Location:
  <root>/queue/item/<id>/` (Jenkins >= 1.519, JENKINS-23235); the queue item is followed to
  the build. The trigger is a create: never retried here (the caller looks again first).
- Authentication is HTTP Basic with the user's API token. CSRF: "a crumb is no longer
  required when authenticating using an API token" (Jenkins >= 2.96 weekly / 2.107 LTS,
  "CSRF Protection Explained", CloudBees KB). With a password instead, a POST answers 403
  `No valid crumb was included in the request` (`CrumbFilter`); the client then fetches
  `/crumbIssuer/api/json` (`{"crumbRequestField": "Jenkins-Crumb", "crumb": "..."}`), sends
  it on every later POST of this session and resends the refused POST once (the filter
  refuses before anything runs, so resending is safe). Since Jenkins 2.176.2 a crumb is valid
  only in the web session it was issued in: the session keeps its cookies. A crumb refused
  again (the web session expired) is fetched once more per POST; a 404 from the crumb issuer
  means CSRF protection is off and the 403 stands.
- Errors are Jetty/Jenkins HTML pages (`<h2>HTTP ERROR 404 Not Found</h2>`, or a `<title>`):
  the message is read from them; never the token.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from html import unescape
from typing import Any
from urllib.parse import quote, unquote, urlsplit

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

log = logging.getLogger(__name__)

CRUMB_PATH = "/crumbIssuer/api/json"
NO_CRUMB = "No valid crumb"
CONNECT_TIMEOUT = 5.0
_QUEUE_ITEM = re.compile(r"/queue/item/(\d+)/?$")


def check_jenkins_url(value: str) -> str:
    """A Jenkins root URL (a path such as `/jenkins` is kept); see `check_base_url`."""
    return check_base_url(
        value, "the Jenkins root URL", "https://ci.acme.com", "plugins.jenkins.user and token"
    )


def job_path(job: str) -> str:
    """`payments/build` -> `/job/payments/job/build/` (each name URL-quoted)."""
    names = [name for name in job.strip("/").split("/") if name]
    if not names:
        raise ValueError("a job name is empty")
    return "".join(f"/job/{quote(name, safe='')}" for name in names) + "/"


def job_from_url(url: str) -> str | None:
    """The full name of the job a Jenkins URL points into (`.../job/a/job/b/7/` -> `a/b`)."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    names: list[str] = []
    index = 0
    while index < len(segments):
        if segments[index] == "job" and index + 1 < len(segments):
            names.append(unquote(segments[index + 1]))
            index += 2
        elif names:
            break
        else:
            index += 1
    return "/".join(names) or None


def queue_id_from(location: str | None) -> int | None:
    """The id in a `Location: <root>/queue/item/<id>/` header, else None."""
    match = _QUEUE_ITEM.search(location or "")
    return int(match.group(1)) if match else None


def jenkins_message(response: requests.Response) -> str:
    """Jenkins' own error text from its HTML (or plain) error page."""
    text = response.text or ""
    for pattern in (r"<h2>HTTP ERROR \d+ (.*?)</h2>", r"<title>(?:Error \d+ )?(.*?)</title>"):
        match = re.search(pattern, text, re.S | re.I)
        if match and match.group(1).strip() and match.group(1).strip() != "Jenkins":
            return unescape(match.group(1).strip())[:200]
    if "<h1>Not Found</h1>" in text:
        return "Not Found"
    plain = re.sub(r"<[^>]+>", " ", text)
    return " ".join(unescape(plain).split())[:200]


class JenkinsClient:
    """Reads (retried, narrowed with `tree=`) and the build trigger (once).

    Thread-safe: each thread has its own session (with its own cookies, so its own Jenkins
    web session) and its own crumb; every session reports to `http.set_observer`."""

    def __init__(
        self,
        url: str,
        user: str,
        token: SecretStr,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            self.base_url = check_jenkins_url(url)
        except ValueError as exc:
            raise ValueError(f"not a Jenkins URL: {exc}") from None
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self._user = user
        self._secret = token
        self._retry = retrying(attempts=attempts, max_wait=max_wait, sleep=sleep)
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """This thread's session (made on first use): it keeps the web session's cookies,
        which a crumb belongs to."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = instrument(requests.Session(), "jenkins")
            session.auth = (self._user, self._secret.get_secret_value())
            session.headers["User-Agent"] = USER_AGENT
            session.headers["Accept"] = "application/json"
            self._local.session = session
        return session

    @property
    def crumb(self) -> dict[str, str] | None:
        """The crumb header of this thread's session, once Jenkins asked for one."""
        return getattr(self._local, "crumb", None)

    @crumb.setter
    def crumb(self, value: dict[str, str] | None) -> None:
        self._local.crumb = value

    def url(self, path: str) -> str:
        """An absolute URL for a path under the root (`/queue/api/json`)."""
        return self.base_url + path

    def job_url(self, job: str) -> str:
        return self.base_url + job_path(job)

    # -- reads ---------------------------------------------------------------------------
    def get_json(
        self,
        url: str,
        what: str,
        *,
        tree: str | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON at `url` (retried on 429/5xx and network faults). A 404 is None when
        `missing_ok`, else an error naming `what`."""

        def fetch() -> Any:
            params = {"tree": tree} if tree else None
            try:
                response = self.session.get(url, params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                raise self._scrub(network_error(exc, what)) from None
            if response.status_code == 404 and missing_ok:
                return None
            if response.status_code >= 400:
                raise self._error(response, what)
            try:
                return response.json()
            except ValueError:
                raise self._scrub(
                    HTTPRequestError(
                        f"{what}: the answer is not JSON (a login page or a proxy?): "
                        f"{jenkins_message(response)[:120]}; check plugins.jenkins.url",
                        502,
                    )
                ) from None

        return call_with_retries(self._retry, fetch)

    # -- the one write -------------------------------------------------------------------
    def post_form(self, url: str, what: str, data: Mapping[str, str]) -> requests.Response:
        """One POST of form fields, never retried (a trigger is a create). A 403 "No valid
        crumb" gets a crumb for this session and the same POST once more (see the module
        docstring). Raises the typed error for any 4xx/5xx; redirects are not followed."""
        response = self._post(url, what, data)
        if response.status_code == 403 and NO_CRUMB in response.text:
            sent = self.crumb
            self.crumb = self._fetch_crumb()
            if self.crumb is not None:
                log.info(
                    "jenkins: %s crumb for this session (Jenkins asked for one)",
                    "renewed the" if sent else "fetched a",
                )
                response = self._post(url, what, data)
        if response.status_code >= 400:
            raise self._error(response, what)
        return response

    def _post(self, url: str, what: str, data: Mapping[str, str]) -> requests.Response:
        try:
            return self.session.post(
                url,
                data=dict(data),
                headers=dict(self.crumb or {}),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._scrub(network_error(exc, what)) from None

    def _fetch_crumb(self) -> dict[str, str] | None:
        """The crumb header from `/crumbIssuer/api/json`; None when the issuer is absent."""
        body = self.get_json(
            self.url(CRUMB_PATH),
            "GET crumbIssuer",
            tree="crumb,crumbRequestField",
            missing_ok=True,
        )
        if not isinstance(body, dict) or not body.get("crumb"):
            return None
        return {str(body.get("crumbRequestField") or "Jenkins-Crumb"): str(body["crumb"])}

    # -- check_connection --------------------------------------------------------------------
    def probe(self, path: str, timeout: float, tree: str | None = None) -> requests.Response:
        """One GET, never retried, whatever its status (network faults raise)."""
        params = {"tree": tree} if tree else None
        return self.session.get(
            self.url(path), params=params, timeout=(min(CONNECT_TIMEOUT, timeout), timeout)
        )

    # -- errors --------------------------------------------------------------------------
    def _error(self, response: requests.Response, what: str) -> Exception:
        """The typed error for a failed answer, with Jenkins' message and no secret."""
        message = jenkins_message(response)
        if response.status_code == 403 and NO_CRUMB in response.text:
            return self._scrub(
                HTTPNeedsHuman(
                    f"{what}: HTTP 403: {message} (use an API token as plugins.jenkins.token: "
                    "it needs no crumb)",
                    403,
                )
            )
        return self._scrub(error_for(response, message, what))

    def _scrub(self, error: Exception) -> Exception:
        """`error` with the token replaced by *** wherever it appears in the message."""
        error.args = tuple(
            redact(arg, self._secret) if isinstance(arg, str) else arg for arg in error.args
        )
        return error


def parameters_of(document: Mapping[str, Any]) -> dict[str, str]:
    """The parameters of a build or queue item: `actions[].parameters[] = {name, value}`
    (`hudson.model.ParametersAction`). Values that are not strings are dumped as JSON."""
    found: dict[str, str] = {}
    for action in document.get("actions") or []:
        if not isinstance(action, dict):
            continue
        for parameter in action.get("parameters") or []:
            if isinstance(parameter, dict) and "name" in parameter:
                value = parameter.get("value")
                found[str(parameter["name"])] = (
                    value if isinstance(value, str) else json.dumps(value)
                )
    return found
