"""The sandbox's OData v2 `$filter` subset: parse once, evaluate against in-memory records.

Supported: `eq ne gt ge lt le`, `and`, `or`, `not`, parentheses; literals 'text' ('' escapes a
quote), guid'…', datetime'…', integers (with an Int64 `L` suffix), decimals (`M`/`D` suffixes),
true, false, null. Text comparisons ignore case, like Exact's SQL collation, but not padding
(account codes are stored right-aligned in 18 characters and must be filtered with the spaces). Anything else —
functions such as substringof(), arithmetic, unknown properties — raises QueryError, which the
sandbox answers with 400 and an Exact-shaped error body, so a client using an unsupported filter
learns it from the sandbox instead of from production.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<guid>guid'[^']*')
    | (?P<datetime>datetime'[^']*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?[LlMmDdFf]?)
    | (?P<paren>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_/]*)
    )""",
    re.VERBOSE,
)
_OPERATORS = {"eq", "ne", "gt", "ge", "lt", "le"}


class QueryError(ValueError):
    """The query option is not valid or not supported; its message is safe to return to the caller."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


@dataclass(frozen=True)
class _Literal:
    value: Any


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise QueryError(f"$filter: cannot parse near {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append(_Token(kind, match.group(kind)))
        pos = match.end()
    return out


def _literal(token: _Token) -> _Literal:
    text = token.text
    if token.kind == "string":
        return _Literal(text[1:-1].replace("''", "'"))
    if token.kind == "guid":
        try:
            return _Literal(str(uuid.UUID(text[5:-1])))
        except ValueError:
            raise QueryError(f"$filter: {text} is not a valid GUID") from None
    if token.kind == "datetime":
        try:
            return _Literal(datetime.fromisoformat(text[9:-1]))
        except ValueError:
            raise QueryError(f"$filter: {text} is not a valid datetime") from None
    if token.kind == "number":
        body = text.rstrip("LlMmDdFf")
        if "." in body or text[-1:] in "MmDdFf":
            try:
                return _Literal(Decimal(body))
            except InvalidOperation:  # pragma: no cover - the regex admits only numbers
                raise QueryError(f"$filter: bad number {text}") from None
        return _Literal(int(body))
    if token.kind == "word" and token.text in ("true", "false"):
        return _Literal(token.text == "true")
    if token.kind == "word" and token.text == "null":
        return _Literal(None)
    raise QueryError(f"$filter: expected a value, found {text!r}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, datetime):
        return "datetime"
    return "text"


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    if _kind(left) != _kind(right):
        raise QueryError(f"$filter: operator '{op}' incompatible with a {_kind(left)} and a {_kind(right)} operand")
    if isinstance(left, str):
        left, right = left.casefold(), str(right).casefold()
    elif isinstance(left, int | float | Decimal) and not isinstance(left, bool):
        left, right = Decimal(str(left)), Decimal(str(right))
    if isinstance(left, datetime) and isinstance(right, datetime):
        left, right = left.replace(tzinfo=None), right.replace(tzinfo=None)
    return bool({
        "eq": lambda: left == right,
        "ne": lambda: left != right,
        "gt": lambda: left > right,
        "ge": lambda: left >= right,
        "lt": lambda: left < right,
        "le": lambda: left <= right,
    }[op]())


class _Parser:
    def __init__(self, tokens: list[_Token], fields: Collection[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.fields = fields

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise QueryError("$filter: unexpected end of expression")
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text == word

    def parse(self) -> Predicate:
        predicate = self.expr()
        if self.peek() is not None:
            raise QueryError(f"$filter: unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return predicate

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.is_word("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.is_word("and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def factor(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.factor()
            return lambda r: not inner(r)
        token = self.peek()
        if token is not None and token.kind == "paren" and token.text == "(":
            self.take()
            inner = self.expr()
            closing = self.take()
            if closing.text != ")":
                raise QueryError("$filter: missing ')'")
            return inner
        return self.comparison()

    def operand(self) -> str | _Literal:
        token = self.take()
        if token.kind == "word" and token.text not in ("true", "false", "null"):
            following = self.peek()
            if following is not None and following.kind == "paren" and following.text == "(":
                raise QueryError(f"$filter: function {token.text}() is not supported")
            if token.text not in self.fields:
                raise QueryError(f"$filter: property '{token.text}' does not exist on this entity")
            return token.text
        return _literal(token)

    def comparison(self) -> Predicate:
        left = self.operand()
        op_token = self.take()
        if op_token.kind != "word" or op_token.text not in _OPERATORS:
            raise QueryError(f"$filter: operator {op_token.text!r} is not supported")
        op = op_token.text
        right = self.operand()

        def value(side: str | _Literal, record: dict[str, Any]) -> Any:
            return record.get(side) if isinstance(side, str) else side.value

        if isinstance(left, _Literal) and isinstance(right, _Literal):
            raise QueryError("$filter: a comparison needs a property")
        return lambda r: _compare(op, value(left, r), value(right, r))


def compile_filter(text: str, fields: Collection[str]) -> Predicate:
    """A predicate for `$filter=text`; QueryError when it is malformed or outside the subset."""
    tokens = _tokens(text)
    if not tokens:
        raise QueryError("$filter is empty")
    return _Parser(tokens, fields).parse()


def parse_select(text: str | None, fields: Collection[str]) -> list[str] | None:
    """`$select=A,B` → ["A", "B"]; None for everything; QueryError for unknown properties."""
    if text is None or text.strip() in ("", "*"):
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in fields]
    if unknown:
        raise QueryError(f"$select: property '{unknown[0]}' does not exist on this entity")
    return names
