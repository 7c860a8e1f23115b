"""E-mail against a real SMTP server (aiosmtpd on a free port): what arrives (recipients,
subject, headers, both alternatives, the invitation), the session's security (STARTTLS,
implicit TLS, AUTH only when encrypted), and how replies are judged (4xx again, 5xx never,
each recipient on its own)."""

from __future__ import annotations

import email.utils
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import responses

from itsm_bridge.models import Attachment
from itsm_bridge_notify import mail


def invitation(kit: Any) -> Attachment:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//itsm-bridge tests//EN")
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    event = icalendar.Event()
    event.add("uid", f"{kit.RID}.post-mortem@acme.test")
    event.add("summary", "Post-mortem: payments 1.4.0")
    event.add("dtstart", datetime(2026, 12, 1, 14, tzinfo=UTC))
    event.add("dtend", datetime(2026, 12, 1, 15, tzinfo=UTC))
    event.add("dtstamp", datetime(2026, 11, 28, 10, tzinfo=UTC))
    event.add("organizer", "mailto:releases@acme.test")
    event.add("attendee", "mailto:payments-team@acme.test")
    cal.add_component(event)
    return Attachment(
        filename="post-mortem.ics",
        content_type="text/calendar; method=REQUEST; charset=utf-8",
        content=cal.to_ical().decode(),
    )


def config(server: Any, **extra: Any) -> dict[str, Any]:
    return {"smtp_url": server.url, "sender": "Releases <releases@acme.test>", **extra}


def test_success_message(smtp_server: Any, make_host: Any, kit: Any) -> None:
    server = smtp_server()
    host = make_host(config(server, to=["OPS@acme.test", "cab@acme.test"], cc=["audit@acme.test"]))
    before = datetime.now(UTC).replace(microsecond=0)
    sent = kit.deliveries(host, kit.succeeded())["email"]
    assert sent.ok and sent.attempts == 1
    assert sent.target == "payments-team@acme.test, ops@acme.test, cab@acme.test, audit@acme.test"
    [received] = server.mailbox.messages
    assert received.mail_from == "releases@acme.test"
    # each address once: OPS@ in `to` is the stakeholder ops@ already told
    assert received.rcpt_tos == [
        "payments-team@acme.test",
        "ops@acme.test",
        "cab@acme.test",
        "audit@acme.test",
    ]
    msg = received.message
    assert msg["Subject"] == "Released: payments 1.4.0: Spring"
    assert msg["From"] == "Releases <releases@acme.test>"
    assert msg["To"] == "payments-team@acme.test, Ops <ops@acme.test>, cab@acme.test"
    assert msg["Cc"] == "audit@acme.test"
    assert msg["Message-ID"] == f"<itsm-bridge.{kit.RID}.succeeded@acme.test>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-ITSM-Bridge-Release"] == kit.RID
    assert msg["X-ITSM-Bridge-Notice"] == "succeeded"
    date = email.utils.parsedate_to_datetime(msg["Date"])
    assert before <= date <= datetime.now(UTC) + timedelta(seconds=1)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert "- PAY-2 Fix <rounding> & totals" in plain.get_content()
    assert html.get_content_type() == "text/html"
    body = html.get_content()
    assert "<li>PAY-2 Fix &lt;rounding&gt; &amp; totals</li>" in body
    assert '<a href="https://acme.service-now.test/change_request.do?sys_id=c0ffee">' in body
    assert list(msg.iter_attachments()) == []


def test_failure_message_with_evidence_and_invitation(
    smtp_server: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server()
    host = make_host(config(server))
    sent = kit.deliveries(host, kit.rolled_back([invitation(kit)]))["email"]
    assert sent.ok, sent.detail
    [received] = server.mailbox.messages
    assert received.rcpt_tos == ["payments-team@acme.test", "ops@acme.test"]
    msg = received.message
    assert msg["Subject"] == "Rolled back: payments 1.4.0: Spring"
    assert msg["Message-ID"] == f"<itsm-bridge.{kit.RID}.rolled_back@acme.test>"
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attached = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.iter_parts()
    text = plain.get_content()
    assert "Reason: alertmanager: HighErrorRate" in text
    assert "- signal: alertmanager: HighErrorRate <5xx>" in text
    assert "- task: deploy" in text
    assert "<p>- signal: alertmanager: HighErrorRate &lt;5xx&gt;</p>" in html.get_content()
    assert attached.get_content_type() == "text/calendar"
    assert attached.get_param("method") == "REQUEST"
    assert attached.get_filename() == "post-mortem.ics"
    assert attached.get_content_disposition() == "attachment"
    calendar = icalendar.Calendar.from_ical(attached.get_content())
    assert calendar["METHOD"] == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["SUMMARY"]) == "Post-mortem: payments 1.4.0"
    assert event.decoded("DTSTART") == datetime(2026, 12, 1, 14, tzinfo=UTC)
    assert str(event["ATTENDEE"]) == "mailto:payments-team@acme.test"


