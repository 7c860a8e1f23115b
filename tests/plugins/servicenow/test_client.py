"""ServiceNowClient protocol discipline, with HTTP mocked by `responses`.

Error bodies are ServiceNow's documented `{"error": {"message", "detail"}, "status":
"failure"}` ("Table API", docs.servicenow.com); 429 carries `Retry-After` ("Inbound REST API
rate limiting").
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr

from itsm_bridge.http import HTTPNeedsHuman, HTTPRequestError, HTTPTransientError
from itsm_bridge_servicenow.client import (
    ServiceNowClient,
    parse_sn_datetime,
    reference,
    sn_datetime,
)

BASE = "https://acme.service-now.com"
INCIDENTS = f"{BASE}/api/now/table/incident"
SECRET = "hunter2-Sup3rSecret"


def sn_error(message: str, detail: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> ServiceNowClient:
    return ServiceNowClient(BASE, "svc_bridge", SecretStr(SECRET), page_size=2, attempts=3,
                            sleep=sleeps.append)  # fmt: skip


def params(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(call.request.url)).query, keep_blank_values=True)


@responses.activate
def test_429_honours_retry_after(client: ServiceNowClient, sleeps: list[float]) -> None:
    responses.get(INCIDENTS, status=429, headers={"Retry-After": "2"},
                  json=sn_error("Rate limit exceeded"))  # fmt: skip
    responses.get(INCIDENTS, json={"result": [{"sys_id": "1"}]})
    assert client.query("incident", "active=true", ["sys_id"]) == [{"sys_id": "1"}]
    assert sleeps == [2.0]
    assert len(responses.calls) == 2


@responses.activate
def test_5xx_is_retried_then_succeeds(client: ServiceNowClient, sleeps: list[float]) -> None:
    responses.get(INCIDENTS, status=503, json=sn_error("Service Unavailable"))
    responses.get(INCIDENTS, status=502, body="<html>bad gateway</html>")
    responses.get(INCIDENTS, json={"result": []})
    assert client.query("incident", "active=true", ["sys_id"]) == []
    assert len(responses.calls) == 3 and len(sleeps) == 2


@responses.activate
def test_connection_error_is_transient_after_the_attempts(
    client: ServiceNowClient, sleeps: list[float]
) -> None:
    responses.get(INCIDENTS, body=requests.ConnectionError("connection refused"))
    with pytest.raises(HTTPTransientError, match="GET incident: ConnectionError"):
        client.query("incident", "active=true", ["sys_id"])
    assert len(responses.calls) == 3 and len(sleeps) == 2


@responses.activate
def test_reads_are_paged_narrowed_and_without_reference_links(client: ServiceNowClient) -> None:
    rows = [{"sys_id": str(n), "number": f"INC{n}"} for n in range(5)]
    for start in (0, 2, 4):
        responses.get(INCIDENTS, json={"result": rows[start : start + 2]})
    found = client.query("incident", "active=true^ORDERBYsys_updated_on", ["sys_id", "number"])
    assert found == rows
    pages = [params(call) for call in responses.calls]
    assert [(p["sysparm_limit"], p["sysparm_offset"]) for p in pages] == [
        (["2"], ["0"]),
        (["2"], ["2"]),
        (["2"], ["4"]),
    ]
    for page in pages:
        assert page["sysparm_fields"] == ["sys_id,number"]
        assert page["sysparm_exclude_reference_link"] == ["true"]
        assert page["sysparm_query"] == ["active=true^ORDERBYsys_updated_on"]


@responses.activate
def test_query_limit_stops_early(client: ServiceNowClient) -> None:
    responses.get(INCIDENTS, json={"result": [{"sys_id": "1"}]})
    assert client.query("incident", "", ["sys_id"], limit=1) == [{"sys_id": "1"}]
    assert params(responses.calls[0])["sysparm_limit"] == ["1"]
    assert len(responses.calls) == 1


@responses.activate
def test_write_after_a_query_carries_no_stray_query(client: ServiceNowClient) -> None:
    responses.get(INCIDENTS, json={"result": []})
    responses.post(INCIDENTS, status=201, json={"result": {"sys_id": "9", "number": "INC9"}})
    client.query("incident", "caused_by=abc", ["sys_id"])
    created = client.create("incident", {"short_description": "down"}, ["sys_id", "number"])
    assert created == {"sys_id": "9", "number": "INC9"}
    post = responses.calls[1]
    assert params(post) == {
        "sysparm_exclude_reference_link": ["true"],
        "sysparm_fields": ["sys_id,number"],
    }
    assert json.loads(post.request.body or b"") == {"short_description": "down"}


@responses.activate
def test_create_is_never_retried(client: ServiceNowClient, sleeps: list[float]) -> None:
    responses.post(INCIDENTS, status=503, json=sn_error("Service Unavailable"))
    with pytest.raises(HTTPTransientError, match="POST incident: HTTP 503"):
        client.create("incident", {"short_description": "down"})
    assert len(responses.calls) == 1 and sleeps == []


@responses.activate
def test_update_is_one_patch_retried_on_5xx(client: ServiceNowClient) -> None:
    url = f"{INCIDENTS}/abc"
    responses.patch(url, status=500, json=sn_error("Internal Server Error"))
    responses.patch(url, json={"result": {"state": "2"}})
    assert client.update("incident", "abc", {"state": "2"}, ["state"]) == {"state": "2"}
    assert [c.request.method for c in responses.calls] == ["PATCH", "PATCH"]
    assert params(responses.calls[1]) == {
        "sysparm_exclude_reference_link": ["true"],
        "sysparm_fields": ["state"],
    }


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (400, sn_error("Invalid table incidnet"), HTTPRequestError, "Invalid table incidnet"),
        (
            404,
            sn_error(
                "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            ),
            HTTPRequestError,
            "No Record found: Record doesn't exist",
        ),
        (
            403,
            sn_error(
                "User Not Authorized", "ACL Exception Update Failed due to security constraints"
            ),
            HTTPNeedsHuman,
            "credentials and roles",
        ),
        (
            403,
            sn_error(
                "Operation Failed",
                "Operation against file 'change_request' was "
                "aborted by Business Rule 'State model - Can change state?^1'.",
            ),
            HTTPNeedsHuman,
            "aborted by Business Rule.*refused by a business rule",
        ),
        (
            401,
            sn_error("User Not Authenticated", "Required to provide Auth information"),
            HTTPNeedsHuman,
            "User Not Authenticated",
        ),
    ],
)
@responses.activate
def test_servicenow_error_message_is_surfaced(
    client: ServiceNowClient,
    status: int,
    body: dict[str, object],
    error: type[Exception],
    text: str,
) -> None:
    responses.patch(f"{INCIDENTS}/abc", status=status, json=body)
    responses.get(INCIDENTS, status=status, json=body)
    with pytest.raises(error, match=text) as patched:
        client.update("incident", "abc", {"state": "2"})
    with pytest.raises(error, match=text):
        client.query("incident", "", ["sys_id"])
    assert getattr(patched.value, "status", None) == status


@responses.activate
def test_secrets_never_in_exception_text(client: ServiceNowClient) -> None:
    leak = f"proxy said: password {SECRET} rejected"
    responses.get(INCIDENTS, body=requests.ConnectionError(leak))
    responses.post(INCIDENTS, status=400, json=sn_error("Bad request", f"echo {SECRET}"))
    with pytest.raises(HTTPTransientError) as read:
        client.query("incident", "", ["sys_id"])
    with pytest.raises(HTTPRequestError) as write:
        client.create("incident", {})
    for exc in (read.value, write.value):
        assert SECRET not in str(exc) and "***" in str(exc)
    assert all("Authorization" in c.request.headers for c in responses.calls)


@responses.activate
def test_api_calls_answer_the_result_and_can_skip_retries(
    client: ServiceNowClient, sleeps: list[float]
) -> None:
    url = f"{BASE}/api/sn_chg_rest/change/abc/conflict"
    responses.post(url, status=503, json=sn_error("busy"))
    with pytest.raises(HTTPTransientError):
        client.api("POST", "/api/sn_chg_rest/change/abc/conflict", "POST conflict", retry=False)
    assert len(responses.calls) == 1
    responses.get(url, json={"result": {"status": "Conflict", "conflicts": []}})
    assert client.api("GET", "/api/sn_chg_rest/change/abc/conflict", "GET conflict") == {
        "status": "Conflict",
        "conflicts": [],
    }


def test_datetimes_are_utc_and_refuse_naive() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    berlin = timezone(timedelta(hours=1))
    assert sn_datetime(datetime(2026, 12, 5, 22, tzinfo=berlin)) == "2026-12-05 21:00:00"
    with pytest.raises(ValueError):
        sn_datetime(datetime(2026, 12, 5, 22))
    assert parse_sn_datetime("2026-12-05 21:00:00") == datetime(2026, 12, 5, 21, tzinfo=UTC)
    assert parse_sn_datetime("") is None
    assert reference({"link": "x", "value": "abc"}) == "abc" and reference("abc") == "abc"


def test_instance_url_is_checked() -> None:
    with pytest.raises(ValueError, match="not an instance URL"):
        ServiceNowClient("acme.service-now.com", "u", SecretStr("p"))


@responses.activate
def test_error_bodies_not_shaped_like_servicenow_are_still_reported(
    client: ServiceNowClient,
) -> None:
    responses.get(INCIDENTS, status=404, json={"error": "Not Found", "path": "/api/x"})
    responses.patch(f"{INCIDENTS}/abc", status=400, body="<html>Bad Request</html>")
    with pytest.raises(HTTPRequestError, match="HTTP 404: Not Found"):
        client.query("incident", "", ["sys_id"])
    with pytest.raises(HTTPRequestError, match="HTTP 400: <html>Bad Request"):
        client.update("incident", "abc", {})


# -- paging: Link rel="next", short pages (sysparm_limit is applied before ACLs) -------------
def link(*rels: tuple[str, int], limit: int = 2) -> dict[str, str]:
    """A `Link` header in the documented `<url>;rel="next"` form (offset first, as the docs'
    example; our client must not care about parameter or entry order)."""
    entries = [
        f"<{INCIDENTS}?sysparm_offset={offset}&sysparm_limit={limit}&sysparm_query=active%3Dtrue>"
        f';rel="{rel}"'
        for rel, offset in rels
    ]
    return {"Link": ",".join(entries)}


def no_more_pages() -> None:
    """A request past the pages registered so far fails the test instead of looping."""
    responses.get(INCIDENTS, status=400, json=sn_error("no further page was expected"))


@responses.activate
def test_short_and_empty_pages_do_not_end_the_read_while_link_says_next(
    client: ServiceNowClient,
) -> None:
    # rows 1 and 3-5 are hidden by ACLs: pages of 2 come back with 1, 0, 1 and 1 rows
    pages = [
        ([{"sys_id": "0"}], link(("next", 2), ("prev", -2), ("first", 0), ("last", 6))),
        ([], link(("first", 0), ("prev", 0), ("next", 4), ("last", 6))),
        ([{"sys_id": "5"}], link(("first", 0), ("prev", 2), ("next", 6), ("last", 6))),
        ([{"sys_id": "6"}], link(("first", 0), ("prev", 4), ("last", 6))),
    ]
    for rows, headers in pages:
        responses.get(INCIDENTS, json={"result": rows}, headers=headers)

    no_more_pages()
    found = client.query("incident", "active=true", ["sys_id"])

    assert [r["sys_id"] for r in found] == ["0", "5", "6"]
    assert len(responses.calls) == 4
    sent = [params(call) for call in responses.calls]
    assert [p["sysparm_offset"] for p in sent] == [["0"], ["2"], ["4"], ["6"]]
    assert all(p["sysparm_limit"] == ["2"] for p in sent)
    assert all(p["sysparm_suppress_pagination_header"] == ["false"] for p in sent)


@responses.activate
def test_a_full_page_without_next_is_the_last(client: ServiceNowClient) -> None:
    responses.get(
        INCIDENTS,
        json={"result": [{"sys_id": "1"}, {"sys_id": "2"}]},
        headers=link(("first", 0), ("prev", -2), ("last", 0)),
    )
    no_more_pages()
    assert len(client.query("incident", "active=true", ["sys_id"])) == 2
    assert len(responses.calls) == 1


@responses.activate
def test_a_limit_is_filled_across_short_pages(client: ServiceNowClient) -> None:
    responses.get(INCIDENTS, json={"result": []}, headers=link(("next", 1), limit=1))
    responses.get(INCIDENTS, json={"result": [{"sys_id": "b"}]}, headers=link(("next", 2), limit=1))
    no_more_pages()
    assert client.query("incident", "", ["sys_id"], limit=1) == [{"sys_id": "b"}]
    assert [params(c)["sysparm_offset"] for c in responses.calls] == [["0"], ["1"]]


@responses.activate
def test_without_link_the_total_count_decides(client: ServiceNowClient) -> None:
    responses.get(INCIDENTS, json={"result": [{"sys_id": "1"}]}, headers={"X-Total-Count": "3"})
    responses.get(INCIDENTS, json={"result": [{"sys_id": "3"}]}, headers={"X-Total-Count": "3"})
    no_more_pages()
    assert len(client.query("incident", "", ["sys_id"])) == 2
    assert len(responses.calls) == 2


@responses.activate
def test_a_link_that_goes_backwards_ends_the_read(client: ServiceNowClient) -> None:
    responses.get(INCIDENTS, json={"result": [{"sys_id": "1"}]}, headers=link(("next", 0)))
    no_more_pages()
    assert len(client.query("incident", "", ["sys_id"])) == 1
    assert len(responses.calls) == 1


# -- the instance URL and values inside encoded queries ----------------------------------------
@pytest.mark.parametrize(
    ("url", "text"),
    [
        (f"https://svc_bridge:{SECRET}@acme.service-now.com", "must not carry credentials"),
        ("https://svc_bridge@acme.service-now.com", "must not carry credentials"),
        ("https://", "has no host"),
        ("https:///api/now", "has no host"),
        ("ftp://acme.service-now.com", "must be the instance URL"),
        ("https://acme.service-now.com/?x=1", "must not carry a query"),
    ],
)
def test_a_plugin_url_needs_a_host_and_no_credentials(url: str, text: str) -> None:
    from itsm_bridge.errors import ConfigError
    from itsm_bridge.plugins import build
    from itsm_bridge.settings import settings_from_mapping
    from itsm_bridge_servicenow import ServiceNowPlugin

    bridge = settings_from_mapping(
        {"plugins": {"servicenow": {"url": url, "user": "svc", "password": "pw"}}}
    )
    with pytest.raises(ConfigError) as err:
        build(ServiceNowPlugin, "servicenow", bridge)
    assert f"plugins.servicenow.url: Value error, {text}" in str(err.value)
    assert SECRET not in str(err.value)
    with pytest.raises(ValueError, match=text):
        ServiceNowClient(url, "u", SecretStr("p"))


def test_a_url_with_credentials_exits_2_naming_the_key(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from itsm_bridge.cli import main

    config = Path(str(tmp_path)) / "bridge.yaml"
    config.write_text(
        "plugins:\n  enabled: [servicenow]\n  servicenow:\n"
        f"    url: https://svc:{SECRET}@acme.service-now.com\n    user: svc\n    password: pw\n"
    )
    assert main(["-c", str(config), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "plugins.servicenow.url" in err and "credentials" in err
    assert SECRET not in err


def test_config_values_are_escaped_in_encoded_queries() -> None:
    from itsm_bridge.errors import NeedsHuman
    from itsm_bridge_servicenow.encoded import any_of, by_name_or_sys_id, escape

    assert escape("R&D ^NQsys_id!=x^ORname=y") == "R&D ^^NQsys_id!=x^^ORname=y"
    assert escape("a=b,c\nd") == "a=b,c\nd"
    with pytest.raises(NeedsHuman, match="javascript:"):
        escape(" JavaScript:gs.getUserID()")
    assert any_of("name", ["Depends on::Used by", "A, B^C"]) == (
        "name=Depends on::Used by^ORname=A, B^^C"
    )
    ids = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]
    assert any_of("sys_id", ids) == f"sys_idIN{ids[0]},{ids[1]}"
    assert by_name_or_sys_id(ids[0]) == f"sys_id={ids[0]}^NQname={ids[0]}"
    assert by_name_or_sys_id("pay^NQsys_id!=") == "name=pay^^NQsys_id!="
