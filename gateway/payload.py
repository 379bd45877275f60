"""Target payloads as JSON text with exact numbers: a `Decimal` is written as its digits, never
through a float (the standard `json` module cannot do that)."""

from __future__ import annotations

import json
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
    return "".join(_encode(payload, indent, 0, default))


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
