"""What each channel says: sandboxed Jinja2 templates, one per notice kind and field.

Fields: `subject` (the e-mail subject and the chat heading), `text` and `html` (the e-mail's
two alternatives), `slack` (the Slack message body, mrkdwn) and `teams` (the Teams card's
text, Markdown). Every (kind, field) has a default; `plugins.notify.templates.<kind>.<field>`
replaces it. Templates run in `jinja2.sandbox.SandboxedEnvironment` (no attribute starting
with `_`, no unsafe callables: a template from the configuration cannot reach Python's
internals); `html` autoescapes. A template sees only the names in `NAMES` (checked when the
configuration loads, so a typo is a configuration error, not an empty message).
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from itsm_bridge.models import Notice, Release

KINDS = ("succeeded", "rolled_back", "els_started", "els_incident", "els_ended", "post_mortem")
FIELDS = ("subject", "text", "html", "slack", "teams")
NAMES = frozenset({"release", "notice", "summary", "notes", "evidence", "icon"})

ICONS = {
    "slack": {
        "succeeded": ":white_check_mark:",
        "rolled_back": ":rotating_light:",
        "els_started": ":eyes:",
        "els_incident": ":warning:",
        "els_ended": ":checkered_flag:",
        "post_mortem": ":memo:",
    },
    "teams": {
        "succeeded": "\u2705",
        "rolled_back": "\U0001f6a8",
        "els_started": "\U0001f440",
        "els_incident": "\u26a0\ufe0f",
        "els_ended": "\U0001f3c1",
        "post_mortem": "\U0001f4dd",
    },
}

_ITEMS_SLACK = (
    "{% if notes %}{% for item in notes['items'] %}"
    "\u2022 {% if item.url %}<{{ item.url | mrkdwn }}|{{ item.key | mrkdwn }}>"
    "{% else %}{{ item.key | mrkdwn }}{% endif %} {{ item.summary | mrkdwn }}\n"
    "{% endfor %}{% endif %}"
)
_ITEMS_TEAMS = (
    "{% if notes %}{% for item in notes['items'] %}"
    "- {% if item.url %}[{{ item.key }}]({{ item.url }}){% else %}{{ item.key }}{% endif %}"
    " {{ item.summary }}\n{% endfor %}{% endif %}"
)

DEFAULTS = {
    "subject": "{{ notice.subject }}",
    "text": "{{ notice.text }}",
    "html": (
        '{% if notice.html %}<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        "<title>{{ notice.subject }}</title></head>\n<body>\n{{ notice.html | safe }}\n"
        "{% if release.change %}<p>Change: {% if release.change.url %}"
        '<a href="{{ release.change.url }}">{{ release.change.number }}</a>'
        "{% else %}{{ release.change.number }}{% endif %}</p>\n{% endif %}"
        "</body></html>\n{% endif %}"
    ),
    "slack": "{% if summary %}{{ summary | mrkdwn }}\n{% endif %}" + _ITEMS_SLACK,
    "teams": "{% if summary %}{{ summary }}\n\n{% endif %}" + _ITEMS_TEAMS,
}


class TemplateFailure(Exception):
    """A template could not be rendered (an unsafe operation, a runtime error)."""


def mrkdwn(value: Any) -> str:
    """Slack's three control characters escaped (`&`, `<`, `>`), as its formatting asks."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, refusing loudly: an unsafe attribute fails the rendering instead of
    quietly printing nothing (the sandbox's default), so a bad template is seen."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a template value is unsafe")


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = _Sandbox(autoescape=autoescape)
    env.filters["mrkdwn"] = mrkdwn
    return env


_ENVIRONMENTS = {True: _environment(True), False: _environment(False)}


def environment(field: str) -> SandboxedEnvironment:
    """The sandbox for `field`: the HTML body autoescapes, the others are plain text."""
    return _ENVIRONMENTS[field == "html"]


def check_template(source: str, field: str, key: str) -> None:
    """ValueError when `source` does not parse or names a variable a template cannot see."""
    env = environment(field)
    try:
        parsed = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(
            f"{key}: not a valid template: {exc.message} (line {exc.lineno})"
        ) from None
    unknown = meta.find_undeclared_variables(parsed) - NAMES
    if unknown:
        raise ValueError(
            f"{key}: unknown name {sorted(unknown)[0]!r}; a template sees "
            f"{', '.join(sorted(NAMES))}"
        )


class Templates:
    """The compiled templates: the defaults, each replaced where the configuration says."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self._defaults = {f: environment(f).from_string(DEFAULTS[f]) for f in FIELDS}
        self._compiled: dict[tuple[str, str], jinja2.Template] = {}
        for kind, fields in overrides.items():
            for field in FIELDS:
                source = getattr(fields, field, None)
                if source is not None:
                    self._compiled[kind, field] = environment(field).from_string(source)

    def render(self, kind: str, field: str, context: dict[str, Any]) -> str:
        """The (kind, field) template rendered; `TemplateFailure` names the template."""
        template = self._compiled.get((kind, field), self._defaults[field])
        try:
            text = template.render(context)
        except Exception as exc:  # SecurityError, UndefinedError, a method that raised
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise TemplateFailure(
                f"template {kind}.{field} failed: {type(exc).__name__}: {first}".rstrip(": ")
            ) from None
        if field == "subject":
            return " ".join(text.split())  # one header line, whatever the template did
        return text.strip()


def summary_of(notice: Notice) -> str:
    """The notice's own lines: its plain text without the release notes that end it."""
    notes = notice.notes.markdown.strip() if notice.notes else ""
    text = notice.text.strip()
    if notes and text.endswith(notes):
        return text[: -len(notes)].strip()
    return text


def context(release: Release, notice: Notice, channel: str) -> dict[str, Any]:
    """What a template sees: plain data (dicts, strings), never the models themselves."""
    change = release.record(None, "change_request")
    data = release.model_dump(mode="json", exclude={"records", "scope", "impact", "build"})
    data["title"] = release.title
    data["change"] = {"number": change.number or change.id, "url": change.url} if change else None
    told = notice.model_dump(mode="json", exclude={"notes"})
    told["attachments"] = [a.filename for a in notice.attachments]
    return {
        "release": data,
        "notice": told,
        "summary": summary_of(notice),
        "notes": notice.notes.model_dump(mode="json") if notice.notes else None,
        "evidence": notice.evidence,
        "icon": ICONS.get(channel, {}).get(notice.kind, ""),
    }
