"""Slack and Teams: the payloads as their documentation describes them (asserted on the
requests `responses` caught), the answers judged (429 with Retry-After, 5xx, 4xx, Teams'
legacy throttling inside a 200), the size limits, and webhook URLs kept out of details."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses

from itsm_bridge_notify import chat


@pytest.fixture
def mocked() -> Any:
    with responses.RequestsMock() as mock:
        yield mock


def slack(kit: Any, **extra: Any) -> dict[str, Any]:
    return {"slack": {"webhook_url": kit.SLACK_URL}, **extra}


def teams(kit: Any, **extra: Any) -> dict[str, Any]:
    return {"teams": {"webhook_url": kit.TEAMS_URL}, **extra}


def posted(mocked: Any, index: int = 0) -> Any:
    call = mocked.calls[index]
    assert call.request.headers["Content-Type"] == "application/json"
    return json.loads(call.request.body)


def test_slack_payload_is_text_plus_blocks(mocked: Any, make_host: Any, kit: Any) -> None:
    mocked.post(kit.SLACK_URL, body="ok")
    sent = kit.deliveries(make_host(slack(kit)), kit.rolled_back())["slack"]
    assert sent.ok and sent.attempts == 1 and sent.detail == "HTTP 200"
    assert sent.target == "https://hooks.slack.com/\u2026"
    payload = posted(mocked)
    assert set(payload) == {"text", "blocks"}
    assert payload["text"] == ":rotating_light: Rolled back: payments 1.4.0: Spring"
    header, section, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":rotating_light: Rolled back: payments 1.4.0: Spring",
            "emoji": True,
        },
    }
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    text = section["text"]["text"]
    assert text.startswith("The release was rolled back.\nReason: alertmanager: HighErrorRate\n")
    assert "- signal: alertmanager: HighErrorRate &lt;5xx&gt;" in text  # mrkdwn escaped
    assert "\u2022 <https://j/PAY-1|PAY-1> Faster refunds" in text
    assert "\u2022 PAY-2 Fix &lt;rounding&gt; &amp; totals" in text
    assert "## payments" not in text  # the notes as items, not their Markdown
    assert context == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": f"Release: {kit.RID} \u00b7 Service: payments 1.4.0 "
                "\u00b7 Change: CHG0030001",
            }
        ],
    }


def test_teams_payload_is_a_message_with_an_adaptive_card(
    mocked: Any, make_host: Any, kit: Any
) -> None:
    mocked.post(kit.TEAMS_URL, status=202)  # a Workflows webhook accepts with 202
    sent = kit.deliveries(make_host(teams(kit)), kit.succeeded())["teams"]
    assert sent.ok and sent.detail == "HTTP 202"
    assert sent.target == "https://prod-42.westeurope.logic.azure.com/\u2026"
    payload = posted(mocked)
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    heading, text, facts = card["body"]
    assert heading == {
        "type": "TextBlock",
        "text": "\u2705 Released: payments 1.4.0: Spring",
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
    }
    assert text["type"] == "TextBlock" and text["wrap"] is True
    assert text["text"] == (
        "- [PAY-1](https://j/PAY-1) Faster refunds\n- PAY-2 Fix <rounding> & totals"
    )
    assert facts == {
        "type": "FactSet",
        "facts": [
            {"title": "Release", "value": kit.RID},
            {"title": "Service", "value": "payments 1.4.0"},
            {"title": "Change", "value": "CHG0030001"},
        ],
    }
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open the change",
            "url": "https://acme.service-now.test/change_request.do?sys_id=c0ffee",
        }
    ]
    assert "@type" not in json.dumps(payload)  # no legacy MessageCard


def test_without_a_change_no_link_and_no_empty_fact(mocked: Any, make_host: Any, kit: Any) -> None:
    mocked.post(kit.TEAMS_URL, status=202)
    kit.deliveries(make_host(teams(kit)), kit.succeeded(), kit.release(records=[]))
    card = posted(mocked)["attachments"][0]["content"]
    assert "actions" not in card
    assert [f["title"] for f in card["body"][-1]["facts"]] == ["Release", "Service"]


def test_429_waits_what_retry_after_says(
    mocked: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    mocked.post(kit.SLACK_URL, status=429, headers={"Retry-After": "7"}, body="rate_limited")
    mocked.post(kit.SLACK_URL, body="ok")
    sent = kit.deliveries(make_host(slack(kit)), kit.succeeded())["slack"]
    assert sent.ok and sent.attempts == 2
    assert sleeps == [7.0]


def test_a_longer_retry_after_is_not_waited(
    mocked: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    mocked.post(kit.TEAMS_URL, status=429, headers={"Retry-After": "600"})
    host = make_host(teams(kit, max_retry_wait_seconds=60))
    sent = kit.deliveries(host, kit.succeeded())["teams"]
    assert not sent.ok and sent.attempts == 1 and sleeps == []
    assert sent.detail == (
        "prod-42.westeurope.logic.azure.com: HTTP 429 rate limited "
        "(asked to wait 600 s, more than max_retry_wait_seconds=60: not waited)"
    )


def test_5xx_is_tried_again_then_reported(
    mocked: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    mocked.post(kit.SLACK_URL, status=500, body="rollup_error")
    sent = kit.deliveries(make_host(slack(kit, retries=3)), kit.succeeded())["slack"]
    assert not sent.ok and sent.attempts == 3 and len(mocked.calls) == 3 and len(sleeps) == 2
    assert sent.detail == "hooks.slack.com: HTTP 500 rollup_error (gave up after 3 attempt(s))"
    assert all(0 < s <= 60 for s in sleeps)


def test_4xx_is_final_with_slacks_own_words(
    mocked: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    mocked.post(kit.SLACK_URL, status=410, body="channel_is_archived")
    sent = kit.deliveries(make_host(slack(kit)), kit.succeeded())["slack"]
    assert not sent.ok and sent.attempts == 1 and sleeps == []
    assert sent.detail == "hooks.slack.com: HTTP 410 channel_is_archived"


def test_a_redirect_is_not_followed(mocked: Any, make_host: Any, kit: Any) -> None:
    mocked.post(kit.SLACK_URL, status=302, headers={"Location": "https://elsewhere.test/"})
    sent = kit.deliveries(make_host(slack(kit)), kit.succeeded())["slack"]
    assert not sent.ok and sent.attempts == 1 and len(mocked.calls) == 1


def test_teams_legacy_throttling_inside_a_200(
    mocked: Any, make_host: Any, kit: Any, sleeps: Any
) -> None:
    mocked.post(kit.TEAMS_URL, body="Microsoft Teams endpoint returned HTTP error 429 ...")
    mocked.post(kit.TEAMS_URL, body="1")
    sent = kit.deliveries(make_host(teams(kit)), kit.succeeded())["teams"]
    assert sent.ok and sent.attempts == 2 and len(sleeps) == 1


def test_the_webhook_url_never_appears(mocked: Any, make_host: Any, kit: Any) -> None:
    error = requests.ConnectionError(f"Max retries exceeded with url: {kit.SLACK_URL}")
    mocked.post(kit.SLACK_URL, body=error)
    mocked.post(kit.TEAMS_URL, status=400, body="bad request: sig=S1GsecretS1G is not valid")
    host = make_host({**slack(kit), **teams(kit), "retries": 1})
    sent = kit.deliveries(host, kit.succeeded())
    assert sent["slack"].detail.startswith("hooks.slack.com unreachable: ConnectionError")
    assert sent["teams"].detail == (
        "prod-42.westeurope.logic.azure.com: HTTP 400 bad request: sig=*** is not valid"
    )
    for delivery in sent.values():
        text = delivery.model_dump_json()
        assert "XXXXsecretXXXX" not in text and "S1GsecretS1G" not in text
        assert "/services/" not in text and "/workflows/" not in text


def test_long_text_is_split_and_cut_to_the_limits() -> None:
    body = "\n".join(f"line {i} " + "x" * 90 for i in range(2000))  # ~200 000 characters
    payload = chat.slack_payload("h" * 400, body, [("Release", "r1")])
    header, *sections, _context = payload["blocks"]
    assert len(header["text"]["text"]) == 150 and header["text"]["text"].endswith("\u2026")
    assert len(payload["blocks"]) == 50
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert sections[0]["text"]["text"].startswith("line 0 ")
    assert sections[-1]["text"]["text"].endswith("\u2026")
    card = chat.teams_payload("heading", body, [("Release", "r1")], None)
    size = len(json.dumps(card).encode())
    assert 20_000 < size <= 28_000  # the documented 28 KB, measured as sent
    assert card["attachments"][0]["content"]["body"][1]["text"].endswith("\u2026")


def test_chunks_keep_lines_together() -> None:
    assert chat.chunks("a\nb\nc", 3, 10) == ["a\nb", "c"]
    assert chat.chunks("abcdefg", 3, 10) == ["abc", "def", "g"]
    assert chat.chunks("", 3, 10) == []
    assert chat.chunks("a\nb\nc\nd", 1, 2) == ["a", "\u2026"]


@pytest.mark.parametrize("quoted", ["url", "path"])
def test_an_answer_quoting_the_url_is_redacted(
    quoted: str, mocked: Any, make_host: Any, kit: Any
) -> None:
    url = kit.SLACK_URL if quoted == "url" else "/services/T0001/B0002/XXXXsecretXXXX"
    mocked.post(kit.SLACK_URL, status=400, body=f"invalid_payload for {url}")
    sent = kit.deliveries(make_host(slack(kit)), kit.succeeded())["slack"]
    assert sent.detail == "hooks.slack.com: HTTP 400 invalid_payload for ***"
