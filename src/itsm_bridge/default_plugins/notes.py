"""Release notes rendered from the backlog items with sandboxed Jinja2 templates (step 10).

The items are grouped by type (the backlog system's issue type, `BacklogItem.kind`).
"""

from __future__ import annotations

from jinja2.sandbox import SandboxedEnvironment

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import BacklogItem, Release, ReleaseNotes

MARKDOWN = """\
# {{ release.title }}

- Service: {{ release.service }}
- Version: {{ release.version }}
- Type: {{ release.type.value }}{% if release.major %} (major){% endif %}
{%- if release.window_start %}
- Window: {{ release.window_start.strftime('%Y-%m-%d %H:%M') }} to \
{{ release.window_end.strftime('%Y-%m-%d %H:%M') }} UTC
{%- endif %}

## Changes
{% for kind, group in groups %}
### {{ kind }}
{% for item in group %}
- {% if item.url %}[{{ item.key }}]({{ item.url }}){% else %}{{ item.key }}{% endif %} \
{{ item.summary }}
{%- endfor %}
{% else %}
- No backlog items are linked to this version.
{% endfor %}"""

HTML = """\
<h1>{{ release.title }}</h1>
<ul>
<li>Service: {{ release.service }}</li>
<li>Version: {{ release.version }}</li>
<li>Type: {{ release.type.value }}{% if release.major %} (major){% endif %}</li>
{%- if release.window_start %}
<li>Window: {{ release.window_start.strftime('%Y-%m-%d %H:%M') }} to \
{{ release.window_end.strftime('%Y-%m-%d %H:%M') }} UTC</li>
{%- endif %}
</ul>
<h2>Changes</h2>
{%- for kind, group in groups %}
<h3>{{ kind }}</h3>
<ul>
{%- for item in group %}
<li>{% if item.url %}<a href="{{ item.url }}">{{ item.key }}</a>{% else %}{{ item.key }}\
{% endif %} {{ item.summary }}</li>
{%- endfor %}
</ul>
{%- else %}
<p>No backlog items are linked to this version.</p>
{%- endfor %}
"""

_markdown_env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_html_env = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)


def grouped(items: list[BacklogItem]) -> list[tuple[str, list[BacklogItem]]]:
    """The items by type (`kind`: Story, Bug ...), types in order of first appearance."""
    groups: dict[str, list[BacklogItem]] = {}
    for item in items:
        groups.setdefault(item.kind or "Other", []).append(item)
    return list(groups.items())


@hookimpl(trylast=True)
def render_release_notes(release: Release, items: list[BacklogItem]) -> ReleaseNotes:
    """Markdown and HTML notes listing every backlog item of the release, grouped by type,
    each with its key (a link where the item has one) and summary."""
    context = {"release": release, "groups": grouped(items)}
    return ReleaseNotes(
        title=release.title,
        markdown=_markdown_env.from_string(MARKDOWN).render(context),
        html=_html_env.from_string(HTML).render(context),
        items=items,
    )
