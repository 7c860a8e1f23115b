"""`POST /webhooks/jenkins`: the Notification plugin's JSON, so a finished job is seen before
the next poll (polling stays the source of truth: the event only wakes the release, whose
step then asks `job_status`).

The payload (notification-plugin `Format.JSON`: Gson with `LOWER_CASE_WITH_UNDERSCORES`,
null fields left out; `model/JobState.java`, `model/BuildState.java`; the plugin page's
example)::

    {"name": "build", "display_name": "build", "url": "job/payments/job/build/",
     "build": {"full_url": "https://ci/job/payments/job/build/7/", "number": 7,
               "queue_id": 12, "phase": "FINALIZED", "status": "SUCCESS",
               "url": "job/payments/job/build/7/", "parameters": {"RELEASE_ID": "rel-..."},
               "scm": {...}, "log": "", "notes": "", "artifacts": {...}, ...}}

Phases are QUEUED, STARTED, COMPLETED and FINALIZED (`Phase`); "when job is finalized all
post-build activities, such as archiving artifacts, were executed as well", so only FINALIZED
is acted on. Other phases are accepted and nothing is stored (an endpoint may be configured
for "all events"). `parameters` holds the build's non-sensitive parameters, so `RELEASE_ID`
names the release to wake. One event per build and phase: the dedupe key is
`jenkins:<job full name>:<build number>:<phase>` (the plugin resends on its own `retries`).

The token. The plugin sends no custom header: `Protocol.HTTP` sets `Content-Type` and, when the
endpoint URL carries user info, `Authorization: Basic <user:password>`. So the token travels
either in the URL's query (`.../webhooks/jenkins?token=<webhook_token>`) or as the password
of the URL's user info (`https://jenkins:<webhook_token>@bridge/webhooks/jenkins`); a
`Authorization: Bearer <webhook_token>` (a proxy, a pipeline's own `httpRequest`) is accepted
too. For a PUBLIC endpoint URL the plugin prints the URL into the build log ("Notifying
endpoint with url '...'"): store the URL in a "Secret text" credential and choose the
endpoint's secret URL type (`UrlInfo` `SECRET`, `Utils.getSecretUrl`), so only the credential
id is printed. Compared in constant time.

Answers: 401 for a missing or wrong token, 400 for a body that is not JSON (e.g. the XML
format), 422 for JSON that is not a Notification plugin payload.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import WebhookRejected
from itsm_bridge_jenkins.client import job_from_url
from itsm_bridge_jenkins.jobs import SYSTEM

if TYPE_CHECKING:
    from itsm_bridge_jenkins import Settings

PHASES = ("QUEUED", "STARTED", "COMPLETED", "FINALIZED")
ACTED_ON = "FINALIZED"
KEPT_PARAMETERS = ("RELEASE_ID", "TASK", "SERVICE", "VERSION")
RELEASE_ID = re.compile(r"^rel-[0-9]{8}-[0-9a-f]{8}$")
EXPECTED = "expected the Notification plugin's JSON: {name, url, build: {number, phase, ...}}"


def offered_tokens(headers: dict[str, str], query: dict[str, str]) -> list[str]:
    """Every token the delivery offers: `?token=`, a Basic password, a Bearer token."""
    offered = [query["token"]] if query.get("token") else []
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, _, credentials = (lowered.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        offered.append(credentials.strip())
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            decoded = ""
        _, colon, password = decoded.partition(":")
        if colon and password:
            offered.append(password)
    return offered


def dedupe_key(job: str, number: int, phase: str) -> str:
    return f"{SYSTEM}:{job}:{number}:{phase}"


class Handler:
    """Authenticates a Notification plugin delivery and turns FINALIZED into one event."""

    def __init__(self, config: Settings) -> None:
        self.config = config

    def _authenticate(self, headers: dict[str, str], query: dict[str, str]) -> None:
        secret = self.config.webhook_token
        if secret is None or not secret.get_secret_value():
            raise WebhookRejected(
                401, "webhooks from Jenkins are disabled: set plugins.jenkins.webhook_token"
            )
        expected = secret.get_secret_value().encode()
        offered = offered_tokens(headers, query)
        # every offered token is compared, so the time taken does not depend on which matched
        results = [hmac.compare_digest(token.encode(), expected) for token in offered]
        if not any(results):
            raise WebhookRejected(
                401, "missing or wrong token (?token=, the URL's user info, or Bearer)"
            )

    def __call__(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Authenticate, parse, and return `[{"source", "kind": "job", "dedupe_key",
        "payload", "release_id"?}]` for a FINALIZED build; `[]` for the other phases."""
        self._authenticate(headers, query or {})
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(
                400, "the body is not JSON (set the endpoint's format to JSON)"
            ) from None
        if not isinstance(document, dict) or not isinstance(document.get("build"), dict):
            raise WebhookRejected(422, f"no build object: {EXPECTED}")
        build: dict[str, Any] = document["build"]
        phase = str(build.get("phase") or "")
        if phase not in PHASES:
            raise WebhookRejected(422, f"build.phase {phase[:30]!r} is not one of {PHASES}")
        number = build.get("number")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise WebhookRejected(422, f"build.number is missing or not a number: {EXPECTED}")
        job = (
            job_from_url(str(document.get("url") or ""))
            or job_from_url(str(build.get("full_url") or ""))
            or job_from_url(str(build.get("url") or ""))
        )
        if not job:
            raise WebhookRejected(422, f"the job's url is missing: {EXPECTED}")
        if phase != ACTED_ON:
            return []
        given = build.get("parameters")
        parameters: dict[str, Any] = given if isinstance(given, dict) else {}
        kept = {k: str(parameters[k]) for k in KEPT_PARAMETERS if k in parameters}
        event: dict[str, Any] = {
            "source": SYSTEM,
            "kind": "job",
            "dedupe_key": dedupe_key(job, number, phase),
            "payload": {
                "job": job,
                "number": number,
                "phase": phase,
                "status": build.get("status"),
                "url": build.get("full_url"),
                "queue_id": build.get("queue_id"),
                "parameters": kept,
            },
        }
        if RELEASE_ID.match(kept.get("RELEASE_ID", "")):
            event["release_id"] = kept["RELEASE_ID"]
        return [event]
