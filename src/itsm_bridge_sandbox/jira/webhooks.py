"""Webhook registrations and delivery for the Jira sandbox.

Payloads follow "Webhooks" (Jira Cloud platform, developer.atlassian.com/cloud/jira/platform/
webhooks/): a JSON object with `timestamp` (epoch milliseconds), `webhookEvent`
(`jira:issue_created`, `jira:issue_updated`, `jira:version_released`, ...) and, for issue
events, `issue_event_type_name`, `user`, `issue` and `changelog` (`{id, items}`); a comment
adds `comment`. When the webhook has a secret, the raw body is signed with HMAC-SHA256 and sent
as `X-Hub-Signature: sha256=<hex digest>` (WebSub `method=signature`, "Secure admin webhooks").
Jira also sends `X-Atlassian-Webhook-Identifier` and `X-Atlassian-Webhook-Flow`. Jira Cloud
retries a delivery answered 408, 409, 425, 429 or 5xx (or not answered) with the same body and
identifier and an `X-Atlassian-Webhook-Retry` count ("New Jira Cloud Webhook Retry Policy",
Atlassian developer community); the sandbox retries only when asked (`redeliver`).

Delivery happens on one background thread, in event order; failures are logged and recorded
in `deliveries`, never raised.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from itsm_bridge_sandbox.jira.common import body, no_content, ok, route
from itsm_bridge_sandbox.jira.shapes import Ctx
from itsm_bridge_sandbox.jira.store import JiraError
from itsm_bridge_sandbox.webapp import Request, Response

if TYPE_CHECKING:
    from itsm_bridge_sandbox.jira.server import JiraSandbox

log = logging.getLogger(__name__)


def signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature` value Jira sends for `body` signed with `secret`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class Webhook:
    id: int
    url: str
    secret: str | None = None
    events: list[str] | None = None  # None: every event
    name: str = "sandbox webhook"
    enabled: bool = True

    def wants(self, event: str) -> bool:
        return self.enabled and (self.events is None or event in self.events)


@dataclass
class Delivery:
    webhook_id: int
    url: str
    event: str
    payload: dict[str, Any]
    status: int | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class WebhookDispatcher:
    """Holds registrations; queues and posts payloads from a daemon worker thread."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.webhooks: list[Webhook] = []
        self.deliveries: list[Delivery] = []
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._queue: queue.Queue[tuple[Webhook, str, dict[str, Any]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._identifiers = itertools.count(1)

    def register(
        self,
        url: str,
        secret: str | None = None,
        events: list[str] | None = None,
        name: str = "sandbox webhook",
    ) -> Webhook:
        with self._lock:
            hook = Webhook(next(self._ids), url, secret, list(events) if events else None, name)
            self.webhooks.append(hook)
            return hook

    def unregister(self, webhook_id: int) -> bool:
        with self._lock:
            before = len(self.webhooks)
            self.webhooks = [h for h in self.webhooks if h.id != webhook_id]
            return len(self.webhooks) != before

    def has_listeners(self, event: str) -> bool:
        return any(h.wants(event) for h in self.webhooks)

    def publish(self, event: str, payload: dict[str, Any]) -> None:
        """Queue `payload` for every webhook that wants `event`."""
        targets = [h for h in self.webhooks if h.wants(event)]
        if not targets:
            return
        self._ensure_worker()
        for hook in targets:
            self._queue.put((hook, event, payload))

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="jira-webhooks", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(self, hook: Webhook, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": str(next(self._identifiers)),
            "X-Atlassian-Webhook-Flow": "Primary",
        }
        if hook.secret:
            headers["X-Hub-Signature"] = signature(hook.secret, body)
        delivery = Delivery(hook.id, hook.url, event, payload, headers=headers, body=body)
        self._post(delivery)
        with self._lock:
            self.deliveries.append(delivery)

    def _post(self, delivery: Delivery) -> None:
        try:
            response = requests.post(
                delivery.url, data=delivery.body, headers=delivery.headers, timeout=self.timeout
            )
            delivery.status = response.status_code
        except requests.RequestException as exc:
            delivery.error = str(exc)
            log.warning(
                "jira sandbox: webhook %s to %s failed: %s", delivery.event, delivery.url, exc
            )

    def redeliver(self, original: Delivery) -> int | None:
        """Retry a delivery as Jira Cloud does: same body and identifier, plus
        `X-Atlassian-Webhook-Retry` (the retry count); recorded like any delivery."""
        retries = int(original.headers.get("X-Atlassian-Webhook-Retry", "0")) + 1
        headers = {**original.headers, "X-Atlassian-Webhook-Retry": str(retries)}
        again = Delivery(
            original.webhook_id,
            original.url,
            original.event,
            original.payload,
            headers=headers,
            body=original.body,
        )
        self._post(again)
        with self._lock:
            self.deliveries.append(again)
        return again.status

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until every queued delivery is done (or `timeout`); True when idle."""
        done = threading.Event()

        def joiner() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=joiner, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=2)
        self._thread = None


def register_routes(sb: JiraSandbox) -> None:
    """`/rest/webhooks/1.0/webhook`: list, register and delete webhooks (admin webhooks)."""
    base = "/rest/webhooks/1.0/webhook"

    def render(ctx: Ctx, hook: Any) -> dict[str, Any]:
        return {
            "name": hook.name,
            "url": hook.url,
            "events": hook.events or [],
            "enabled": hook.enabled,
            "self": f"{ctx.base}{base}/{hook.id}",
            "filters": {"issue-related-events-section": ""},
            "excludeBody": False,
        }

    @route(sb, "GET", base, rest=False)
    def list_hooks(req: Request, ctx: Ctx) -> Response:
        return ok([render(ctx, h) for h in sb.webhooks.webhooks])

    @route(sb, "POST", base, rest=False)
    def add_hook(req: Request, ctx: Ctx) -> Response:
        data = body(req)
        if not data.get("url"):
            raise JiraError(400, [], {"url": "The URL must be specified."})
        hook = sb.webhooks.register(
            str(data["url"]),
            data.get("secret"),
            data.get("events"),
            str(data.get("name") or "webhook"),
        )
        return ok(render(ctx, hook), 201)

    @route(sb, "DELETE", base + "/{hid}", rest=False)
    def delete_hook(req: Request, ctx: Ctx) -> Response:
        if not sb.webhooks.unregister(int(req.params["hid"])):
            raise JiraError(404, ["Webhook not found."])
        return no_content()
