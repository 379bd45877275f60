"""Orders, as the SPEC's Orders section describes them — booked in a target, or their status written back.

What an integration does with an order is its `settings.order_mode` (connectors/contract.py): "book",
"status" or "both", as far as the target can (`Target.order_modes`; the first is the default).

Booking (a target that books orders: an ERP, an accounting package, a shop taking an ERP's orders):
0. Never in a loop: an order the target made and the source was given (its reference is held for
   it by the ledger of an integration booking the target's orders into the source) gets the status
   write-back instead (skipped, for a target that takes no statuses); an order Koppel itself made from
   one of the target's orders (`Order.origin` names the target system) is skipped, naming its origin.
1. Already in the target → skipped and logged; when the target also takes statuses, the status is
   written to the order Koppel booked there. The ledger (workers/ledger.py) holds what Koppel
   booked (source order number → target id); the target is asked (`find_order`) only when a previous
   attempt may have reached it: the order is marked in flight (with the time) before its write, so a
   worker killed between the write and the ledger entry is followed by a lookup, never by a second
   document; the order it finds is logged "created" (by the earlier attempt), as that attempt never was.
2. Status filter: only orders whose status (canonical name or the source's code) is in
   `settings.order_statuses` travel (default: the source's `booked_statuses`). An order booked before
   and cancelled since, for a target that takes no statuses, is a warning naming the target's order.
3. The customer: workers/flows/customers.py (default debtor, or by e-mail: created or updated); with
   `settings.guest_orders`, or a target without customer accounts (`Target.customer_accounts`), none
   (the target's guest orders).
4. For document types whose lines are items (`Target.needs_items`), every SKU must exist in the
   target — also, for targets that book them as items (`Target.service_items`), the service items of
   shipping, fee and discount lines (`settings.shipping_item`, `fee_item`, `discount_item`); otherwise
   a permanent failure naming the missing SKUs. SKU → item id is cached per target system (one lookup
   for the codes not in the cache). Document types without items (a financial entry) need none of this.
5. Discounts (`settings.discount_lines`, `Target.discount_lines_of`): "separate" books the lines at
   their price before the discount and the discount as one line per VAT rate on the discount item
   (`gateway.model.separate_discounts`); "in_lines" books the lines at their discounted price.
   Order-level discounts (not in the lines) are a discount line either way.
6. The order is committed as the integration's document type (`settings.document_type`, one of the
   target's `documents`) through the integration's mapping, with the ids the document needs
   (`Target.references`: a warehouse, G/L accounts) and `$id('origin')`, what the document is marked with.
A cached id the target rejects (a customer or item deleted there) is forgotten and looked up again, once.
Steady state (known customer, known items) costs one target call per order: the write.

Status write-back (a target that holds the orders the source was given): the SPEC's "order status
written back to the source", see `write_back`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connectors.contract import FlowResult, Source
from gateway import keys
from gateway.errors import KoppelError, PermanentError, Rejected
from gateway.model import Order, separate_discounts
from workers.flows import Work, customers
from workers.flows.customers import UNREAD
from workers.ledger import EARLIER_ATTEMPT, Ledger

log = logging.getLogger("koppel.flows.orders")

DEFAULT_STATUSES = ("processing", "completed")
ITEM_CACHE_TTL = 3600
STATUS_TABLE = "order_statuses"
DEFAULT_WRITE_BACK = {"complete": "completed", "cancelled": "cancelled"}
"""Koppel's defaults, by the canonical status of the source's order (Exact: 21 complete, 45 cancelled)."""
KEEP_STATUSES = ("refunded",)
NOT_IN_TARGET_TTL = 3600


def run(work: Work) -> FlowResult:
    mode = work.target.order_mode_of(work.settings)
    order = work.record("orders")
    assert isinstance(order, Order)
    if mode == "status":
        return write_back(work, order)
    mine, found = _target_order(work, order, ask_target=mode == "both")
    if mine and "status" not in work.target.order_modes:  # nothing to write back: just never booked back
        target = work.target.title
        reason = f"Koppel booked it from {target} order {order.reference}; not booked back into {target}"
        log.info("%s order %s: %s", order.source, order.number, reason)
        return FlowResult("skipped", order.number, calls=0, reason=reason)
    if mine:  # the target's own order, booked into the source: never booked back, its status written back
        return write_back(work, order, found=found)
    return book(work, order)


# -- booking -----------------------------------------------------------------------------------------


def item_cache(work: Work) -> str:
    return keys.cache(work.target.system.id, "items")


def item_codes(work: Work, order: Order) -> list[str]:
    """Every item code the order's lines need, in order, once: SKUs and the service items."""
    missing_sku = [line.name or "?" for line in order.lines if not line.sku]
    if missing_sku:
        raise PermanentError(f"order {order.number}: line(s) without SKU: {', '.join(missing_sku)}")
    settings = work.settings
    codes = [line.sku for line in order.lines if line.sku]
    if not work.target.service_items:
        return list(dict.fromkeys(str(code) for code in codes))
    codes += [settings.get("shipping_item", "SHIPPING")] if order.shipping_lines else []
    codes += [settings.get("fee_item", "FEE")] if order.fees else []
    codes += [settings.get("discount_item", "DISCOUNT")] if any(not d.applied_to_lines for d in order.discounts) else []
    return list(dict.fromkeys(str(code) for code in codes))


