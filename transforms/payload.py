"""Target payloads as JSON text with exact numbers: a `Decimal` is written as its digits, never
through a float (the standard `json` module cannot do that)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from transforms.functions import decimal_text

__all__ = ["dumps"]


def dumps(payload: Any, *, indent: int | None = None) -> str:
    """JSON for a payload of dicts, lists, text, ints, bools, None and Decimals."""
    return "".join(_encode(payload, indent, 0))


def _encode(value: Any, indent: int | None, level: int) -> list[str]:
    if isinstance(value, Decimal):
        return [decimal_text(value)]
    if isinstance(value, dict):
        if not value:
            return ["{}"]
        items = [
            f"{json.dumps(str(k), ensure_ascii=False)}:{' ' if indent is not None else ''}"
            + "".join(_encode(v, indent, level + 1))
            for k, v in value.items()
        ]
        return [_wrap("{", "}", items, indent, level)]
    if isinstance(value, list | tuple):
        if not value:
            return ["[]"]
        return [_wrap("[", "]", ["".join(_encode(v, indent, level + 1)) for v in value], indent, level)]
    if isinstance(value, float):
        raise TypeError("a float in a payload: money must stay Decimal")
    return [json.dumps(value, ensure_ascii=False)]


def _wrap(open_: str, close: str, items: list[str], indent: int | None, level: int) -> str:
    if indent is None:
        return open_ + ",".join(items) + close
    inner = "\n" + " " * (indent * (level + 1))
    return open_ + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + close