def test_starttls_then_login(
    smtp_server: Any, server_tls: Any, certificate: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server(tls_context=server_tls, require_starttls=True, auth=True)
    host = make_host(
        config(server, user=kit.USER, password=kit.PASSWORD, tls_ca_file=str(certificate[0]))
    )
    sent = kit.deliveries(host, kit.succeeded())["email"]
    assert sent.ok, sent.detail
    assert "STARTTLS" in sent.detail
    [received] = server.mailbox.messages
    assert received.tls and received.login == kit.USER


def test_implicit_tls(
    smtp_server: Any, server_tls: Any, certificate: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server(implicit_tls=server_tls, auth=True, auth_require_tls=False)
    url = f"smtps://127.0.0.1:{server.port}"
    notify = {"smtp_url": url, "sender": "releases@acme.test", "tls_ca_file": str(certificate[0])}
    host = make_host({**notify, "user": kit.USER, "password": kit.PASSWORD})
    sent = kit.deliveries(host, kit.succeeded())["email"]
    assert sent.ok and "(TLS)" in sent.detail, sent.detail
    assert [m.login for m in server.mailbox.messages] == [kit.USER]


def test_untrusted_certificate_needs_a_person(
    smtp_server: Any, server_tls: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    server = smtp_server(tls_context=server_tls)
    sent = kit.deliveries(make_host(config(server)), kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 1 and sleeps == []
    assert "not trusted" in sent.detail and "tls_ca_file" in sent.detail
    assert server.mailbox.messages == []


def test_password_never_sent_unencrypted(smtp_server: Any, make_host: Any, kit: Any) -> None:
    server = smtp_server(auth=True, auth_require_tls=False)  # offers AUTH without TLS
    host = make_host(config(server, user=kit.USER, password=kit.PASSWORD))
    sent = kit.deliveries(host, kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 1
    assert "refusing to send the password unencrypted" in sent.detail
    assert server.mailbox.logins == [] and server.mailbox.messages == []


def test_starttls_required_refuses_a_server_without_it(
    smtp_server: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server()
    sent = kit.deliveries(make_host(config(server, starttls="required")), kit.succeeded())
    assert not sent["email"].ok and "does not offer STARTTLS" in sent["email"].detail
    assert server.mailbox.messages == []


def test_wrong_password_is_permanent_and_never_shown(
    smtp_server: Any, server_tls: Any, certificate: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    server = smtp_server(tls_context=server_tls, auth=True)
    wrong = "wr0ng-passw0rd-value"
    host = make_host(config(server, user=kit.USER, password=wrong, tls_ca_file=str(certificate[0])))
    sent = kit.deliveries(host, kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 1 and sleeps == []
    assert sent.detail.startswith("login refused: 535")
    assert wrong not in sent.detail
    # one attempt: smtplib tries each mechanism offered (PLAIN, then LOGIN), then gives up
    assert server.mailbox.logins == [kit.USER, kit.USER] and server.mailbox.messages == []


def test_a_4xx_reply_is_tried_again(
    smtp_server: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    server = smtp_server()
    server.mailbox.data_replies = ["451 4.3.0 Try again later"]
    sent = kit.deliveries(make_host(config(server)), kit.succeeded())["email"]
    assert sent.ok and sent.attempts == 2 and len(sleeps) == 1
    assert len(server.mailbox.messages) == 1


def test_a_5xx_reply_is_final(smtp_server: Any, make_host: Any, kit: Any, sleeps: Any) -> None:
    server = smtp_server()
    server.mailbox.data_replies = ["554 5.7.1 Message rejected as spam"]
    sent = kit.deliveries(make_host(config(server)), kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 1 and sleeps == []
    assert sent.detail == "message refused: 554 5.7.1 Message rejected as spam"


def test_gives_up_after_the_configured_attempts(
    smtp_server: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    server = smtp_server()
    server.mailbox.data_replies = ["421 4.7.0 Busy"] * 4
    sent = kit.deliveries(make_host(config(server, retries=4)), kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 4 and len(sleeps) == 3
    assert sent.detail == "message refused: 421 4.7.0 Busy (gave up after 4 attempt(s))"
    assert all(0 < s <= 60 for s in sleeps)


def test_each_recipient_judged_on_its_own(
    smtp_server: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    server = smtp_server()
    server.mailbox.rcpt_replies = {
        "payments-team@acme.test": ["450 4.2.1 Mailbox busy", "250 OK"],
        "ops@acme.test": ["550 5.1.1 No such user"],
    }
    host = make_host(config(server, to=["cab@acme.test"]))
    sent = kit.deliveries(host, kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 2 and len(sleeps) == 1
    assert sent.detail == (
        "refused: ops@acme.test (550 5.1.1 No such user); "
        "delivered to cab@acme.test, payments-team@acme.test"
    )
    first, second = server.mailbox.messages
    assert first.rcpt_tos == ["cab@acme.test"]  # accepted: never sent to again
    assert second.rcpt_tos == ["payments-team@acme.test"]  # deferred: tried again
    assert first.message["Message-ID"] == second.message["Message-ID"]


def test_every_recipient_refused_at_once(
    smtp_server: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    server = smtp_server()
    server.mailbox.rcpt_replies = {
        "payments-team@acme.test": ["452 4.2.2 Over quota", "250 OK"],
        "ops@acme.test": ["550 5.1.1 No such user"],
    }
    sent = kit.deliveries(make_host(config(server)), kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 2 and len(sleeps) == 1
    assert sent.detail == (
        "refused: ops@acme.test (550 5.1.1 No such user); delivered to payments-team@acme.test"
    )
    [received] = server.mailbox.messages
    assert received.rcpt_tos == ["payments-team@acme.test"]


def test_an_unreachable_server_is_tried_again(make_host: Any, kit: Any, sleeps: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"smtp://127.0.0.1:{port}"
        host = make_host({"smtp_url": url, "sender": "r@acme.test", "retries": 2})
        sent = kit.deliveries(host, kit.succeeded())["email"]
    assert not sent.ok and sent.attempts == 2 and len(sleeps) == 1
    assert sent.detail.startswith(f"127.0.0.1:{port} unreachable: ConnectionRefusedError")


def test_no_recipients(make_host: Any, kit: Any) -> None:
    host = make_host({"smtp_url": "smtp://127.0.0.1:9", "sender": "r@acme.test"}, stakeholders=[])
    sent = kit.deliveries(host, kit.succeeded(stakeholders=[]))["email"]
    assert not sent.ok and sent.attempts == 0
    assert sent.detail == "no recipients: set services.payments.stakeholders or plugins.notify.to"


def test_a_header_injection_is_refused_and_the_other_channels_still_told(
    smtp_server: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server()
    evil = ["ops@acme.test\r\nBcc: everyone@acme.test"]
    host = make_host({**config(server), "slack": {"webhook_url": kit.SLACK_URL}}, evil)
    with responses.RequestsMock() as mocked:
        mocked.post(kit.SLACK_URL, body="ok")
        sent = kit.deliveries(host, kit.succeeded(stakeholders=evil))
    assert not sent["email"].ok and sent["email"].attempts == 0
    assert sent["email"].detail.startswith("could not prepare the message: ValueError")
    assert server.mailbox.messages == [] and sent["slack"].ok


def test_message_id_is_stable_per_release_and_kind() -> None:
    first = mail.message_id("rel-1", "succeeded", {}, "acme.test")
    assert first == mail.message_id("rel-1", "succeeded", {"x": 1}, "acme.test")
    assert first != mail.message_id("rel-1", "rolled_back", {}, "acme.test")
    assert first != mail.message_id("rel-2", "succeeded", {}, "acme.test")
    one = mail.message_id("rel-1", "els_incident", {"signals": [{"key": "INC1"}]}, "acme.test")
    again = mail.message_id("rel-1", "els_incident", {"signals": [{"key": "INC1"}]}, "acme.test")
    other = mail.message_id("rel-1", "els_incident", {"signals": [{"key": "INC2"}]}, "acme.test")
    assert one == again != other  # an incident told again is the same message; another is not
    assert (
        mail.message_id("r <1>", "succeeded", {}, "a b.test")
        == "<itsm-bridge.r-1-.succeeded@a-b.test>"
    )
