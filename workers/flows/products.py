"""Products, as the SPEC's Products section describes them: matched on SKU, created when missing,
else updated.

1. The product becomes its items: each variant with a SKU is an item of its own (a variable parent is
   never one; a variant arriving on its own is its one item); a product without variants is one item.
   An item's record is the product with the variant's SKU, prices, EAN, image and publication laid
   over it, the variant under `variants[0]` (the mapping builds the description from its options).
2. Only published items travel unless `settings.sync_unpublished_products` is true (a draft or
   private product, or a disabled variation, is skipped until it is published).
3. `settings.product_filter` (a mapping expression over the item's record, e.g.
   `type != 'virtual' and 'outlet' in categories`) decides which items travel; one it leaves out is
   skipped alone (the product's other variations still travel).
4. SKU → item id comes from the target system's item cache (the one orders use), else one lookup for
   all the product's SKUs; the target is asked again when its cached id is rejected.
5. Create writes every field of the mapping; an update only the fields of the update groups switched
   on (`settings.product_update`, the mapping's `update_groups`): what a bookkeeper enriched in the
   target survives.
6. An update identical to what Koppel last sent for that item (a fingerprint per integration and SKU,
   kept a day) is not sent: a shop saves a product for many reasons (its stock moves with every
   order) and the target's API budget is not spent on them.
7. A creation is marked in flight first (workers/ledger.py, by SKU; no ledger is kept: the target is
   asked by SKU anyway): the retry of a worker killed after the target took the item finds it by SKU,
   updates it, and reports it "created" — the attempt that created it never did.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from connectors.contract import FlowResult, Outcome
from gateway import keys
from gateway.errors import NotFound, PermanentError
from gateway.model import Product, Variant
from gateway.payload import dumps
from transforms import effective_mapping
from transforms.expressions import Expression, ExpressionError
from transforms.functions import FUNCTIONS
from transforms.integration import update_switches
from workers.flows import Work
from workers.flows.orders import item_cache
from workers.ledger import EARLIER_ATTEMPT, Ledger

log = logging.getLogger("koppel.flows.products")

SENT_TTL = 24 * 3600


def items_of(product: Product) -> list[Product]:
    """The records of the items a product is: one per variant with a SKU, else the product itself."""
    if product.variants:
        return [_item(product, variant) for variant in product.variants if variant.sku]
    if product.type == "variable":
        return []  # its variations were not read: the parent alone is not an item
    return [product] if product.sku else []


def _item(product: Product, variant: Variant) -> Product:
    images = [variant.image, *(i for i in product.images if i != variant.image)] if variant.image else product.images
    priced = variant.price_excl is not None or variant.price_incl is not None
    return product.model_copy(
        update={
            "id": variant.id or product.id,
            "sku": variant.sku,
            "type": "virtual" if variant.virtual else "variation",
            "parent_id": product.parent_id or (product.id if product.type == "variable" else None),
            "variants": [variant],
            "price_excl": variant.price_excl if priced else product.price_excl,
            "price_incl": variant.price_incl if priced else product.price_incl,
            "ean": variant.ean,
            "images": images,
            "published": product.published and variant.published,
            "stock_quantity": variant.stock_quantity,
            "manage_stock": variant.manage_stock,
        }
    )


def _filter(work: Work) -> Expression | None:
    source = work.settings.get("product_filter")
    if not source:
        return None
    try:
        found: Expression = work.runtime.cached(
            f"filter:{work.integration.id}", lambda: Expression(str(source), FUNCTIONS)
        )
        return found
    except ExpressionError as exc:
        raise PermanentError(f"settings.product_filter: {exc}") from exc


def _left_out(work: Work, item: Product) -> str | None:
    """Why the item does not travel, or None."""
    if not item.published and not work.settings.get("sync_unpublished_products"):
        return "not published (settings.sync_unpublished_products = false)"
    expression = _filter(work)
    if expression is None:
        return None
    try:
        wanted = bool(expression.evaluate(item.model_dump(mode="json", exclude_none=True), {}))
    except ExpressionError as exc:
        raise PermanentError(f"settings.product_filter: {exc}") from exc
    return None if wanted else "left out by settings.product_filter"


def _update_fields(work: Work, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload an update sends: the fields of the update groups switched on."""
    integration, kind = work.integration, work.target.kind
    default = work.runtime.cached(
        f"mapping-default:{integration.id}:products:{kind}",
        lambda: effective_mapping(integration, "products", kind).default,
    )
    allowed = default.update_fields(update_switches(integration, "products"), payload)
    return {name: value for name, value in payload.items() if name in allowed}


def _sent_key(work: Work) -> str:
    return keys.cache(work.integration.id, "products-sent")


def _flight(work: Work) -> Ledger:
    return Ledger(work.connection, work.integration.id, "products", keep=False)