def resolve_items(work: Work, codes: list[str], *, cached: Any = customers.UNREAD) -> dict[str, str]:
    """SKU → item id for every code; PermanentError naming the SKUs the target does not know.
    `cached`: the item cache's values for `codes` when read ahead."""
    if not codes:
        return {}
    key = item_cache(work)
    if cached is customers.UNREAD:
        cached = work.connection.hmget(key, codes)
    ids = {code: keys.text(value) for code, value in zip(codes, cached, strict=True) if value}
    missing = [code for code in codes if code not in ids]
    if missing:
        found = work.target.find_items(missing)
        if found:
            with work.connection.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping={sku: item_id for sku, item_id in found.items()})
                pipe.expire(key, ITEM_CACHE_TTL)
                pipe.execute()
        ids.update(found)
        unknown = [code for code in missing if code not in found]
        if unknown:
            raise PermanentError(
                f"order cannot be booked: SKU(s) {', '.join(sorted(unknown))} do not exist as items in "
                f"{work.target.title}; create them there (or let a products flow bring them), then "
                f"`koppel replay --integration {work.integration.id}`"
            )
    return ids


def _expanded(work: Work) -> Order:
    order = work.record("orders", expanded=True)
    assert isinstance(order, Order)
    return order


def _forget(work: Work, order: Order, document: str, codes: list[str]) -> bool:
    """Drop the cached ids this order used (customer, items, the document's references); True if any were."""
    customer_dropped = customers.forget(work, order.customer)
    items_dropped = bool(work.connection.hdel(item_cache(work), *codes)) if codes else False
    references_dropped = work.target.forget("orders", document)
    return customer_dropped or items_dropped or references_dropped


def synced_status(work: Work, order: Order) -> bool:
    """Whether the order's status travels: `settings.order_statuses` (canonical names or the source's
    codes), else the source's `booked_statuses`."""
    statuses = {str(s) for s in work.settings.get("order_statuses", work.source.booked_statuses)}
    code = order.custom_fields.get("status_code")
    return order.status in statuses or (code is not None and str(code) in statuses)


def origin_of(work: Work, order: Order) -> str:
    """"<source system id>:<order id>": what a target order Koppel books is marked with (`Order.origin`)."""
    source = work.integration.source
    endpoint = work.runtime.config.endpoint(source)
    return f"{endpoint.system or source if endpoint is not None else source}:{order.id}"


