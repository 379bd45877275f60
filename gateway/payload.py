"""Target payloads as JSON text with exact numbers: a `Decimal` is written as its digits, never
through a float (the standard `json` module cannot do that)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

__all__ = ["decimal_text", "dumps"]


Default = Callable[[Any], Any]


def decimal_text(value: Decimal) -> str:
    """Plain decimal notation, never an exponent: Decimal("1E+2") -> "100"."""
    text = format(value, "f")
    return "0" if text in ("-0", "") else text


def dumps(payload: Any, *, indent: int | None = None, default: Default | None = None) -> str:
    """JSON for a payload of dicts, lists, text, ints, bools, None and Decimals.

    `default` turns any other value into one of those (as `json.dumps`'s does); without it they raise TypeError.
    """
    if indent is None:
        fast = _fast(payload, default)
        if fast is not None:
            return fast
    return "".join(_encode(payload, indent, 0, default))


_MARK = "\x00koppel-decimal:"
_MARK_JSON = json.dumps(_MARK)[1:-1]
_MARKED = re.compile(r'"\\u0000koppel-decimal:(-?[0-9]+(?:\.[0-9]+)?)"')
_FLOATISH = re.compile(r"(?:^|[:,\[])-?[0-9]+[.eE]")
"""A number written with a fraction or an exponent where a value starts (a text that looks like one only
costs the exact encoder)."""


def _fast(payload: Any, default: Default | None) -> str | None:
    """`dumps` without indent as the stdlib's C encoder writes it, or None when the exact encoder must decide
    (a float, whose refusal it raises; a text holding the mark; a True, False or None key): each Decimal is handed
    to `default`, written as a marked text, and its digits put in its place afterwards. The same text as
    `_encode`'s, so fingerprints made of it stay equal."""
    marks = 0

    def mark(value: Any) -> Any:
        nonlocal marks
        if isinstance(value, Decimal) and value.is_finite():
            marks += 1
            return _MARK + decimal_text(value)
        if default is None or isinstance(value, Decimal):
            raise _Slow
        return default(value)

    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=mark, allow_nan=False)
    except (_Slow, ValueError, TypeError):
        return None
    if text.count(_MARK_JSON) != marks or _FLOATISH.search(text) or any(key in text for key in _WORD_KEYS):
        return None
    return _MARKED.sub(r"\1", text) if marks else text


class _Slow(Exception):
    """The exact encoder decides (and raises what it raises)."""


_WORD_KEYS = ('"true":', '"false":', '"null":')
"""How the C encoder writes a True, False or None key (the exact encoder: "True", "False", "None"); a text
key spelled so only costs the exact encoder."""


def _encode(value: Any, indent: int | None, level: int, default: Default | None) -> list[str]:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} in a payload: JSON has no such number")
        return [decimal_text(value)]
    if isinstance(value, dict):
        if not value:
            return ["{}"]
        items = [
            f"{json.dumps(str(k), ensure_ascii=False)}:{' ' if indent is not None else ''}"
            + "".join(_encode(v, indent, level + 1, default))
            for k, v in value.items()
        ]
        return [_wrap("{", "}", items, indent, level)]
    if isinstance(value, list | tuple):
        if not value:
            return ["[]"]
        return [_wrap("[", "]", ["".join(_encode(v, indent, level + 1, default)) for v in value], indent, level)]
    if isinstance(value, float):
        raise TypeError("a float in a payload: money must stay Decimal")
    if default is not None and not (value is None or isinstance(value, str | int)):
        return _encode(default(value), indent, level, default)
    return [json.dumps(value, ensure_ascii=False)]


def _wrap(open_: str, close: str, items: list[str], indent: int | None, level: int) -> str:
    if indent is None:
        return open_ + ",".join(items) + close
    inner = "\n" + " " * (indent * (level + 1))
    return open_ + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + close