def _write(work: Work, record: Product, known: dict[str, str], earlier: set[str]) -> tuple[str, str]:
    """(outcome, item id) of one item's create-or-update; "unchanged" when the update would send what
    Koppel last sent for this item; "created earlier" for an item that an earlier attempt (its SKU in
    `earlier`, marked in flight) created without noting it."""
    sku = record.sku or ""
    target, connection, key = work.target, work.connection, item_cache(work)
    payload = work.mapped("products", record, label=f"{work.envelope.source} product {sku}")
    item_id = known.get(sku)
    if item_id is not None and sku in earlier:  # what the target holds may be older than this record
        update = _update_fields(work, payload)
        try:
            target.update_product(item_id, update)
            _remember(work, sku, item_id, f"{item_id}:{hashlib.sha256(dumps(update).encode()).hexdigest()[:16]}")
            return "created earlier", item_id
        except NotFound:
            connection.hdel(key, sku)  # deleted in the target since: create it again
            item_id = None
    if item_id is not None:
        update = _update_fields(work, payload)
        sent = f"{item_id}:{hashlib.sha256(dumps(update).encode()).hexdigest()[:16]}"
        last = connection.hget(_sent_key(work), sku)
        if last is not None and keys.text(last) == sent:
            return "unchanged", item_id
        try:
            target.update_product(item_id, update)
            _remember(work, sku, item_id, sent)
            return "updated", item_id
        except NotFound:
            connection.hdel(key, sku)  # deleted in the target since: create it again
    _flight(work).mark(sku)  # kept if this dies: the target may have the item
    item_id = target.create_product(payload)
    update = _update_fields(work, payload)
    _remember(work, sku, item_id, f"{item_id}:{hashlib.sha256(dumps(update).encode()).hexdigest()[:16]}")
    return "created", item_id


def _remember(work: Work, sku: str, item_id: str, sent: str) -> None:
    """The item id in the item cache (orders read it) and what its next update would repeat; no longer in
    flight."""
    with work.connection.pipeline(transaction=False) as pipe:
        pipe.hset(item_cache(work), sku, item_id)
        pipe.hdel(_flight(work).flight, sku)
        pipe.hset(_sent_key(work), sku, sent)
        pipe.expire(_sent_key(work), SENT_TTL)
        pipe.execute()


def _known(work: Work, skus: list[str]) -> tuple[dict[str, str], set[str]]:
    """SKU → the target's item id, from the item cache, the rest in one lookup; and the SKUs whose creation
    is in flight (read with the cache)."""
    if not skus:
        return {}, set()
    with work.connection.pipeline(transaction=False) as pipe:
        pipe.hmget(item_cache(work), skus)
        pipe.hmget(_flight(work).flight, skus)
        cached, flying = pipe.execute()
    known = {sku: keys.text(value) for sku, value in zip(skus, cached, strict=True) if value}
    missing = [sku for sku in skus if sku not in known]
    if missing:
        known.update(work.target.find_items(missing))
    return known, {sku for sku, mark in zip(skus, flying, strict=True) if mark}


def run(work: Work) -> FlowResult:
    product = work.record("products")
    assert isinstance(product, Product)
    label = product.sku or product.id or "(no id)"
    items = items_of(product)
    if not items:
        if product.type == "variable":
            return FlowResult("skipped", label, reason="a variable product without variations with a SKU")
        raise PermanentError(f"{work.envelope.source} product {label}: no SKU to match it on in {work.target.title}")
    travelling: list[Product] = []
    left_out: list[str] = []
    for item in items:
        why = _left_out(work, item)
        if why is None:
            travelling.append(item)
        else:
            left_out.append(f"{item.sku}: {why}")
    if not travelling:
        reason = left_out[0].split(": ", 1)[1] if len(left_out) == 1 else "; ".join(left_out)
        return FlowResult("skipped", label, reason=reason)
    before = work.target.calls
    known, earlier = _known(work, [item.sku or "" for item in travelling])
    outcomes = [(item.sku, *_write(work, item, known, earlier)) for item in travelling]
    created = sum(outcome in ("created", "created earlier") for _, outcome, _ in outcomes)
    unchanged = sum(outcome == "unchanged" for _, outcome, _ in outcomes)
    log.info("product %s: %d item(s) written to %s, %d new, %d unchanged", label, len(outcomes) - unchanged,
             work.target.kind, created, unchanged)  # fmt: skip
    outcome: Outcome = "created" if created else "skipped" if unchanged == len(outcomes) else "updated"
    target_ids = ",".join(item_id for _, _, item_id in outcomes)
    parts = [f"{len(outcomes)} item(s), {created} created"] if len(outcomes) > 1 else []
    parts += [f"{unchanged} unchanged since Koppel last sent them"] if unchanged and len(outcomes) > 1 else []
    parts += ["unchanged since Koppel last sent it"] if unchanged and len(outcomes) == 1 else []
    parts += [f"skipped {'; '.join(left_out)}"] if left_out else []
    parts += [EARLIER_ATTEMPT] if any(outcome == "created earlier" for _, outcome, _ in outcomes) else []
    return FlowResult(outcome, label, target_ids, work.target.calls - before, ", ".join(parts))
