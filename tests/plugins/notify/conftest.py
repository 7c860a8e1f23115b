"""Fixtures for the notify plugin: a real SMTP server (aiosmtpd, on a free port, with scripted
replies, STARTTLS, implicit TLS and AUTH), a self-signed certificate made with openssl, the
plugin loaded from its entry point, and notices built by the core's own `notices.notice`."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from itsm_bridge import notices
from itsm_bridge.models import Attachment, ExternalRecord, Notice, Release, ReleaseNotes
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import BridgeSettings, settings_from_mapping
from itsm_bridge_notify import NotifyPlugin
from support import require_service

RID = "rel-20261128-0000abcd"
USER, PASSWORD = "bridge", "s3cret-smtp-passw0rd"
SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/XXXXsecretXXXX"
TEAMS_URL = (
    "https://prod-42.westeurope.logic.azure.com:443/workflows/abc123/triggers/manual/paths/"
    "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S1GsecretS1G"
)
STAKEHOLDERS = ["payments-team@acme.test", "Ops <ops@acme.test>"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = BytesParser(policy=policy.default).parsebytes(self.data)  # type: ignore[assignment]
        return parsed


@dataclass
class Mailbox:
    """The handler: keeps what it accepted; replies scripted per recipient and for DATA."""

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        queue = self.rcpt_replies.get(address)
        if queue:
            reply = queue.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.messages.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                session.ssl is not None,
                login,
            )
        )
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(auth_data.login.decode())
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    mailbox: Mailbox
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key): a self-signed certificate for 127.0.0.1 and localhost."""
    openssl = shutil.which("openssl")
    require_service(openssl is not None, "the openssl command")
    assert openssl is not None
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., Server]]:
    """`smtp_server(**aiosmtpd options)`: a started server; all stopped after the test."""
    started: list[Controller] = []

    def start(implicit_tls: ssl.SSLContext | None = None, **options: Any) -> Server:
        mailbox = Mailbox()
        if options.pop("auth", False):
            options["authenticator"] = mailbox.authenticate
        port = free_port()
        controller = Controller(
            mailbox, hostname="127.0.0.1", port=port, ssl_context=implicit_tls, **options
        )
        controller.start()
        started.append(controller)
        return Server(mailbox, port)

    yield start
    for controller in started:
        controller.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def bridge(notify: dict[str, Any], stakeholders: list[str] | None = None) -> BridgeSettings:
    return settings_from_mapping(
        {
            "plugins": {"enabled": ["notify"], "notify": notify},
            "services": {
                "payments": {"stakeholders": STAKEHOLDERS if stakeholders is None else stakeholders}
            },
        }
    )


@pytest.fixture
def make_host(sleeps: Sleeps) -> Callable[..., PluginHost]:
    """`make_host(notify config, stakeholders=...)`: the plugin through its entry point."""

    def make(notify: dict[str, Any], stakeholders: list[str] | None = None) -> PluginHost:
        host = load_plugins(bridge(notify, stakeholders))
        plugin = host.plugin("notify")
        assert isinstance(plugin, NotifyPlugin)
        plugin.sleep = sleeps
        return host

    return make


def plugin_of(host: PluginHost) -> NotifyPlugin:
    plugin = host.plugin("notify")
    assert isinstance(plugin, NotifyPlugin)
    return plugin


def release(**kw: Any) -> Release:
    change = ExternalRecord(
        system="servicenow",
        kind="change_request",
        id="c0ffee",
        number="CHG0030001",
        url="https://acme.service-now.test/change_request.do?sys_id=c0ffee",
    )
    data: dict[str, Any] = {
        "id": RID,
        "service": "payments",
        "version": "1.4.0",
        "name": "Spring",
        "records": [change],
    }
    return Release(**{**data, **kw})


NOTES = ReleaseNotes(
    title="payments 1.4.0",
    markdown="## payments 1.4.0\n\n- PAY-1 Faster refunds\n- PAY-2 Fix <rounding> & totals",
    html="<h2>payments 1.4.0</h2><ul><li>PAY-1 Faster refunds</li>"
    "<li>PAY-2 Fix &lt;rounding&gt; &amp; totals</li></ul>",
    items=[
        {"system": "jira", "key": "PAY-1", "summary": "Faster refunds", "url": "https://j/PAY-1"},
        {"system": "jira", "key": "PAY-2", "summary": "Fix <rounding> & totals"},
    ],
)


def succeeded(stakeholders: list[str] | None = None) -> Notice:
    """The notice step 15 builds for a release that succeeded (with the core's own code)."""
    settings = bridge({"smtp_url": "smtp://x", "sender": "a@b.test"}, stakeholders)
    return notices.notice(settings, release(), "succeeded", [], notes=NOTES)


def rolled_back(attachments: list[Attachment] | None = None) -> Notice:
    evidence = {"signal": "alertmanager: HighErrorRate <5xx>", "task": "deploy"}
    settings = bridge({"smtp_url": "smtp://x", "sender": "a@b.test"})
    lines = ["The release was rolled back.", "Reason: alertmanager: HighErrorRate"]
    lines += [f"- {key}: {value}" for key, value in sorted(evidence.items())]
    return notices.notice(
        settings,
        release(failure_reason="alertmanager: HighErrorRate"),
        "rolled_back",
        lines,
        notes=NOTES,
        evidence=evidence,
        attachments=attachments,
    )


def deliveries(host: PluginHost, told: Notice, rel: Release | None = None) -> dict[str, Any]:
    """The notify plugin's deliveries by channel (the default log plugin's left out)."""
    answers = host.hook.notify_stakeholders(release=rel or release(), notice=told)
    found = {d.channel: d for answer in answers for d in answer if d.channel != "log"}
    return found


class Kit:
    """The helpers above for the test modules (a conftest cannot be imported by name)."""

    RID = RID
    USER = USER
    PASSWORD = PASSWORD
    SLACK_URL = SLACK_URL
    TEAMS_URL = TEAMS_URL
    STAKEHOLDERS = STAKEHOLDERS
    NOTES = NOTES
    release = staticmethod(release)
    succeeded = staticmethod(succeeded)
    rolled_back = staticmethod(rolled_back)
    deliveries = staticmethod(deliveries)
    plugin_of = staticmethod(plugin_of)
    bridge = staticmethod(bridge)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
