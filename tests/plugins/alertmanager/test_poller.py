"""The `alertmanager` poller against a mocked API v2 (`responses`), with the captured answer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from itsm_bridge.http import HTTPRequestError, HTTPTransientError
from itsm_bridge_alertmanager.client import AlertmanagerClient
from itsm_bridge_alertmanager.poller import Poller, matcher, query, quote_meta
from itsm_bridge_alertmanager.settings import Settings
from itsm_bridge_alertmanager.webhook import Handler
from plugins.alertmanager.conftest import TOKEN, URL, delivery, sample, settings

ALERTS = f"{URL}/api/v2/alerts"


def poller(config: Settings) -> Poller:
    client = AlertmanagerClient(config.url, attempts=config.retries, sleep=lambda s: None)
    return Poller(client, config)


def sent_query(call_index: int = 0) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(str(responses.calls[call_index].request.url)).query)


@responses.activate
def test_a_poll_reads_the_counted_alerts_with_the_webhooks_dedupe_keys() -> None:
    config = settings()
    responses.get(ALERTS, json=sample("api-v2-alerts.json"))
    events, cursor = poller(config)("kept")
    assert cursor == "kept"
    raw = json.dumps(delivery()[1]).encode()
    pushed = Handler(config)({"Authorization": f"Bearer {TOKEN}"}, raw, {})
    assert [e["dedupe_key"] for e in events] == [e["dedupe_key"] for e in pushed]
    assert events[0]["payload"]["key"] == pushed[0]["payload"]["key"]
    assert events[0]["payload"]["evidence"]["status"] == "firing"
    assert sent_query() == [
        ("active", "true"),
        ("silenced", "false"),
        ("inhibited", "false"),
        ("filter", 'service=~".+"'),
        ("filter", 'severity=~"critical"'),
    ]


@responses.activate
def test_the_query_follows_the_settings() -> None:
    config = settings(
        service_label="app",
        severity_label="level",
        severities=["warning", "critical", "p1.page"],
        min_severity="critical",
        env='prod "eu"',
    )
    responses.get(ALERTS, json=[])
    assert poller(config)(None) == ([], None)
    assert sent_query()[3:] == [
        ("filter", 'app=~".+"'),
        ("filter", 'level=~"critical|p1\\\\.page"'),
        ("filter", 'env="prod \\"eu\\""'),
    ]


def test_matcher_values_are_escaped_for_alertmanagers_parser() -> None:
    assert quote_meta("a.b+c*(d)|[e]{f}^$\\") == "a\\.b\\+c\\*\\(d\\)\\|\\[e\\]\\{f\\}\\^\\$\\\\"
    assert matcher("env", "=", 'a"b\\c\nd') == 'env="a\\"b\\\\c\\nd"'
    assert query(settings())[:3] == [
        ("active", "true"),
        ("silenced", "false"),
        ("inhibited", "false"),
    ]


@responses.activate
def test_a_transient_failure_is_retried_then_raised() -> None:
    responses.get(ALERTS, status=503, body="busy")
    responses.get(ALERTS, json=sample("api-v2-alerts.json"))
    events, _ = poller(settings())(None)
    assert len(events) == 1
    assert len(responses.calls) == 2
    responses.replace(responses.GET, ALERTS, status=503, body="busy")
    with pytest.raises(HTTPTransientError):
        poller(settings(retries=2))(None)
    assert len(responses.calls) == 4


@responses.activate
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"json": {"alerts": []}}, "not Alertmanager's alert list"),
        ({"json": [{"labels": {}}]}, "0.startsAt"),
        ({"body": "<html>login</html>"}, "the answer is not JSON"),
        ({"status": 400, "json": "bad matcher format: x"}, "HTTP 400: bad matcher format: x"),
    ],
)
def test_an_answer_that_is_not_an_alert_list_fails_the_poll(
    answer: dict[str, Any], message: str
) -> None:
    responses.get(ALERTS, **answer)
    with pytest.raises(HTTPRequestError) as caught:
        poller(settings())(None)
    assert message in str(caught.value)
