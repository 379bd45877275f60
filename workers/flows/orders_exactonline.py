"""Orders → Exact Online, as the SPEC describes them.

1. Status filter: only orders whose status is in `settings.order_statuses` travel
   (default: processing, completed).
2. Already in Exact → skipped and logged. Koppel keeps a ledger of the orders it created
   (source order number → Exact id) and asks Exact (`YourRef`) only when a previous attempt may
   have reached it: the order is marked "in flight" before its POST, so a worker killed between
   the POST and the ledger write is followed by a lookup, never by a second order.
3. The debtor: the default debtor when configured, else the customer by e-mail — created when
   missing (a company with its contact person, or a person), updated when what Koppel would send
   differs from what it last sent. E-mail → account id is cached.
4. Every SKU must exist as an Exact item code; otherwise a permanent failure naming the missing
   SKUs. SKU → item id is cached (one `or` query for the codes not in the cache).
5. The order is committed as the configured document type through the integration's mapping.

Steady state (known customer, known items) costs one Exact call per order: the POST.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from connectors.exactonline.client import ExactClient
from connectors.exactonline.endpoints import Accounts
from connectors.exactonline.errors import ExactRequestError
from connectors.exactonline.odata import eq
from gateway.config import Integration
from gateway.envelope import Envelope
from gateway.errors import PermanentError
from gateway.model import Order
from transforms import decide_debtor
from transforms.payload import dumps
from workers.flows import register
from workers.flows.common import Ledger, cached_mapping
from workers.pollers import exact_client
from workers.runtime import Runtime

log = logging.getLogger("koppel.flows.orders")

DEFAULT_STATUSES = ("processing", "completed")
CACHE_TTL = 24 * 3600
ITEM_CACHE_TTL = 3600


def _normalise(envelope: Envelope) -> Order:
    if envelope.source == "woocommerce":
        from connectors.woocommerce.normalise import normalise_order

        return normalise_order(envelope.payload)
    raise PermanentError(f"orders from {envelope.source} to Exact Online are not supported yet")


def _mapping(rt: Runtime, integration: Integration, flow: str) -> Any:
    return cached_mapping(rt, integration, flow, "exactonline")


_DOCUMENTS = {
    "sales_order": ("find_sales_order_by_your_ref", lambda c, p: c.create_sales_order(p), "OrderID"),
    "sales_invoice": ("find_sales_invoice_by_your_ref", lambda c, p: c.create_sales_invoice(p), "InvoiceID"),
    "direct_invoice": (
        "find_sales_invoice_by_your_ref",
        lambda c, p: c.create_sales_invoice(p, direct=True),
        "InvoiceID",
    ),
    "sales_entry": ("find_sales_entry_by_your_ref", lambda c, p: c.create_sales_entry(p), "EntryID"),
}


def _record_id(record: dict[str, Any], preferred: str) -> str:
    return str(record.get(preferred) or record.get("ID") or "")


_UNREAD: Any = object()
"""A cache entry not read ahead: `_account` and `_items` read it themselves."""


def _account_field(integration: Integration, order: Order) -> str:
    """The order's field in the integration's account cache: `code:<debtor code>` or the e-mail ('' if none)."""
    debtor = decide_debtor(order.customer, integration.settings, flow="orders")
    if debtor.kind == "default":
        return f"code:{debtor.code}"
    return (debtor.email or order.customer.email or "").strip().lower()


def _account(
    rt: Runtime, integration: Integration, exact: ExactClient, order: Order, cached: Any = _UNREAD
) -> tuple[str, str]:
    """The OrderedBy account id, and how it was found (cached / found / created / default).
    `cached`: the order's account cache entry when read ahead (`_take_off`)."""
    debtor = decide_debtor(order.customer, integration.settings, flow="orders")
    cache = f"koppel:cache:{integration.id}:accounts"
    if debtor.kind == "default":
        code = str(debtor.code)
        if cached is _UNREAD:
            cached = rt.connection.hget(cache, f"code:{code}")
        if cached:
            return cached.decode(), "default (cached)"
        found = exact.first(Accounts, filter=eq("Code", code.rjust(18)))
        if found is None:
            raise PermanentError(f"the default debtor {code!r} does not exist in Exact Online")
        rt.connection.hset(cache, f"code:{code}", str(found["ID"]))
        return str(found["ID"]), "default"
    email = (debtor.email or order.customer.email or "").strip().lower()
    if not email:
        raise PermanentError(f"order {order.number} has no customer e-mail address to find the debtor by")
    mapping = _mapping(rt, integration, "customers")
    payload = mapping.apply(order.customer, {"account": "<account>"}, label=f"customer of order {order.number}")
    account_fields = payload.get("Account", payload)
    fingerprint = hashlib.sha256(dumps(account_fields).encode()).hexdigest()[:16]
    if cached is _UNREAD:
        cached = rt.connection.hget(cache, email)
    if cached:
        account_id, _, sent = cached.decode().partition(":")
        if sent != fingerprint:
            exact.update_account(account_id, account_fields)
            rt.connection.hset(cache, email, f"{account_id}:{fingerprint}")
            return account_id, "updated"
        return account_id, "cached"
    found = exact.find_account_by_email(email)
    if found is not None:
        account_id = str(found["ID"])
        exact.update_account(account_id, account_fields)
        how = "updated"
    else:
        account_id = str(exact.create_account(account_fields)["ID"])
        contact = payload.get("Contact")
        if contact:
            exact.create_contact({**contact, "Account": account_id})
        how = "created"
    rt.connection.hset(cache, email, f"{account_id}:{fingerprint}")
    rt.connection.expire(cache, CACHE_TTL)
    return account_id, how


