"""JQL parsing: tokens, clauses and the query tree (see `jql` for what is supported).

Syntax errors answer like Jira: "Error in the JQL Query: Expecting ... but got '...'.
(line 1, character N)" and "The quoted string '...' has not been completed."
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from itsm_bridge_sandbox.jira.store import JiraError

KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<open>["'])
      | (?P<op>!=|>=|<=|!~|=|>|<|~)
      | (?P<punct>[(),])
      | (?P<word>[^\s(),"'=!<>~]+)
    )""",
    re.VERBOSE,
)
FIELD_ALIASES = {
    "issue": "key",
    "issuekey": "key",
    "key": "key",
    "id": "key",
    "project": "project",
    "status": "status",
    "statuscategory": "statuscategory",
    "issuetype": "issuetype",
    "type": "issuetype",
    "fixversion": "fixversion",
    "sprint": "sprint",
    "cf[10020]": "sprint",
    "labels": "labels",
    "label": "labels",
    "priority": "priority",
    "resolution": "resolution",
    "summary": "summary",
    "text": "summary",
    "description": "description",
    "created": "created",
    "createddate": "created",
    "updated": "updated",
    "updateddate": "updated",
    "resolved": "resolved",
    "resolutiondate": "resolved",
}
MULTI = {"labels", "fixversion", "sprint"}
DATES = {"created", "updated", "resolved"}
TEXT = {"summary", "description"}
_PROPERTY = re.compile(r"^issue\.property\[([^\]]+)\]((?:\.[\w-]+)*)$", re.IGNORECASE)


def jql_error(message: str) -> JiraError:
    return JiraError(400, [message])


@dataclass
class Token:
    kind: str  # str | op | punct | word | end
    text: str
    pos: int  # 1-based character position

    @property
    def lower(self) -> str:
        return self.text.lower() if self.kind == "word" else ""


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        match = _TOKEN.match(query, pos)
        if match is None:  # pragma: no cover - the word class matches everything else
            raise jql_error(
                f"Error in the JQL Query: Unexpected character (line 1, character {pos + 1})"
            )
        kind = match.lastgroup or "word"
        start = match.start(kind) + 1
        text = match.group(kind)
        if kind == "open":
            rest = query[match.start(kind) + 1 :]
            raise jql_error(
                f"Error in the JQL Query: The quoted string '{rest}' has not been "
                f"completed. (line 1, character {start})"
            )
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append(Token(kind, text, start))
        pos = match.end()
    tokens.append(Token("end", "", len(query) + 1))
    return tokens


@dataclass
class Clause:
    field: str  # canonical field name, or "property"
    op: str  # = != > >= < <= ~ !~ in "not in" is "is not"
    value: Any  # ("str", s) | ("list", [...]) | ("func", name) | ("empty",)
    prop: tuple[str, list[str]] | None = None


@dataclass
class Query:
    where: Any  # None | Clause | ("and"|"or", [...]) | ("not", node)
    order: list[tuple[str, bool]]  # (field, descending)

    @property
    def bounded(self) -> bool:
        return self.where is not None


class Parser:
    def __init__(self, query: str) -> None:
        self.tokens = tokenize(query)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, expected: str) -> JiraError:
        token = self.peek()
        got = "end of query" if token.kind == "end" else f"'{token.text}'"
        return jql_error(
            f"Error in the JQL Query: Expecting {expected} but got {got}. "
            f"(line 1, character {token.pos})"
        )

    def parse(self) -> Query:
        where = None
        if self.peek().kind != "end" and self.peek().lower != "order":
            where = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.peek().lower == "order":
            self.take()
            if self.take().lower != "by":
                self.i -= 1
                raise self.fail("'by'")
            while True:
                token = self.take()
                if token.kind not in ("word", "str"):
                    self.i -= 1
                    raise self.fail("a field name")
                desc = False
                if self.peek().lower in ("asc", "desc"):
                    desc = self.take().lower == "desc"
                order.append((token.text, desc))
                if self.peek().text != ",":
                    break
                self.take()
        if self.peek().kind != "end":
            raise self.fail("either 'OR' or 'AND'" if where is not None else "a field name")
        return Query(where, order)

    def or_expr(self) -> Any:
        nodes = [self.and_expr()]
        while self.peek().lower == "or":
            self.take()
            nodes.append(self.and_expr())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def and_expr(self) -> Any:
        nodes = [self.not_expr()]
        while self.peek().lower == "and":
            self.take()
            nodes.append(self.not_expr())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def not_expr(self) -> Any:
        if self.peek().lower == "not":
            self.take()
            return ("not", self.not_expr())
        if self.peek().text == "(" and self.peek().kind == "punct":
            self.take()
            node = self.or_expr()
            if self.take().text != ")":
                self.i -= 1
                raise self.fail("')'")
            return node
        return self.clause()

    def clause(self) -> Clause:
        token = self.take()
        if token.kind not in ("word", "str") or token.lower in KEYWORDS:
            self.i -= 1
            raise self.fail("a field name")
        name = token.text
        prop = None
        match = _PROPERTY.match(name)
        if match:
            field = "property"
            prop = (match.group(1), [p for p in match.group(2).split(".") if p])
        else:
            field = FIELD_ALIASES.get(name.lower(), "")
            if not field:
                raise jql_error(
                    f"Field '{name}' does not exist or you do not have permission to view it."
                )
        op = self.operator()
        value = self.value(op)
        clause = Clause(field, op, value, prop)
        check_operator(name, clause)
        return clause

    def operator(self) -> str:
        token = self.take()
        if token.kind == "op":
            return token.text
        if token.lower == "in":
            return "in"
        if token.lower == "not" and self.peek().lower == "in":
            self.take()
            return "not in"
        if token.lower == "is":
            if self.peek().lower == "not":
                self.take()
                return "is not"
            return "is"
        self.i -= 1
        raise self.fail("operator")

    def value(self, op: str) -> Any:
        if op in ("is", "is not"):
            token = self.take()
            if token.lower not in ("empty", "null"):
                self.i -= 1
                raise self.fail("EMPTY or NULL")
            return ("empty",)
        if op in ("in", "not in") and self.peek().text == "(" and self.peek().kind == "punct":
            self.take()
            items = [self.single()]
            while self.peek().text == ",":
                self.take()
                items.append(self.single())
            if self.take().text != ")":
                self.i -= 1
                raise self.fail("')'")
            return ("list", items)
        return self.single()

    def single(self) -> Any:
        token = self.take()
        if token.kind == "str":
            return ("str", token.text)
        if token.kind == "word" and token.lower not in KEYWORDS - {"empty", "null"}:
            if token.lower in ("empty", "null"):
                return ("empty",)
            if self.peek().text == "(" and self.peek().kind == "punct":
                self.take()
                while self.peek().text != ")" and self.peek().kind != "end":
                    self.take()
                if self.take().text != ")":
                    self.i -= 1
                    raise self.fail("')'")
                return ("func", token.text)
            return ("str", token.text)
        self.i -= 1
        raise self.fail("either a value, list or function")


def check_operator(name: str, clause: Clause) -> None:
    op, field = clause.op, clause.field
    allowed = {"=", "!=", "in", "not in", "is", "is not"}
    if field in DATES:
        allowed |= {">", ">=", "<", "<="}
    if field in TEXT:
        allowed = {"~", "!~", "is", "is not"}
    if field in ("key", "priority", "property"):
        allowed |= {">", ">=", "<", "<="}
    if op not in allowed:
        raise jql_error(f"The operator '{op}' is not supported by the '{name}' field.")


def parse(query: str) -> Query:
    return Parser(query or "").parse()
