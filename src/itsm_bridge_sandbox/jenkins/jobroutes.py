"""The `/job/<a>/job/<b>/...` routes of the Jenkins sandbox, and Jenkins' HTML error pages.

`api/json` of a folder or a job, `POST build` / `buildWithParameters`, and under a build
(`<n>` or a permalink such as `lastBuild`): `api/json`, `testReport/api/json`, `consoleText`,
`POST stop`. Split from `server.py` to keep modules small; `JenkinsSandbox` mixes it in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from html import escape
from typing import Any

from itsm_bridge_sandbox.jenkins import render, testreport
from itsm_bridge_sandbox.jenkins.model import Build, Folder, JenkinsModel, Job
from itsm_bridge_sandbox.jenkins.render import PERMALINKS
from itsm_bridge_sandbox.webapp import Request, Response

HTML = "text/html;charset=utf-8"


def html_error(status: int, message: str) -> Response:
    """Jetty's/Jenkins' HTML error page."""
    body = (
        f"<html><head><title>Error {status} {escape(message)}</title></head><body>"
        f"<h2>HTTP ERROR {status} {escape(message)}</h2></body></html>"
    )
    return Response(status, body.encode(), {"Content-Type": HTML})


def not_found() -> Response:
    """Jenkins' 404 page for a missing item (also what it shows when you may not read it)."""
    body = (
        "<!DOCTYPE html><html><head><title>Jenkins</title></head><body><h1>Not Found</h1>"
        "<p>This page may not exist, or you may not have permission to see it.</p>"
        "</body></html>"
    )
    return Response(404, body.encode(), {"Content-Type": HTML})


class JobRoutesMixin:
    """The `/job/...` handlers of `JenkinsSandbox` (which provides what is declared here)."""

    model: JenkinsModel
    lock: threading.RLock
    user: str

    def root_url(self, request: Request | None = None) -> str:
        raise NotImplementedError  # pragma: no cover - provided by the server

    def _api(self, request: Request, doc: Callable[[int, bool], Any]) -> Response:
        raise NotImplementedError  # pragma: no cover - provided by the server

    def _job_path(self, request: Request) -> Response:
        segments = request.params["rest"].split("/")
        names, index = [segments[0]], 1
        while index + 1 < len(segments) and segments[index] == "job":
            names.append(segments[index + 1])
            index += 2
        tail = [s for s in segments[index:] if s]
        with self.lock:
            self.model.advance()
            node = self.model.item("/".join(names))
            if node is None or not names[0]:
                return not_found()
            if isinstance(node, Folder):
                if tail == ["api", "json"]:
                    root = self.root_url(request)
                    return self._api(
                        request, lambda d, deep: render.folder_json(self.model, node, root, deep)
                    )
                return self._page(request, node.full_name) if not tail else not_found()
            return self._job_action(request, node, tail)

    def _page(self, request: Request, title: str) -> Response:
        if request.method == "POST":
            return html_error(405, "This URL requires GET")
        body = (
            f"<!DOCTYPE html><html><head><title>{escape(title)} [Jenkins]</title></head>"
            "<body></body></html>"
        )
        return Response(200, body.encode(), {"Content-Type": HTML})

    def _job_action(self, request: Request, job: Job, tail: list[str]) -> Response:
        root = self.root_url(request)
        if not tail:
            return self._page(request, job.full_name)
        if tail == ["api", "json"]:
            return self._api(
                request, lambda d, deep: render.job_json(self.model, job, root, d, deep)
            )
        if tail in (["build"], ["buildWithParameters"]):
            if request.method != "POST":
                return html_error(405, "This URL requires POST")
            return self._trigger(request, job, tail[0])
        if tail[0] in PERMALINKS:
            build = render.permalink(job, tail[0])
        elif tail[0].isdigit():
            build = job.builds.get(int(tail[0]))
        else:
            return not_found()
        if build is None:
            return not_found()
        return self._build_action(request, build, tail[1:])

    def _trigger(self, request: Request, job: Job, verb: str) -> Response:
        """`ParameterizedJobMixIn.doBuild` / `doBuildWithParameters`."""
        form = request.form() if "urlencoded" in (request.header("content-type") or "") else {}
        values = {
            **{k: v[0] for k, v in form.items()},
            **{k: v[0] for k, v in request.query.items()},
        }
        if job.disabled:
            return html_error(409, f"{job.full_name} is not buildable!")
        if verb == "buildWithParameters" and not job.parameters:
            return html_error(
                500, "java.lang.IllegalStateException: This build is not parameterized!"
            )
        if verb == "build" and job.parameters:
            if "json" not in values:
                return html_error(400, "Nothing is submitted")
            try:  # the documented form: json={"parameter": [{"name": ..., "value": ...}]}
                submitted = json.loads(values["json"]).get("parameter", [])
                submitted = [submitted] if isinstance(submitted, dict) else submitted
                values = {str(p["name"]): str(p.get("value", "")) for p in submitted}
            except (ValueError, AttributeError, KeyError, TypeError):
                return html_error(400, "Nothing is submitted")
        item = self.model.schedule(job, values, delay=_delay(values.get("delay")))
        return Response(201, b"", {"Location": f"{self.root_url(request)}queue/item/{item.id}/"})

    def _build_action(self, request: Request, build: Build, tail: list[str]) -> Response:
        root = self.root_url(request)
        if not tail:
            return self._page(request, f"{build.job.full_name} #{build.number}")
        if tail == ["api", "json"]:
            return self._api(request, lambda *_: render.build_json(build, root))
        if tail == ["testReport", "api", "json"]:
            report = build.test_report
            if report is None:
                return not_found()
            return self._api(request, lambda *_: report)
        if tail == ["consoleText"]:
            return Response(
                200,
                testreport.console_text(build, self.user),
                {"Content-Type": "text/plain;charset=utf-8"},
            )
        if tail == ["stop"]:
            if request.method != "POST":
                return html_error(405, "This URL requires POST")
            self.model.abort(build, self.user)
            self.model.flush()
            # Run.doStop forwards to the previous page: a 302 back to the build.
            return Response(
                302,
                b"",
                {"Location": f"{root}{render.item_path(build.job.full_name)}{build.number}/"},
            )
        return not_found()


def _delay(raw: str | None) -> float | None:
    """`TimeDuration`: '0', '5sec', '2'."""
    if not raw:
        return None
    try:
        return float(raw.removesuffix("sec").strip())
    except ValueError:
        return None
