"""Templates: defaults per notice kind and channel, overrides from the configuration, the
sandbox, autoescaping of the HTML body, and mistakes caught when the configuration loads."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from itsm_bridge.errors import ConfigError
from itsm_bridge.plugins import load_plugins
from itsm_bridge_notify.templates import KINDS, TemplateFailure, Templates


def test_overrides_per_kind_and_channel(smtp_server: Any, make_host: Any, kit: Any) -> None:
    server = smtp_server()
    templates = {
        "succeeded": {
            "subject": "Shipped {{ release.service }}\n{{ release.version }}",  # one line
            "text": "{{ notes['items'] | length }} change(s) in {{ release.title }}",
            "html": "<p>{{ summary or 'Shipped' }} {{ release.change.number }}</p>",
            "slack": "{{ icon }} *{{ release.version }}*",
            "teams": "**{{ release.version }}** {{ notice.kind }}",
        }
    }
    host = make_host(
        {
            "smtp_url": server.url,
            "sender": "releases@acme.test",
            "slack": {"webhook_url": kit.SLACK_URL},
            "teams": {"webhook_url": kit.TEAMS_URL},
            "templates": templates,
        }
    )
    with responses.RequestsMock() as mocked:
        mocked.post(kit.SLACK_URL, body="ok")
        mocked.post(kit.TEAMS_URL, status=202)
        sent = kit.deliveries(host, kit.succeeded())
        slack = json.loads(mocked.calls[0].request.body)
        teams = json.loads(mocked.calls[1].request.body)
    assert all(d.ok for d in sent.values()), sent
    msg = server.mailbox.messages[0].message
    assert msg["Subject"] == "Shipped payments 1.4.0"
    plain, html = msg.iter_parts()
    assert plain.get_content().strip() == "2 change(s) in payments 1.4.0: Spring"
    assert html.get_content().strip() == "<p>Shipped CHG0030001</p>"
    assert slack["text"] == ":white_check_mark: Shipped payments 1.4.0"  # the subject
    assert slack["blocks"][1]["text"]["text"] == ":white_check_mark: *1.4.0*"
    card = teams["attachments"][0]["content"]
    assert card["body"][0]["text"] == "\u2705 Shipped payments 1.4.0"
    assert card["body"][1]["text"] == "**1.4.0** succeeded"


def test_other_kinds_keep_their_defaults() -> None:
    templates = Templates({"succeeded": _set(subject="Shipped")})
    seen = {"notice": {"subject": "Rolled back: x"}, "release": {}, "summary": ""}
    assert templates.render("succeeded", "subject", seen) == "Shipped"
    assert templates.render("rolled_back", "subject", seen) == "Rolled back: x"
    for kind in KINDS:  # every kind has every field
        for field in ("subject", "text", "html", "slack", "teams"):
            templates.render(kind, field, {"notice": {}, "release": {}})
    # a kind the core adds later: the defaults, not another kind's overrides
    assert templates.render("els_extended", "subject", seen) == "Rolled back: x"


def test_the_html_body_is_autoescaped_the_text_is_not() -> None:
    templates = Templates({"rolled_back": _set(html="<p>{{ summary }}</p>", text="{{ summary }}")})
    seen = {"summary": "x < y & <script>"}
    assert templates.render("rolled_back", "html", seen) == ("<p>x &lt; y &amp; &lt;script&gt;</p>")
    assert templates.render("rolled_back", "text", seen) == "x < y & <script>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ release.__class__ }}",
        "{{ notice.subject.upper.__self__ }}",
    ],
)
def test_the_sandbox_refuses_pythons_internals(source: str, make_host: Any, kit: Any) -> None:
    host = make_host(
        {"slack": {"webhook_url": kit.SLACK_URL}, "templates": {"succeeded": {"slack": source}}}
    )
    with responses.RequestsMock() as mocked:  # nothing may be posted
        sent = kit.deliveries(host, kit.succeeded())["slack"]
        assert len(mocked.calls) == 0
    assert not sent.ok and sent.attempts == 0
    assert sent.detail.startswith("template succeeded.slack failed: SecurityError")


def test_a_template_that_fails_at_runtime_fails_its_channel_only(
    smtp_server: Any, make_host: Any, kit: Any
) -> None:
    server = smtp_server()
    host = make_host(
        {
            "smtp_url": server.url,
            "sender": "releases@acme.test",
            "slack": {"webhook_url": kit.SLACK_URL},
            "templates": {"succeeded": {"slack": "{{ evidence.missing.deeper }}"}},
        }
    )
    with responses.RequestsMock():
        sent = kit.deliveries(host, kit.succeeded())
    assert sent["email"].ok and len(server.mailbox.messages) == 1
    assert not sent["slack"].ok
    assert sent["slack"].detail.startswith("template succeeded.slack failed: UndefinedError")


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ({"succeded": {"subject": "x"}}, "'succeded' is not a notice kind"),
        ({"succeeded": {"body": "x"}}, "plugins.notify.templates.succeeded.body: unknown key"),
        ({"succeeded": {"text": "{% if %}"}}, "templates.succeeded.text: not a valid template"),
        ({"rolled_back": {"slack": "{{ relase.id }}"}}, "unknown name 'relase'"),
    ],
)
def test_template_mistakes_are_configuration_errors(
    templates: dict[str, Any], message: str, kit: Any
) -> None:
    settings = kit.bridge({"slack": {"webhook_url": kit.SLACK_URL}, "templates": templates})
    with pytest.raises(ConfigError, match=r"plugins\.notify") as caught:
        load_plugins(settings)
    assert message in str(caught.value)


def test_a_render_error_names_the_template() -> None:
    templates = Templates({"els_ended": _set(text="{{ 1 / 0 }}")})
    with pytest.raises(TemplateFailure, match=r"template els_ended.text failed: ZeroDivision"):
        templates.render("els_ended", "text", {})


def _set(**fields: str) -> Any:
    from itsm_bridge_notify.settings import TemplateSet

    return TemplateSet(**fields)
