"""Every hook of the notify plugin called the way the core calls it (through pluggy, loaded
from its entry point), and step 15 of a real release with the plugin enabled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses

from itsm_bridge import notices
from itsm_bridge.models import Delivery
from process_harness import JOBS, Harness


def all_channels(server: Any, kit: Any, **extra: Any) -> dict[str, Any]:
    return {
        "smtp_url": server.url,
        "sender": "releases@acme.test",
        "slack": {"webhook_url": kit.SLACK_URL},
        "teams": {"webhook_url": kit.TEAMS_URL},
        **extra,
    }


def test_hook_notify_stakeholders(smtp_server: Any, make_host: Any, kit: Any, sleeps: Any) -> None:
    server = smtp_server()
    host = make_host(all_channels(server, kit, retries=3))
    with responses.RequestsMock() as mocked:
        mocked.post(kit.SLACK_URL, status=503, body="service unavailable")
        mocked.post(kit.TEAMS_URL, status=202)
        answers = host.hook.notify_stakeholders(release=kit.release(), notice=kit.rolled_back())
        slack_calls = [c for c in mocked.calls if "slack" in c.request.url]
        teams_calls = [c for c in mocked.calls if "logic.azure" in c.request.url]
    mine = next(a for a in answers if any(d.channel == "email" for d in a))
    assert all(isinstance(d, Delivery) for d in mine)
    email, slack, teams = mine  # one per channel, in this order, none raising
    assert (email.channel, email.ok, email.attempts) == ("email", True, 1)
    assert (slack.channel, slack.ok, slack.attempts) == ("slack", False, 3)
    assert slack.detail == (
        "hooks.slack.com: HTTP 503 service unavailable (gave up after 3 attempt(s))"
    )
    assert (teams.channel, teams.ok, teams.attempts) == ("teams", True, 1)
    assert len(slack_calls) == 3 and len(teams_calls) == 1 and len(sleeps) == 2
    assert len(server.mailbox.messages) == 1
    # the default log plugin still answers too: every channel is told
    assert any(d.channel == "log" for a in answers for d in a)


def test_the_core_records_the_failed_channel(smtp_server: Any, make_host: Any, kit: Any) -> None:
    server = smtp_server()
    host = make_host(all_channels(server, kit, retries=1))
    with responses.RequestsMock() as mocked:
        mocked.post(kit.SLACK_URL, status=404, body="channel_not_found")
        mocked.post(kit.TEAMS_URL, status=202)
        deliveries, event = notices.send(host, kit.release(), kit.succeeded())
    assert [(d.channel, d.ok) for d in deliveries] == [
        ("email", True),
        ("slack", False),
        ("teams", True),
        ("log", True),
    ]
    assert event.message.endswith(
        "; failed: slack https://hooks.slack.com/\u2026: "
        "hooks.slack.com: HTTP 404 channel_not_found"
    )
    assert kit.SLACK_URL not in json.dumps(event.evidence)


def test_hook_check_connection(
    smtp_server: Any, server_tls: Any, certificate: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server(tls_context=server_tls, auth=True)
    ca = str(certificate[0])
    good = make_host(
        all_channels(server, kit, user=kit.USER, password=kit.PASSWORD, tls_ca_file=ca)
    )
    with responses.RequestsMock() as mocked:  # nothing posted to a webhook
        [checks] = good.hook.check_connection()
        assert len(mocked.calls) == 0
    smtp, slack, teams = checks
    assert (smtp.plugin, smtp.system, smtp.ok) == ("notify", "smtp", True)
    assert smtp.url == f"smtp://127.0.0.1:{server.port}"
    assert smtp.detail == f"STARTTLS, logged in as {kit.USER}"
    assert (slack.system, slack.ok, teams.system, teams.ok) == ("slack", True, "teams", True)
    assert slack.detail.startswith("not checked") and slack.url == "https://hooks.slack.com/\u2026"
    assert server.mailbox.messages == [] and server.mailbox.logins == [kit.USER]

    bad = make_host(
        {"smtp_url": server.url, "sender": "r@acme.test", "tls_ca_file": ca}
        | {"user": kit.USER, "password": "not-the-passw0rd"}
    )
    [[failed]] = bad.hook.check_connection()
    assert not failed.ok and failed.detail.startswith("login refused: 535")
    assert "not-the-passw0rd" not in failed.detail
    assert server.mailbox.messages == []


def test_a_failed_delivery_never_fails_the_release(
    tmp_path: Path, smtp_server: Any, kit: Any
) -> None:
    server = smtp_server()
    notify = all_channels(server, kit, retries=1)
    h = Harness(
        tmp_path,
        service={"jobs": JOBS, "stakeholders": ["payments-team@acme.test"]},
        plugins={"enabled": ["notify"], "notify": notify},
    )
    with responses.RequestsMock() as mocked:
        mocked.post(kit.SLACK_URL, status=500, body="rollup_error")
        mocked.post(kit.TEAMS_URL, status=202)
        rid = h.create()
        h.run(rid, cycles=6)
        release = h.run(rid, minutes=31, cycles=2)
    assert release.state.value == "closed"
    status, detail = h.steps(rid)["notify"]
    assert status == "done"
    # e-mail, Slack, Teams, the fake vendor and the log: only Slack failed
    assert detail == (
        "stakeholders notified: Released: payments 1.0.0: release (1 of 5 deliveries failed)"
    )
    [received] = server.mailbox.messages
    assert received.message["Subject"] == "Released: payments 1.0.0: release"
    assert received.message["Message-ID"] == f"<itsm-bridge.{rid}.succeeded@acme.test>"


def test_a_bug_in_a_sender_is_a_failed_delivery_not_an_exception(
    smtp_server: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server()
    host = make_host(all_channels(server, kit))

    def broken(payload: Any) -> str:
        raise KeyError("boom")

    kit.plugin_of(host).chats["slack"].post = broken
    with responses.RequestsMock() as mocked:
        mocked.post(kit.TEAMS_URL, status=202)
        sent = kit.deliveries(host, kit.succeeded())
    assert (sent["slack"].ok, sent["slack"].detail, sent["slack"].attempts) == (
        False,
        "KeyError: 'boom'",
        1,
    )
    assert sent["email"].ok and sent["teams"].ok