def _items(
    rt: Runtime, integration: Integration, exact: ExactClient, codes: list[str], cached_ids: Any = _UNREAD
) -> dict[str, str]:
    """SKU → Exact item id for every code; PermanentError naming the SKUs Exact does not know.
    `cached_ids`: the item cache's values for `_unique(codes)` when read ahead (`_take_off`)."""
    cache = f"koppel:cache:{integration.target}:items"
    wanted = _unique(codes)
    if cached_ids is _UNREAD:
        cached_ids = rt.connection.hmget(cache, wanted) if wanted else []
    cached = dict(zip(wanted, cached_ids, strict=True))
    ids = {code: value.decode() for code, value in cached.items() if value}
    missing = [code for code in wanted if code not in ids]
    if missing:
        found = exact.find_item_ids_by_codes(missing)
        if found:
            rt.connection.hset(cache, mapping=found)
            rt.connection.expire(cache, ITEM_CACHE_TTL)
        ids.update(found)
        unknown = [code for code in missing if code not in found]
        if unknown:
            raise PermanentError(
                f"order cannot be booked: SKU(s) {', '.join(sorted(unknown))} do not exist as items in Exact Online"
            )
    return ids


def _unique(codes: list[str]) -> list[str]:
    return list(dict.fromkeys(codes))


def _take_off(rt: Runtime, integration: Integration, ledger: Ledger, order: Order, codes: list[str]) -> tuple[Any, Any]:
    """Mark the order in flight (before its POST) and read its account and item cache entries, in one
    round trip: (account cache entry, item cache values), as `_account` and `_items` take them."""
    wanted = _unique(codes)
    with rt.connection.pipeline(transaction=False) as pipe:
        pipe.hset(ledger.flight, order.number, "1")
        pipe.hget(f"koppel:cache:{integration.id}:accounts", _account_field(integration, order))
        if wanted:
            pipe.hmget(f"koppel:cache:{integration.target}:items", wanted)
        _, account, *items = pipe.execute()
    return account, (items[0] if wanted else [])


