"""The Drive v2 `q` language: a tokenizer, a recursive-descent parser and
an evaluator over plain dicts, so the Drive service can filter its metadata without knowing the
grammar.

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | term
    term     := STRING "in" ("parents"|"owners"|"writers"|"readers")
              | ("title"|"mimeType") ("="|"!=") STRING
              | ("title"|"mimeType"|"fullText") "contains" STRING
              | ("trashed"|"starred"|"hidden") ("="|"!=") ("true"|"false")
              | ("createdDate"|"modifiedDate"|...) ("<"|"<="|"="|"!="|">"|">=") STRING
              | "sharedWithMe"

Keywords are case-insensitive, field names are not (v3 names such as `name` are errors in v2).
Strings are single-quoted with `\\'` and `\\\\` as the only escapes.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

Item = Mapping[str, Any]
"""What a predicate sees for one file:
title, mimeType, fullText: str; parents, owners, writers, readers: list[str] (ids / emails);
trashed, starred, hidden, sharedWithMe: bool; createdDate, modifiedDate, ...: float epoch secs."""

Predicate = Callable[[Item], bool]


class InvalidQuery(ValueError):
    """The query does not parse; Drive answers 400 invalid (location q)."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<badstring>')
    | (?P<op><=|>=|!=|=|<|>)
    | (?P<paren>[()])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE | re.DOTALL,
)

_COLLECTIONS = {"parents", "owners", "writers", "readers"}
_TEXT_FIELDS = {"title", "mimeType"}
_CONTAINS_FIELDS = {"title", "mimeType", "fullText"}
_BOOL_FIELDS = {"trashed", "starred", "hidden"}
_DATE_FIELDS = {"createdDate", "modifiedDate", "lastViewedByMeDate", "modifiedByMeDate"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _unescape(quoted: str) -> str:
    out: list[str] = []
    i = 1
    while i < len(quoted) - 1:
        ch = quoted[i]
        if ch == "\\":
            nxt = quoted[i + 1]
            if nxt not in "'\\":
                raise InvalidQuery(f"bad escape \\{nxt}")
            out.append(nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _tokenize(q: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(q):
        if q[pos:].strip() == "":
            break
        m = _TOKEN.match(q, pos)
        if not m or m.lastgroup is None or m.lastgroup == "badstring":
            raise InvalidQuery(f"unexpected input at {pos}")
        kind = m.lastgroup
        text = m.group(kind)
        tokens.append(("string", _unescape(text)) if kind == "string" else (kind, text))
        pos = m.end()
    return tokens


def parse_date(text: str) -> float:
    """RFC 3339 to epoch seconds; a missing offset means UTC."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidQuery(f"bad date {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], aliases: Mapping[str, str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.aliases = aliases

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise InvalidQuery("unexpected end of query")
        self.pos += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].lower() == word:
            self.pos += 1
            return True
        return False

    def expect(self, kind: str) -> str:
        tok = self.take()
        if tok[0] != kind:
            raise InvalidQuery(f"expected {kind}, got {tok[1]!r}")
        return tok[1]

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.peek() is not None:
            raise InvalidQuery(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return pred

    def expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.keyword("and"):
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def not_expr(self) -> Predicate:
        if self.keyword("not"):
            inner = self.not_expr()
            return lambda item: not inner(item)
        if self.peek() == ("paren", "("):
            self.pos += 1
            inner = self.expr()
            if self.take() != ("paren", ")"):
                raise InvalidQuery("expected )")
            return inner
        return self.term()

    def term(self) -> Predicate:
        kind, text = self.take()
        if kind == "string":
            value = text
            if not self.keyword("in"):
                raise InvalidQuery("expected 'in' after a string")
            coll = self.expect("word")
            if coll not in _COLLECTIONS:
                raise InvalidQuery(f"unknown collection {coll!r}")
            value = self.aliases.get(value, value)
            return lambda item: value in item.get(coll, ())
        if kind != "word":
            raise InvalidQuery(f"unexpected {text!r}")
        field = text
        if field == "sharedWithMe":
            return lambda item: bool(item.get("sharedWithMe", False))
        if self.keyword("contains"):
            if field not in _CONTAINS_FIELDS:
                raise InvalidQuery(f"{field} does not support contains")
            needle = self.expect("string").lower()
            # Real Drive matches per-token prefixes, case-insensitively; a substring is close.
            return lambda item: needle in str(item.get(field, "")).lower()
        op = self.expect("op")
        if field in _TEXT_FIELDS:
            if op not in ("=", "!="):
                raise InvalidQuery(f"{field} supports = and != only")
            want = self.expect("string")
            cmp = _COMPARE[op]
            return lambda item: cmp(item.get(field), want)
        if field in _BOOL_FIELDS:
            if op not in ("=", "!="):
                raise InvalidQuery(f"{field} supports = and != only")
            word = self.expect("word").lower()
            if word not in ("true", "false"):
                raise InvalidQuery(f"{field} needs true or false")
            flag = word == "true"
            cmp = _COMPARE[op]
            return lambda item: cmp(bool(item.get(field, False)), flag)
        if field in _DATE_FIELDS:
            when = parse_date(self.expect("string"))
            cmp = _COMPARE[op]
            return lambda item: item.get(field) is not None and cmp(item[field], when)
        raise InvalidQuery(f"unknown field {field!r}")


def compile_query(q: str, aliases: Mapping[str, str] | None = None) -> Predicate:
    """Parse `q` into a predicate over item dicts. `aliases` maps strings used with `in`
    (e.g. 'root' → the root folder id, 'me' → the user's email). Raises InvalidQuery."""
    tokens = _tokenize(q)
    if not tokens:
        return lambda item: True
    return _Parser(tokens, aliases or {}).parse()
