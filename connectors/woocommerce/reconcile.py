"""Reading what changed in a WooCommerce shop since a cursor: the reconciliation poll's side of the shop.

WooCommerce drops deliveries: a webhook it disabled after failed deliveries sends nothing, and
one that gave up after its retries sends nothing again. The pollers (workers/pollers.py) read the
shop's `orders`, `products` and `customers` streams through `WooCommerceSource.changes` and feed
what they find into the same flows as the webhooks.

* Cursor: the newest `date_modified_gmt` read ("2026-03-14T13:02:11", UTC). The next read asks for
  `modified_after = cursor - OVERLAP_SECONDS` with `dates_are_gmt=true`: WordPress's date query is
  exclusive and has second resolution, and a request that stamped a record's modification time may
  commit it seconds later. What the overlap reads again has the same delivery key and is not queued twice.
* Without a cursor (the first poll) the read starts `initial_lookback_seconds` back: a shop's history
  is never replayed into the target.
* Pages of 100 ordered by id ascending: a record that changes while the poll pages keeps its place
  (and is read as it is then). Paging is by offset, so a record trashed meanwhile shifts the pages
  behind it by one: when the total shrinks between pages, the poll keeps its old cursor and the
  next one reads the window again. The cursor moves only with the last page; earlier pages carry
  the old one, so a poll that dies half way reads from where it started.
* Customers: REST v3 cannot filter customers by modification date (`/customers` knows `orderby`
  id/name/registered_date/include and no date filter), so the customers stream pages through every
  customer (`role=all`: a shop manager who buys is a customer too) and keeps those modified since
  the cursor: one request per 100 customers per poll.
* A variation is not listed by `/products`; a change to one variation is caught when its parent's
  `date_modified_gmt` moves (WooCommerce re-syncs a variable product when a variation is saved [U]).

A record's version (`version`) is its id, `date_modified_gmt` and a digest of its content: the same
state reached by a webhook and by a poll is processed once (workers/jobs.py), while a change made in
the second a record was created (an order paid at checkout) is still a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.contract import Change
from connectors.woocommerce.client import WooCommerceClient, parse_gmt
from connectors.woocommerce.rest import MAX_PER_PAGE, Page, gmt
from gateway.errors import PermanentError

OVERLAP_SECONDS = 300
STREAMS = {"orders": "order", "products": "product", "customers": "customer"}
"""Stream (also the flow it feeds and the REST collection) → the webhook resource its events name."""

_VOLATILE = ("_links",)


def version(record: Any) -> str | None:
    """`<id>:<date_modified_gmt>:<digest>` of a full record; None for one without both (a deletion's `{"id"}`)."""
    if not isinstance(record, Mapping):
        return None
    ident, modified = record.get("id"), record.get("date_modified_gmt")
    if ident is None or isinstance(ident, bool) or not modified:
        return None
    body = {key: value for key, value in record.items() if key not in _VOLATILE}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{ident}:{modified}:{digest}"


def _start(cursor: str | None, now: datetime, lookback: int) -> tuple[datetime, str]:
    """(where the read starts, the cursor a read that finds nothing newer leaves)."""
    if cursor is None:
        floor = now - timedelta(seconds=lookback)
        return floor, gmt(floor)
    try:
        parsed = parse_gmt(cursor)
    except ValueError:
        parsed = None
    if parsed is None:
        raise PermanentError(f"WooCommerce poll cursor {cursor!r} is not a GMT date; delete it to restart")
    return parsed - timedelta(seconds=OVERLAP_SECONDS), cursor


def changes(
    shop: WooCommerceClient, stream: str, cursor: str | None, *, now: datetime, lookback: int,
    per_page: int = MAX_PER_PAGE,
) -> Iterator[tuple[list[Change], str]]:  # fmt: skip
    """Pages of the records of `stream` modified since `cursor`, each with the cursor after it."""
    resource = STREAMS.get(stream)
    if resource is None:
        raise PermanentError(f"cannot poll WooCommerce stream {stream!r}; known: {', '.join(STREAMS)}")
    start, floor = _start(cursor, now, lookback)
    params: dict[str, object] = {"orderby": "id", "order": "asc"}
    if stream == "customers":
        params["role"] = "all"
    else:
        params |= {"modified_after": gmt(start), "dates_are_gmt": True}
    since = gmt(start)
    newest, first_total, shifted = floor, None, False
    held: list[Change] | None = None
    for page in shop.pages(stream, params, per_page=per_page):
        first_total = page.total if first_total is None else first_total
        shifted |= _shrunk(page, first_total)
        found = [_change(resource, r) for r in page.items if _modified(r) >= since]
        for change in found:
            newest = max(newest, _modified(change.record))
        if held is not None:
            yield held, floor
        held = found
    yield held or [], floor if shifted else newest


def _modified(record: Mapping[str, Any]) -> str:
    """When the record last changed (a customer never saved since registering has no modification date)."""
    return str(record.get("date_modified_gmt") or record.get("date_created_gmt") or "")


def _shrunk(page: Page, first_total: int | None) -> bool:
    return page.total is not None and first_total is not None and page.total < first_total


def _change(resource: str, record: dict[str, Any]) -> Change:
    ident = record.get("id")
    key = version(record) or f"{ident}:{record.get('date_modified_gmt') or '-'}"
    return Change(resource, str(ident) if ident is not None else None, f"{resource}.sync:{key}", record)


__all__ = ["OVERLAP_SECONDS", "STREAMS", "changes", "version"]