def book(work: Work, order: Order) -> FlowResult:
    target, settings = work.target, work.settings
    origin_system, _, origin_id = (order.origin or "").partition(":")
    if order.origin and origin_system == target.system.id:
        reason = f"Koppel made it from {target.title} order {origin_id} ({order.origin}); not booked back"
        log.info("%s order %s: %s", order.source, order.number, reason)
        return FlowResult("skipped", order.number, calls=0, reason=reason)
    document = str(settings.get("document_type", target.documents[0]))
    if document not in target.documents:
        raise PermanentError(
            f"settings.document_type {document!r}: {target.title} books {', '.join(target.documents)}"
        )
    ledger = Ledger(work.connection, work.integration.id, "orders")
    separate = target.discount_lines_of(settings) == "separate"
    ahead = _ahead(work, document, separate)
    looked = None
    if ahead is None:
        done, in_flight = ledger.lookup(order.number)
    else:  # the lookup, the in-flight mark (for an order that travels) and the caches: one round trip
        looked = ledger.lookup_mark(order.number, mark=synced_status(work, order), also=_cache_reads(work, *ahead))
        done, in_flight = looked.done, looked.in_flight
    if done and "status" in target.order_modes:
        return write_back(work, order, booked=done)
    if not synced_status(work, order):
        if done and order.status == "cancelled":  # booked before; this target takes no statuses from Koppel
            log.warning("%s order %s is cancelled, but Koppel booked it in %s as %s before; cancel that order "
                        "there by hand", order.source, order.number, target.title, done)  # fmt: skip
        return FlowResult("skipped", order.number, reason=f"status {order.status!r} is not synced")
    before = target.calls
    if done:
        log.info("order %s is already in %s (%s); skipped", order.number, target.kind, done)
        return FlowResult("skipped", order.number, done, 0, f"already in {target.title}")
    if in_flight:  # its mark (and time) kept until the lookup answers
        since = looked.marked_at if looked is not None else ledger.marked_at(order.number)
        existing = target.find_order(document, order.number, since=since)
        if ledger.landed(order.number, existing, work.finish):
            assert existing is not None
            log.info("order %s was booked in %s as %s %s by an earlier attempt that stopped before noting it",
                     order.number, target.kind, document, existing)  # fmt: skip
            calls = target.calls - before
            return FlowResult("created", order.number, existing, calls, EARLIER_ATTEMPT, {"document": document})
    elif target.existing_order_level is not None:
        existing = target.find_order(document, order.number)
        if existing is not None:
            return _existing(work, order, document, existing, target.calls - before)
    if ahead is None:
        order = separate_discounts(_expanded(work), from_lines=separate)
        codes = item_codes(work, order) if document in target.needs_items else []
        cached_customer, *cached_items = ledger.mark(order.number, also=_cache_reads(work, order, codes))
    else:  # marked already (or found in flight, its mark kept), the caches read with the lookup
        assert looked is not None
        (order, codes), (cached_customer, *cached_items) = ahead, looked.also
    label = f"{work.envelope.source} order {order.number}"
    guest = bool(settings.get("guest_orders")) or not target.customer_accounts
    writing = False
    try:
        for attempt in (1, 2):
            first = attempt == 1  # the cache entries read with the in-flight marker; read again after `_forget`
            context: dict[str, Any] = {"origin": origin_of(work, order)}
            if guest:
                how = "guest"
            else:
                context["account"], how = customers.resolve(
                    work, order.customer, label=label, cached=cached_customer if first else customers.UNREAD
                )
            item_ids = resolve_items(
                work, codes, cached=(cached_items[0] if codes else []) if first else customers.UNREAD
            )
            context |= {"items": item_ids, **target.references(document)}
            payload = work.mapped("orders", order, context, label=label)
            try:
                writing = True
                target_id = target.create_order(document, payload)
                break
            except Rejected:
                # A cached id the target no longer knows (a customer or item deleted or merged there):
                # forget the cached ids this order used and resolve them again, once.
                writing = False  # refused: nothing was written
                if attempt == 2 or not _forget(work, order, document, codes):
                    raise
                log.info("order %s: %s rejected cached ids; looking them up again", order.number, target.kind)
    except Exception:
        # Failed before the document's write could reach the target (a customer lookup rate-limited, a
        # missing SKU, a write refused): the retry owes no lookup. A write that may have landed (a
        # timeout) keeps the marker.
        if not writing:
            ledger.unmark(order.number)
        raise
    ledger.record(order.number, target_id, work.finish)  # sent with the lock's release, with the activity line
    log.info("order %s booked in %s as %s %s", order.number, target.kind, document, target_id)
    detail = {"document": document, "account": how}
    return FlowResult("created", order.number, target_id, target.calls - before, detail=detail)


def _ahead(work: Work, document: str, separate: bool) -> tuple[Order, list[str]] | None:
    """The order as booked and its item codes, made before the ledger lookup so that the customer's and the
    items' cache entries are read in its round trip (`Ledger.lookup_mark`) — when that costs nothing the lookup
    could have spared: the source's `expand` gives the record as read (no call; normalised once, `Work.record`)
    and the target is asked nothing before a booking (no `existing_order_level`). None otherwise, and when
    making them fails (a line without SKU): that failure then comes where it always did, after the lookup."""
    if type(work.source).expand is not Source.expand or work.target.existing_order_level is not None:
        return None
    try:
        order = separate_discounts(_expanded(work), from_lines=separate)
        codes = item_codes(work, order) if document in work.target.needs_items else []
        customers.cache_field(work, order.customer)
    except KoppelError:
        return None
    return order, codes


