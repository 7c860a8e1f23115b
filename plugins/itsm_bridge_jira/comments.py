"""Comments the bridge writes on issues, each at most once.

Bodies: on Cloud the comment goes to REST v3, whose rich-text fields are Atlassian Document
Format ("Add comment", Jira Cloud REST v3: `body` is an ADF document, `{"type": "doc",
"version": 1, "content": [paragraphs]}`); on Data Center to REST v2 as plain text (wiki
markup, which these bodies avoid: no brackets, braces, asterisks or leading dashes).

Idempotency: the first line of every comment is a marker, `itsm-bridge <purpose> <release
id>`. Before writing, the issue's comments are read (`GET .../comment`, paged by `startAt`
and `total` on both deployments, in the same API version as the write, so an ADF body is
read as ADF) and the comment is written only when none starts with the marker. The POST is
sent once: when its answer is lost, the core's retry reads the comments again first.
"""

from __future__ import annotations

from typing import Any

from itsm_bridge_jira.client import JiraClient

PAGE = 100


def marker(purpose: str, release_id: str) -> str:
    return f"itsm-bridge {purpose} {release_id}"


def adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: one paragraph per line (empty lines: empty paragraphs)."""
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
            for line in text.split("\n")
        ],
    }


def plain(body: Any) -> str:
    """The text of a comment body, ADF or string: text nodes joined, paragraphs as lines."""
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "".join(plain(node) for node in body)
    if isinstance(body, dict):
        if body.get("type") == "text":
            return str(body.get("text") or "")
        inner = [plain(node) for node in body.get("content") or []]
        return ("\n" if body.get("type") in ("doc", "bulletList", "orderedList") else "").join(
            inner
        )
    return str(body)


def _api(client: JiraClient) -> str:
    return "3" if client.cloud else "2"


def has(client: JiraClient, key: str, mark: str) -> bool:
    """Whether a comment of the issue starts with `mark`."""
    start = 0
    while True:
        page = (
            client.call(
                "GET",
                f"issue/{key}/comment",
                f"GET {key} comments",
                api=_api(client),
                params={"startAt": start, "maxResults": PAGE},
            )
            or {}
        )
        comments = page.get("comments") or []
        if any(plain(c.get("body")).lstrip().startswith(mark) for c in comments):
            return True
        start += len(comments)
        total = page.get("total")
        if not comments or total is None or start >= int(total):
            return False


def add_once(client: JiraClient, key: str, mark: str, text: str) -> bool:
    """Comment `mark` + `text` on the issue unless it carries `mark` already; True if written."""
    if has(client, key, mark):
        return False
    body = f"{mark}\n{text}"
    client.call(
        "POST",
        f"issue/{key}/comment",
        f"comment on {key}",
        api=_api(client),
        body={"body": adf(body) if client.cloud else body},
        retry=False,
    )
    return True
