"""`JenkinsSandbox`: an in-memory Jenkins that answers the remote access API.

Endpoints: `GET /`, `/api/json`, `/crumbIssuer/api/json`, `/whoAmI/api/json`, `/me/api/json`,
`/queue/api/json`, `/queue/item/<id>/api/json`, `POST /queue/cancelItem?id=N`, and under
`/job/<a>/job/<b>/...`: `api/json` (folder or job), `POST build`, `POST buildWithParameters`,
`<n>|lastBuild|lastSuccessfulBuild|...` + `/api/json`, `/testReport/api/json`, `/consoleText`,
`POST /stop` (those handlers live in `jobroutes.py`). Every api/json honours `tree=` (nested
to any depth, e.g. the jobs of folders in folders; `tree.py`) and `depth=`.

Security, as Jenkins 2.440 with "logged-in users can do anything":
- no credentials: 403 with the "Authentication required" page and `X-You-Are-Authenticated-As:
  anonymous` (`HudsonAuthenticationEntryPoint`: Jenkins never answers 401 to anonymous);
- wrong credentials: 401, `WWW-Authenticate: Basic realm="Jenkins"`, "Invalid password/token
  for user: X" (`BasicHeaderProcessor` + `BasicAuthenticationEntryPoint`);
- CSRF: POSTs authenticated with the API token are exempt (Jenkins >= 2.96); POSTs
  authenticated with the password need the `Jenkins-Crumb` header (or form field) from
  `/crumbIssuer/api/json`, else 403 "No valid crumb was included in the request". When the
  password equals the API token (the default `sandbox`/`sandbox`) every request counts as
  token-authenticated. A crumb is valid only in the web session it was issued in (Jenkins
  >= 2.176.2, "CSRF Protection Explained", CloudBees KB): the crumb issuer starts a session
  with a `JSESSIONID.<node>` cookie and a POST must send that cookie back with the crumb.
Every response carries `X-Jenkins: 2.440.3`, `X-Hudson` and `X-Jenkins-Session`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from itsm_bridge_sandbox.base import SandboxServer
from itsm_bridge_sandbox.jenkins import render, testreport, tree
from itsm_bridge_sandbox.jenkins import seed as seeding
from itsm_bridge_sandbox.jenkins.helpers import ScriptingMixin
from itsm_bridge_sandbox.jenkins.jobroutes import HTML, JobRoutesMixin, html_error, not_found
from itsm_bridge_sandbox.jenkins.model import JenkinsModel, PhaseEvent, endpoints_for
from itsm_bridge_sandbox.jenkins.notifications import NotificationSender, payload, wants
from itsm_bridge_sandbox.webapp import Request, Response

VERSION = "2.440.3"
SESSION_COOKIE = "JSESSIONID.sandbox"


class JenkinsSandbox(JobRoutesMixin, ScriptingMixin, SandboxServer):
    """An in-memory Jenkins controller for the demo and the integration tests."""

    system = "jenkins"

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        user: str = "sandbox",
        password: str = "sandbox",
        *,
        api_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`seed`: the whole sandbox seed or its `jenkins:` part (see `seed.py`); seeded
        `user`/`password`/`api_token` win over the arguments. `api_token` defaults to the
        password. `clock` (seconds since the epoch) lets tests drive time by hand."""
        super().__init__(user, password)
        self.model = JenkinsModel(clock, self.lock)
        self.model.test_report_builder = testreport.make_report
        self.model.on_events = self._on_events
        spec = seeding.load(self.model, seed)
        self.user = str(spec.get("user", user))
        self.password = str(spec.get("password", password))
        self.api_token = str(spec.get("api_token", api_token or self.password))
        self.session = hashlib.sha256(f"{id(self)}{time.time()}".encode()).hexdigest()[:8]
        self.sender = NotificationSender()
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self.app.before.append(self._check_crumb)
        self.app.after.append(self._advertise)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = super().start(host, port)
        self.sender.start()
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick, name="jenkins-ticker", daemon=True)
        self._ticker.start()
        return url

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        self.sender.stop()
        super().stop()

    def _tick(self) -> None:
        """Moves time on while nobody polls, so notifications go out on schedule."""
        while not self._stopping.is_set():
            with self.lock:
                self.model.advance()
                due = self.model.next_due()
            wait = 0.05 if due is None else min(0.05, max(0.002, due - self.model.clock()))
            self._stopping.wait(wait)

    def root_url(self, request: Request | None = None) -> str:
        if self._server is not None:
            return self.url + "/"
        host = request.header("host") if request is not None else None
        return f"http://{host or 'localhost'}/"

    def _on_events(self, events: list[PhaseEvent]) -> None:
        root = self.root_url()
        for event in events:
            for endpoint in endpoints_for(self.model, event.build.job):
                if wants(endpoint, event.phase, event.build.result):
                    self.sender.submit(endpoint, payload(event, root, endpoint, self.user))

    # -- security ------------------------------------------------------------------------
    def _basic(self, request: Request) -> tuple[str, str] | None:
        header = request.header("authorization") or ""
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, secret = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return ("", "")
        return user, secret

    def credentials_ok(self, request: Request) -> bool:
        creds = self._basic(request)
        return (
            creds is not None
            and creds[0] == self.user
            and creds[1] in (self.password, self.api_token)
        )

    def is_public(self, request: Request) -> bool:
        return request.path.startswith("/whoAmI")  # an UnprotectedRootAction

    def unauthorized(self, request: Request) -> Response:
        creds = self._basic(request)
        if creds is not None:
            response = html_error(401, f"Invalid password/token for user: {creds[0]}")
            response.headers["WWW-Authenticate"] = 'Basic realm="Jenkins"'
            return response
        login = f"/login?from={request.path}"
        body = (
            f"<html><head><meta http-equiv='refresh' content='1;url={login}'/><script>"
            f"window.location.replace('{login}');</script></head><body style='background"
            "-color:white; color:white;'>\n\n\nAuthentication required\n<!--\n-->\n\n"
            "</body></html>"
        )
        return Response(
            403,
            body.encode(),
            {
                "Content-Type": HTML,
                "X-You-Are-Authenticated-As": "anonymous",
                "X-You-Are-In-Group-Disabled": "JENKINS-39402: use -Dhudson.security.AccessDenied"
                "Exception2.REPORT_GROUP_HEADERS=true or use "
                "/whoAmI to diagnose",
                "X-Required-Permission": "hudson.model.Hudson.Read",
                "X-Permission-Implied-By": "hudson.security.Permission.GenericRead",
            },
        )

    def crumb_for(self, web_session: str) -> str:
        """The crumb of one web session (`DefaultCrumbIssuer`: user and session)."""
        return hashlib.sha256(f"{self.user}:{self.session}:{web_session}".encode()).hexdigest()

    @staticmethod
    def web_session(request: Request) -> str | None:
        """The `JSESSIONID.sandbox` cookie the request carries, if any."""
        for part in (request.header("cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and value:
                return value
        return None

    def _check_crumb(self, request: Request) -> Response | None:
        creds = self._basic(request)
        if request.method != "POST" or creds is None or creds[1] == self.api_token:
            return None
        sent = request.header("jenkins-crumb") or next(
            iter(request.form().get("Jenkins-Crumb") or []), None
        )
        session = self.web_session(request)
        if session is None or sent != self.crumb_for(session):
            return html_error(403, "No valid crumb was included in the request")
        return None

    def _advertise(self, request: Request, response: Response) -> None:
        response.headers.setdefault("X-Jenkins", VERSION)
        response.headers.setdefault("X-Hudson", "1.395")
        response.headers.setdefault("X-Jenkins-Session", self.session)

    # -- routes --------------------------------------------------------------------------
    def setup_routes(self) -> None:
        add = self.app.add_route
        add("GET|HEAD", "/", self._home)
        add(
            "GET",
            "/api/json",
            lambda r: self._api(
                r, lambda d, deep: render.root_json(self.model, self.root_url(r), deep)
            ),
        )
        add("GET", "/crumbIssuer/api/json", self._crumb_issuer)
        add("GET", "/whoAmI/api/json", self._who_am_i)
        add("GET", "/me/api/json", self._me)
        add(
            "GET",
            "/queue/api/json",
            lambda r: self._api(
                r, lambda *_: render.queue_json(self.model, self.root_url(r), self.model.clock())
            ),
        )
        add("GET", "/queue/item/{id}/api/json", self._queue_item)
        add("POST", "/queue/cancelItem", self._cancel_item)
        add("GET|POST|HEAD", "/job/{rest:path}", self._job_path)
        add("GET|POST|HEAD|PUT|DELETE", "/{rest:path}", lambda r: not_found())

    def _api(self, request: Request, doc: Callable[[int, bool], Any]) -> Response:
        """Serve `doc(depth, deep)` with `depth=` or `tree=` applied; with a tree, `deep`
        documents hold every nested object lazily and Stapler's `depth` is ignored."""
        try:
            depth = int(request.arg("depth", "0") or 0)
        except ValueError:
            return html_error(400, "depth must be a number")
        expression = request.arg("tree")
        with self.lock:
            self.model.advance()
            if not expression:
                return Response(200, doc(depth, False))
            try:
                nodes = tree.parse(expression)
            except tree.TreeSyntaxError as exc:  # Stapler: a ServletException, i.e. a 500
                return html_error(500, f"Malformed tree expression: {exc}")
            return Response(200, tree.apply(doc(depth, True), nodes))

    def _home(self, request: Request) -> Response:
        body = (
            f"<!DOCTYPE html><html><head><title>Dashboard [Jenkins]</title></head><body>"
            f"<p>Jenkins {VERSION} (itsm-bridge sandbox)</p></body></html>"
        )
        return Response(200, body.encode(), {"Content-Type": HTML})

    def _crumb_issuer(self, request: Request) -> Response:
        session = self.web_session(request)
        fresh = session is None
        session = session or secrets.token_hex(12)
        response = self._api(
            request,
            lambda *_: {
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": self.crumb_for(session),
                "crumbRequestField": "Jenkins-Crumb",
            },
        )
        if fresh and response.status == 200:
            response.headers["Set-Cookie"] = f"{SESSION_COOKIE}={session}; Path=/; HttpOnly"
        return response

    def _who_am_i(self, request: Request) -> Response:
        if self._basic(request) is not None and not self.credentials_ok(request):
            return self.unauthorized(request)
        known = self.credentials_ok(request)
        name = self.user if known else "anonymous"
        token_class = (
            "UsernamePasswordAuthenticationToken" if known else "AnonymousAuthenticationToken"
        )
        return self._api(
            request,
            lambda *_: {
                "_class": "hudson.security.WhoAmI",
                "anonymous": not known,
                "authenticated": True,
                "authorities": ["authenticated"] if known else ["anonymous"],
                "details": None,
                "name": name,
                "toString": f"{token_class} [Principal={name}]",
            },
        )

    def _me(self, request: Request) -> Response:
        return self._api(
            request,
            lambda *_: {
                "_class": "hudson.model.User",
                "absoluteUrl": f"{self.root_url(request)}user/{self.user}",
                "description": None,
                "fullName": self.user,
                "id": self.user,
                "property": [{"_class": "jenkins.security.ApiTokenProperty"}],
            },
        )

    def _queue_item(self, request: Request) -> Response:
        with self.lock:
            self.model.advance()
            item = (
                self.model.queue.get(int(request.params["id"]))
                if request.params["id"].isdigit()
                else None
            )
            if item is None:
                return not_found()
            return self._api(
                request,
                lambda *_: render.queue_item_json(item, self.root_url(request), self.model.clock()),
            )

    def _cancel_item(self, request: Request) -> Response:
        """`Queue.doCancelItem`: 204, 500 for a left item, 404 for an unknown id."""
        raw = request.arg("id") or (request.form().get("id") or [""])[0]
        with self.lock:
            self.model.advance()
            item = self.model.queue.get(int(raw)) if raw.isdigit() else None
            if item is None:
                return html_error(404, f"Provided id ({raw}) not found")
            if not self.model.cancel(item):
                return html_error(500, f"Could not cancel run for id {raw}")
            return Response(204)


__all__ = ["JenkinsSandbox"]