def _cache_reads(work: Work, order: Order, codes: list[str]) -> Callable[[Any], None]:
    """Queues the reads of the order's customer's cache entry and its items' (when `codes`)."""

    def read(pipe: Any) -> None:
        pipe.hget(customers.cache_key(work), customers.cache_field(work, order.customer))
        if codes:
            pipe.hmget(item_cache(work), codes)

    return read


def _existing(work: Work, order: Order, document: str, target_id: str, calls: int) -> FlowResult:
    """An order found in the target that Koppel's ledger does not hold (booked by hand, by another tool, or
    before the ledger was lost): skipped, never booked twice, logged at the target's `existing_order_level`.
    The ledger is not told: Koppel did not book it, and a number reused in the source is found again."""
    target = work.target
    level = target.existing_order_level or logging.INFO
    label = target.order_label(document, target_id)
    reason = f"already in {target.title} as {label}, not booked by Koppel; skipped"
    log.log(level, "%s order %s: %s", order.source, order.number, reason)
    name = logging.getLevelName(level).lower() if level >= logging.ERROR else ""
    return FlowResult("skipped", order.number, target_id, calls, reason, level=name)


# -- status write-back -------------------------------------------------------------------------------


def target_status(work: Work, code: str, status: str | None) -> str | None:
    """The target's status for the source's `code` / canonical `status`, or None for "no change".

    The mapping table `order_statuses` is looked up by the source's code ("21") and then by Koppel's
    name ("complete"); a key the table lacks takes the table's `default`, else Koppel's
    (`DEFAULT_WRITE_BACK`). An empty value means "no change"."""
    table = work.tables().get(STATUS_TABLE)
    wanted = [k for k in (code, status) if k]
    if table is not None:
        for key in wanted:
            found, value = table.find(key)
            if found:
                return str(value) if value else None
        if table.has_default:
            return str(table.default) if table.default else None
    return DEFAULT_WRITE_BACK.get(status or "")


def _booking_ledgers(work: Work) -> list[str]:
    """The integrations that book this target's orders into this integration's source, whatever document
    type they book (sales orders, invoices): their ledgers say which source document a target order
    number became (`settings.shop_integration` names one). This integration's source may be an endpoint (the
    source's webhooks): those integrations book into the system behind it."""
    named = work.settings.get("shop_integration")
    if named:
        return [str(named)]
    config = work.runtime.config
    source = work.integration.source
    endpoint = config.endpoint(source)
    sources = {source, endpoint.system} if endpoint is not None and endpoint.system else {source}
    found = []
    for other in config.integrations:
        from_target = config.source_kind(other.source) == work.target.kind
        if from_target and other.target in sources and "orders" in other.flows:
            found.append(other.id)
    return found


def _booked_as(work: Work, ref: str) -> list[str]:
    """The source documents the booking integrations' ledgers hold for the target order `ref`."""
    ledgers = _booking_ledgers(work)
    if not ledgers:
        return []
    with work.connection.pipeline(transaction=False) as pipe:
        for integration in ledgers:
            pipe.hget(keys.ledger(integration, "orders"), ref)
        values = pipe.execute()
    return [keys.text(v) for v in values if v]


def _find_target_order(work: Work, ref: str) -> tuple[str, str] | None:
    """(target id, status) of the target's order `ref`; a "no" is remembered for an hour."""
    absent = keys.cache(work.target.system.id, "no-order", ref)
    found = None if work.connection.exists(absent) else work.target.order_status(ref)
    if found is None:
        work.connection.set(absent, "1", ex=NOT_IN_TARGET_TTL)
    return found


def _target_order(work: Work, order: Order, *, ask_target: bool) -> tuple[bool, Any]:
    """Whether the source's order is one of the target's own (booked from the target into the source),
    and what the target said of it (`UNREAD` when not asked). A booking integration's ledger decides:
    it holds this order under the reference. Without a ledger entry, `ask_target` asks the target."""
    ref = order.reference
    if not ref:
        return False, UNREAD
    booked = _booked_as(work, ref)
    if booked:
        return any(b.lower() == order.id.lower() for b in booked), UNREAD
    if not ask_target or "status" not in work.target.order_modes or not _could_be_target_order(work, order):
        return False, UNREAD
    found = _find_target_order(work, ref)
    if found is None or not _points_back(work, order, ref, found[0]):
        return False, UNREAD
    return True, found


