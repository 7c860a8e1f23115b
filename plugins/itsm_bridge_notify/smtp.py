"""SMTP with `smtplib`: the session (TLS, login), one attempt per call, replies classified.

`smtp://host:port`: EHLO, then STARTTLS when the server offers it (RFC 3207) and EHLO again
on the encrypted connection; `starttls: required` refuses a server that does not offer it.
`smtps://host:port`: TLS from the first byte (RFC 8314, port 465). The server's certificate
is verified against the system's CAs or `tls_ca_file`. A password is sent only over an
encrypted connection (AUTH over clear text is refused here, whatever the server offers).

Replies (RFC 5321 section 4.2.1): 4xx is transient (tried again), 5xx permanent. Each
recipient is judged on its own: an accepted one is not sent to again, a 4xx one is tried
again, a 5xx one is reported. Network faults and a dropped connection are transient; a
certificate or TLS failure, or a server without AUTH when a login is configured, needs a
person. The password never appears in a detail.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage

from itsm_bridge.http import redact
from itsm_bridge.models import ConnectionCheck
from itsm_bridge_notify.delivery import DeliveryError
from itsm_bridge_notify.settings import Settings

CHECK_TIMEOUT = 10.0
WHAT = {
    smtplib.SMTPConnectError: "greeting",
    smtplib.SMTPHeloError: "EHLO",
    smtplib.SMTPAuthenticationError: "login refused",
    smtplib.SMTPSenderRefused: "sender refused",
    smtplib.SMTPDataError: "message refused",
}


@dataclass
class Outcome:
    """What happened to each envelope recipient over the attempts so far."""

    pending: list[str]
    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    deferred: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = []
        if self.deferred:
            parts.append("deferred: " + ", ".join(f"{a} ({r})" for a, r in self.deferred.items()))
        if self.refused:
            parts.append("refused: " + ", ".join(f"{a} ({r})" for a, r in self.refused.items()))
        if self.delivered:
            parts.append("delivered to " + ", ".join(self.delivered))
        return "; ".join(parts)


class SmtpSender:
    """Opens one session per attempt (a session does not outlive a delivery)."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self.scheme, self.host, self.port = config.smtp_parts

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.tls_ca_file)

    def connect(self, timeout: float) -> tuple[smtplib.SMTP, str]:
        """A logged-in session and how it is protected ("TLS", "STARTTLS", "no TLS")."""
        client: smtplib.SMTP | None = None
        try:
            if self.scheme == "smtps":
                client = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=timeout, context=self._tls()
                )
                how = "TLS"
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=timeout)
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=self._tls())
                    client.ehlo()
                    how = "STARTTLS"
                elif self.config.starttls == "required":
                    raise DeliveryError(
                        f"{self.host} does not offer STARTTLS and starttls is required; "
                        "use smtps:// or a server that encrypts",
                        transient=False,
                    )
                else:
                    how = "no TLS"
            if self.config.user is not None and self.config.password is not None:
                if how == "no TLS":
                    raise DeliveryError(
                        f"{self.host} offers no STARTTLS: refusing to send the password "
                        "unencrypted; use smtps:// or a server that offers STARTTLS",
                        transient=False,
                    )
                client.login(self.config.user, self.config.password.get_secret_value())
            return client, how
        except Exception as exc:
            if client is not None:
                client.close()
            if isinstance(exc, DeliveryError):
                raise
            raise self.classify(exc) from None

    def send(self, msg: EmailMessage, envelope_from: str, outcome: Outcome, timeout: float) -> str:
        """One attempt at the recipients still pending; raises while any is deferred."""
        client, how = self.connect(timeout)
        try:
            try:
                rejected = client.send_message(
                    msg, from_addr=envelope_from, to_addrs=list(outcome.pending)
                )
            except smtplib.SMTPRecipientsRefused as exc:
                rejected = exc.recipients
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()  # the message was accepted: a lost QUIT changes nothing
        except Exception as exc:
            client.close()
            raise self.classify(exc) from None
        outcome.deferred = {}
        for address in outcome.pending:
            if address not in rejected:
                outcome.delivered.append(address)
                continue
            code, reply = rejected[address]
            text = f"{code} {_text(reply)}"
            if 400 <= code < 500:
                outcome.deferred[address] = text
            else:
                outcome.refused[address] = text
        outcome.pending = list(outcome.deferred)
        if outcome.deferred:
            raise DeliveryError(outcome.summary(), transient=True)
        if outcome.refused:
            raise DeliveryError(outcome.summary(), transient=False)
        return f"accepted by {self.host} ({how}) for {len(outcome.delivered)} recipient(s)"

    def classify(self, exc: Exception) -> DeliveryError:
        """A transient or permanent `DeliveryError` for an SMTP, TLS or network failure."""
        secret = self.config.password
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            what = next((w for t, w in WHAT.items() if isinstance(exc, t)), "SMTP")
            text = redact(f"{what}: {code} {_text(exc.smtp_error)}", secret)
            return DeliveryError(text, transient=400 <= code < 500)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return DeliveryError(f"{self.host} closed the connection", transient=True)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(
                f"TLS: the certificate of {self.host} is not trusted ({exc.verify_message}); "
                "set plugins.notify.tls_ca_file to its CA",
                transient=False,
            )
        if isinstance(exc, smtplib.SMTPException | ssl.SSLError):
            return DeliveryError(
                redact(f"{type(exc).__name__}: {_first(exc)}", secret), transient=False
            )
        if isinstance(exc, OSError):
            return DeliveryError(
                f"{self.host}:{self.port} unreachable: {type(exc).__name__}: {_first(exc)}",
                transient=True,
            )
        return DeliveryError(
            redact(f"{type(exc).__name__}: {_first(exc)}", secret), transient=False
        )

    def check(self) -> ConnectionCheck:
        """EHLO, TLS and the login, then QUIT; never raises, never sends a message."""
        try:
            client, how = self.connect(min(CHECK_TIMEOUT, self.config.timeout_seconds))
        except DeliveryError as exc:
            return ConnectionCheck(
                plugin="notify", system="smtp", url=self.url, ok=False, detail=str(exc)
            )
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
        user = self.config.user
        detail = f"{how}, " + (f"logged in as {user}" if user else "no login configured")
        return ConnectionCheck(plugin="notify", system="smtp", url=self.url, ok=True, detail=detail)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
