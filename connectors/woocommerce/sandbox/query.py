"""Query parameters of the sandbox's list routes, as WordPress validates them: paging (`per_page`, `page`,
`X-WP-Total`, `X-WP-TotalPages`, `Link`), `include`/`exclude`, dates with `dates_are_gmt`, `orderby`/`order`,
`status` and `sku` lists."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from connectors.sandboxkit import link_headers, offset_page
from connectors.woocommerce.sandbox.store import Row, invalid_param
from connectors.woocommerce.wordpress import php_json_encode


def wc_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A WordPress REST response: PHP-encoded JSON."""
    return Response(php_json_encode(data), status_code=status, headers={"X-Content-Type-Options": "nosniff",
                    "Access-Control-Expose-Headers": "X-WP-Total, X-WP-TotalPages, Link", **(headers or {})},
                    media_type="application/json; charset=UTF-8")  # fmt: skip


def int_param(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?\d+", raw.strip()):
        raise invalid_param({name: f"{name} is not of type integer."})
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} (inclusive) and {high} (inclusive)" if high else f"greater than or equal to {low}"
        raise invalid_param({name: f"{name} must be {bound}"})
    return value


def ids(request: Request, name: str) -> list[int] | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise invalid_param({name: f"{name}[0] is not of type integer."}) from None


def _date_bounds(request: Request, tz: tzinfo) -> list[tuple[str, str, float]]:
    """(column, "after"/"before", epoch) per date filter; without an offset a date is shop-local unless
    `dates_are_gmt`. WordPress's date queries are exclusive: after means strictly later."""
    gmt = request.query_params.get("dates_are_gmt", "").lower() in ("1", "true")
    out = []
    filters = (("after", "created", "after"), ("before", "created", "before"),
               ("modified_after", "modified", "after"), ("modified_before", "modified", "before"))  # fmt: skip
    for name, column, side in filters:
        raw = request.query_params.get(name)
        if not raw:
            continue
        try:
            value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
        except ValueError:
            raise invalid_param({name: "Invalid date."}) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC if gmt else tz)
        out.append((column, side, value.timestamp()))
    return out


def _filter_dates(rows: list[Row], bounds: list[tuple[str, str, float]]) -> list[Row]:
    for column, side, bound in bounds:
        if side == "after":
            rows = [r for r in rows if int(r[column]) > bound]
        else:
            rows = [r for r in rows if int(r[column]) < bound]
    return rows


_ORDERBY: dict[str, Callable[[Row], Any]] = {
    "id": lambda r: r["id"], "date": lambda r: (int(r["created"]), r["id"]),
    "modified": lambda r: (int(r["modified"]), r["id"]), "title": lambda r: (str(r.get("name", "")).lower(), r["id"]),
    "slug": lambda r: (str(r.get("slug", "")), r["id"]), "menu_order": lambda r: (r.get("menu_order", 0), r["id"]),
    "name": lambda r: (f"{r.get('first_name', '')} {r.get('last_name', '')}".lower(), r["id"]),
}  # fmt: skip


def sort_rows(request: Request, rows: list[Row], default: str, default_order: str) -> list[Row]:
    orderby = request.query_params.get("orderby", default)
    order = request.query_params.get("order", default_order)
    if order not in ("asc", "desc"):
        raise invalid_param({"order": "order is not one of asc, desc."})
    include = ids(request, "include")
    if orderby == "include" and include:
        return sorted(rows, key=lambda r: include.index(r["id"]) if r["id"] in include else len(include))
    if orderby not in _ORDERBY:
        raise invalid_param({"orderby": f"orderby is not one of {', '.join(_ORDERBY)}, include."})
    return sorted(rows, key=_ORDERBY[orderby], reverse=order == "desc")


def common_filters(request: Request, rows: list[Row], tz: tzinfo, *, dates: bool = True) -> list[Row]:
    """`include`, `exclude` and, where the route knows them (`dates`), the date filters."""
    include, exclude = ids(request, "include"), ids(request, "exclude")
    if include is not None:
        rows = [r for r in rows if r["id"] in include]
    if exclude:
        rows = [r for r in rows if r["id"] not in exclude]
    return _filter_dates(rows, _date_bounds(request, tz)) if dates else rows


def page_of(request: Request, rows: list[Row], render: Callable[[Row], Row], site_url: str) -> Response:
    """One page of `rows` with WordPress's paging headers."""
    per_page = int_param(request, "per_page", 10, 1, 100)
    page = offset_page(rows, int_param(request, "page", 1, 1), per_page)
    body = [render(row) for row in page.items]
    response = wc_response(body, headers={"X-WP-Total": str(page.total), "X-WP-TotalPages": str(page.pages)})
    base = f"{site_url}{request.url.path.lstrip('/')}"
    for link in link_headers(base, request.query_params.multi_items(), page):
        response.raw_headers.append((b"link", link.encode()))
    return response


def status_filter(request: Request, allowed: tuple[str, ...], default: str) -> set[str] | None:
    raw = request.query_params.get("status", default)
    wanted = {s.strip() for s in raw.split(",") if s.strip()}
    bad = sorted(wanted - {*allowed, "any", "all"})
    if bad:
        raise invalid_param({"status": f"status[0] is not one of {', '.join(('any', *allowed))}."})
    return None if wanted & {"any", "all"} else wanted


def sku_filter(request: Request) -> set[str] | None:
    raw = request.query_params.get("sku")
    if not raw:
        return None
    return {s.strip().casefold() for s in [*raw.split(","), raw] if s.strip()}