def _points_back(work: Work, order: Order, ref: str, target_id: str) -> bool:
    """Whether the target's order `ref`, which no ledger ties to the source's order, is the one the source's
    order was made from (by hand, or by another tool) and not a customer's own reference that merely looks
    like the target's numbers: the two orders' customers have the same e-mail address. Costs the source's
    expansion (its customer) and one target call, only for references no ledger knows."""
    expanded = _expanded(work)
    mine = expanded.customer.email or (expanded.billing_address.email if expanded.billing_address else None)
    theirs = work.target.order_email(target_id)
    if mine and theirs and mine.strip().casefold() == theirs.strip().casefold():
        return True
    log.info("%s order %s: its reference %s is %s order %s, whose customer is another: not the %s's order",
             order.source, order.number, ref, work.target.kind, target_id, work.target.title)  # fmt: skip
    return False


def _could_be_target_order(work: Work, order: Order) -> bool:
    """Not an order Koppel itself booked (those are in this integration's ledger)."""
    return Ledger(work.connection, work.integration.id, "orders").created(order.number) is None


def write_back(work: Work, order: Order, *, found: Any = UNREAD, booked: str | None = None) -> FlowResult:
    """The source order's status, written to the target order it was made from — or, with `booked`, to
    the target order Koppel booked from it (the ledger's target id).

    1. The status is translated by `target_status`; statuses that change nothing cost no call.
    2. Not the target's order → skipped (not failed): no reference (`Order.reference`, Exact's YourRef),
       or no order with that number in the target (remembered for an hour). When integrations book
       this target's orders into the source, their ledgers must agree: an order whose reference a
       ledger holds for another source document is a copy or a hand-typed reference.
    3. Idempotent: a target order that already has the status (or one in `settings.keep_statuses`,
       default `refunded`) is left alone.
    """
    target = work.target
    code = str(order.custom_fields.get("status_code") or "")
    label = f"{work.source.title} status " + (f"{code} {order.status or ''}".strip() or "(none)")
    ref = booked or order.reference or ""
    wanted = target_status(work, code, order.status)
    if wanted is None:
        why = f"already in {target.title} ({booked}); " if booked else ""
        return FlowResult("skipped", order.number, booked or "", 0, f"{why}{label} changes nothing in {target.title}")
    wanted = target.status_code(wanted)
    if not ref:
        return FlowResult("skipped", order.number, calls=0, reason=f"not a {target.title} order (no reference)")
    if not booked and found is UNREAD:
        ids = _booked_as(work, ref)
        if ids and not any(b.lower() == order.id.lower() for b in ids):
            reason = f"not a {target.title} order: order {ref} was booked as {work.source.title} order {ids[0]}"
            return FlowResult("skipped", order.number, calls=0, reason=reason)
    before = target.calls
    if booked:
        found = target.order_status(booked, by_id=True)
    elif found is UNREAD:
        found = _find_target_order(work, ref)
    if found is None:
        what = f"the order Koppel booked ({booked}) is gone" if booked else f"{target.title} has no order {ref}"
        reason = f"not a {target.title} order: {what}"
        return FlowResult("skipped", order.number, calls=target.calls - before, reason=reason)
    target_id, current = found
    detail = {"shop_order": ref}
    keep = work.settings.get("keep_statuses", KEEP_STATUSES)
    if current == wanted or current in keep:
        why = f"already {current}" if current == wanted else f"is {current}, which Koppel leaves alone"
        log.info("%s order %s: %s order %s %s; skipped", order.source, order.number, target.kind, ref, why)
        reason = f"{target.title} order {ref} {why}"
        return FlowResult("skipped", order.number, target_id, target.calls - before, reason, detail)
    try:
        target.set_order_status(target_id, wanted)
    except Rejected as exc:
        where = f"{work.source.title} order {order.number} → {target.title} order {ref} ({wanted})"
        raise PermanentError(f"{where}: {exc}") from exc
    log.info("%s order %s (status %s): %s order %s %s → %s", order.source, order.number, label, target.kind, ref,
             current, wanted)  # fmt: skip
    reason = f"status {current} → {wanted} ({label})"
    return FlowResult("updated", order.number, target_id, target.calls - before, reason, detail)
