"""Products, as the SPEC's Products section describes them: matched on SKU, created when missing,
else updated.

1. A product without a SKU cannot be matched: a permanent failure naming it.
2. `settings.product_filter` (a mapping expression over the canonical product, e.g.
   `published and type != 'virtual'`) decides which products travel; the others are skipped.
3. SKU → item id comes from the target system's item cache (the one orders use), else a lookup;
   the target is asked again when its cached id is rejected.
4. Create and update use the same mapping; the target's `update_product` decides which field groups
   an update may overwrite (what a bookkeeper enriched in the target survives).
A product with variants writes each variant that has a SKU as its own item; the product's own SKU is
written when it has no variants.
"""

from __future__ import annotations

import logging

from connectors.contract import FlowResult, Outcome
from gateway import keys
from gateway.errors import NotFound, PermanentError
from gateway.model import Product
from transforms.expressions import Expression, ExpressionError
from transforms.functions import FUNCTIONS
from workers.flows import Work
from workers.flows.orders import item_cache

log = logging.getLogger("koppel.flows.products")


def _wanted(work: Work, product: Product) -> bool:
    source = work.settings.get("product_filter")
    if not source:
        return True
    try:
        expression = work.runtime.cached(f"filter:{work.integration.id}", lambda: Expression(str(source), FUNCTIONS))
        return bool(expression.evaluate(product.model_dump(mode="json"), {}))
    except ExpressionError as exc:
        raise PermanentError(f"settings.product_filter: {exc}") from exc


def _write(work: Work, sku: str, record: Product) -> tuple[str, str]:
    """(outcome, item id) of one SKU's create-or-update."""
    target, connection, key = work.target, work.connection, item_cache(work)
    payload = work.mapping("products").apply(record, label=f"{work.envelope.source} product {sku}")
    cached = connection.hget(key, sku)
    item_id = keys.text(cached) if cached else target.find_items([sku]).get(sku)
    if item_id is not None:
        try:
            target.update_product(item_id, payload)
            connection.hset(key, sku, item_id)
            return "updated", item_id
        except NotFound:
            connection.hdel(key, sku)  # deleted in the target since: create it again
    item_id = target.create_product(payload)
    connection.hset(key, sku, item_id)
    return "created", item_id


def run(work: Work) -> FlowResult:
    product = work.record("products")
    assert isinstance(product, Product)
    label = product.sku or product.id or "(no id)"
    if not _wanted(work, product):
        return FlowResult("skipped", label, reason="left out by settings.product_filter")
    records = [
        (variant.sku, product.model_copy(update={"sku": variant.sku, "variants": [variant]}))
        for variant in product.variants
        if variant.sku
    ] or ([(product.sku, product)] if product.sku else [])
    if not records:
        raise PermanentError(f"{work.envelope.source} product {label}: no SKU to match it on in {work.target.title}")
    before = work.target.calls
    outcomes = [(sku, *_write(work, sku, record)) for sku, record in records]
    created = sum(outcome == "created" for _, outcome, _ in outcomes)
    log.info("product %s: %d item(s) written to %s, %d new", label, len(outcomes), work.target.kind, created)
    outcome: Outcome = "created" if created else "updated"
    target_ids = ",".join(item_id for _, _, item_id in outcomes)
    reason = f"{len(outcomes)} item(s), {created} created" if len(outcomes) > 1 else ""
    return FlowResult(outcome, label, target_ids, work.target.calls - before, reason)
