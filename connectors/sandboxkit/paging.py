"""Paging, in the two styles the platforms use.

* Offset pages (WooCommerce's `page`/`per_page`, Winstore, Asperion): `offset_page` slices, `Page` knows
  the page count and its neighbours, `link_headers` writes RFC 8288 `Link` values (rel prev/next).
* Cursors (Exact's `$skiptoken`, Squarespace's `nextPageCursor`): `cursor_page` answers the rows after
  a key, sorted on it, and the key to continue after; `encode_cursor`/`decode_cursor` make that key an
  opaque token for platforms whose cursors are opaque.

The query parameters' validation and their error messages are the platform's.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    number: int
    """1-based."""
    size: int
    total: int

    @property
    def pages(self) -> int:
        return math.ceil(self.total / self.size)

    @property
    def previous(self) -> int | None:
        """The page before; the last page when this one lies beyond the end (as WordPress links it)."""
        return min(self.number - 1, max(self.pages, 1)) if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.pages > self.number else None


def offset_page(rows: Sequence[T], number: int, size: int) -> Page[T]:
    """Page `number` (1-based) of `rows`, `size` to a page."""
    if number < 1 or size < 1:
        raise ValueError("page number and size start at 1")
    return Page(list(rows[(number - 1) * size : number * size]), number, size, len(rows))


def link_headers(base_url: str, query: Iterable[tuple[str, str]], page: Page[Any], *, param: str = "page") -> list[str]:
    """`Link` header values for the neighbours of `page`: `<{base_url}?{query}&page=n>; rel="prev"` and "next"."""
    kept = [(k, v) for k, v in query if k != param]
    links = []
    for rel, number in (("prev", page.previous), ("next", page.next)):
        if number is not None:
            links.append(f'<{base_url}?{urlencode([*kept, (param, str(number))])}>; rel="{rel}"')
    return links


@dataclass(frozen=True)
class CursorPage(Generic[T]):
    items: list[T]
    after: Any | None
    """The key to continue after; None on the last page."""


def cursor_page(
    rows: Iterable[T], *, key: Callable[[T], Any], after: Any | None = None, size: int, top: int | None = None
) -> CursorPage[T]:
    """The rows whose `key` comes after `after`, in key order, at most `size` (and at most `top` in all)."""
    ordered = sorted(rows, key=key)
    if after is not None:
        ordered = [r for r in ordered if key(r) > after]
    limit = size if top is None else min(size, top)
    items = ordered[:limit]
    more = len(ordered) > limit and (top is None or top > limit)
    return CursorPage(items, key(items[-1]) if more and items else None)


def encode_cursor(position: Any) -> str:
    """An opaque, URL-safe cursor for a JSON-able position."""
    text = json.dumps(position, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The position inside a cursor from `encode_cursor`; ValueError for anything else."""
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("cursor is not valid") from None