def _forget(rt: Runtime, integration: Integration, order: Order, codes: list[str]) -> bool:
    """Drop the cached account and item ids this order used; True if anything was cached."""
    debtor = decide_debtor(order.customer, integration.settings, flow="orders")
    accounts = f"koppel:cache:{integration.id}:accounts"
    account_key = f"code:{debtor.code}" if debtor.kind == "default" else (debtor.email or order.customer.email or "")
    dropped = rt.connection.hdel(accounts, account_key.strip().lower() if debtor.kind != "default" else account_key)
    dropped += rt.connection.hdel(f"koppel:cache:{integration.target}:items", *codes) if codes else 0
    return bool(dropped)


@register("orders", "exactonline")
def order_to_exact(integration: Integration, envelope: Envelope, rt: Runtime) -> dict[str, Any]:
    order = _normalise(envelope)
    statuses = integration.settings.get("order_statuses", DEFAULT_STATUSES)
    if order.status not in statuses:
        return {"outcome": "skipped", "number": order.number, "reason": f"status {order.status!r} is not synced"}
    exact = exact_client(rt, integration.target)
    before = exact.calls
    document = str(integration.settings.get("document_type", "sales_order"))
    find_name, create, id_field = _DOCUMENTS[document]
    ledger = Ledger(rt.connection, integration.id)
    done, in_flight = ledger.lookup(order.number)
    if done:
        log.info("order %s is already in Exact Online (%s); skipped", order.number, done)
        return {
            "outcome": "skipped",
            "number": order.number,
            "reason": "already in Exact Online",
            "target_id": done,
            "calls": 0,
        }
    if in_flight:
        existing = getattr(exact, find_name)(order.number)
        if existing is not None:
            exact_id = _record_id(existing, id_field)
            ledger.land(order.number, exact_id)
            log.info("order %s was already booked by an earlier attempt (%s); skipped", order.number, exact_id)
            return {
                "outcome": "skipped",
                "number": order.number,
                "reason": "already in Exact Online",
                "target_id": exact_id,
                "calls": exact.calls - before,
            }
    missing_sku = [line.name or "?" for line in order.lines if not line.sku]
    if missing_sku:
        raise PermanentError(f"order {order.number}: line(s) without SKU: {', '.join(missing_sku)}")
    settings = integration.settings
    codes = [line.sku for line in order.lines if line.sku]
    codes += [settings.get("shipping_item", "SHIPPING")] if order.shipping_lines else []
    codes += [settings.get("fee_item", "FEE")] if order.fees else []
    cached_account, cached_items = _take_off(rt, integration, ledger, order, codes)
    for attempt in (1, 2):
        if attempt == 1:  # the cache entries read with the in-flight marker
            account_id, account_how = _account(rt, integration, exact, order, cached_account)
            item_ids = _items(rt, integration, exact, codes, cached_items)
        else:  # read again after `_forget`
            account_id, account_how = _account(rt, integration, exact, order)
            item_ids = _items(rt, integration, exact, codes)
        payload = _mapping(rt, integration, "orders").apply(
            order, {"account": account_id, "items": item_ids}, label=f"{envelope.source} order {order.number}"
        )
        try:
            created = create(exact, payload)
            break
        except ExactRequestError:
            # A cached id Exact no longer knows (an account or item deleted or merged there): forget
            # the cached ids this order used and resolve them again, once.
            if attempt == 2 or not _forget(rt, integration, order, codes):
                raise
            log.info("order %s: Exact rejected cached ids; looking them up again", order.number)
    exact_id = _record_id(created, id_field)
    ledger.land(order.number, exact_id)
    log.info("order %s booked in Exact Online as %s %s", order.number, document, exact_id)
    return {
        "outcome": "created",
        "number": order.number,
        "document": document,
        "target_id": exact_id,
        "account": account_how,
        "calls": exact.calls - before,
    }


__all__ = ["Ledger", "order_to_exact"]
