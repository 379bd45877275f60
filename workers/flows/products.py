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
   updates it, and reports it "created" — the attempt that created it never did. Creations that arrive
   together (`run_many`) are all marked in one round trip, then made in one batch (`Target.create_products`:
   WooCommerce's `products/batch`, 100 a request); one the target refuses because an item holds its SKU
   already is looked up and updated instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.contract import FlowResult, Outcome
from gateway import keys
from gateway.errors import KoppelError, NotFound, PermanentError, Rejected, Taken
from gateway.model import Product, Variant
from gateway.payload import dumps
from transforms import effective_mapping
from transforms.expressions import Expression, ExpressionError
from transforms.functions import FUNCTIONS
from transforms.integration import update_switches
from workers.flows import Outcomes, Work, fail, finished, prepared, spread
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


@dataclass(frozen=True)
class _Plan:
    """What writing one item takes: `outcome` "unchanged" (nothing), "updated" or "created earlier" (`update`
    sent to `item_id`; `sent` its fingerprint), "created" (`payload` created)."""

    sku: str
    outcome: str
    payload: dict[str, Any]
    item_id: str | None = None
    update: dict[str, Any] = field(default_factory=dict)
    sent: str = ""


def _plan(work: Work, record: Product, known: dict[str, str], earlier: set[str]) -> _Plan:
    """How the item is written: "unchanged" when the update would send what Koppel last sent for this item;
    "created earlier" for an item an earlier attempt (its SKU in `earlier`, marked in flight) created without
    noting it (what the target holds may be older than this record: always updated)."""
    sku = record.sku or ""
    payload = work.mapped("products", record, label=f"{work.envelope.source} product {sku}")
    item_id = known.get(sku)
    if item_id is None:
        return _Plan(sku, "created", payload)
    update = _update_fields(work, payload)
    sent = _fingerprint(item_id, update)
    if sku in earlier:
        return _Plan(sku, "created earlier", payload, item_id, update, sent)
    last = work.connection.hget(_sent_key(work), sku)
    outcome = "unchanged" if last is not None and keys.text(last) == sent else "updated"
    return _Plan(sku, outcome, payload, item_id, update, sent)


def _fingerprint(item_id: str, update: dict[str, Any]) -> str:
    return f"{item_id}:{hashlib.sha256(dumps(update).encode()).hexdigest()[:16]}"


def _write(work: Work, plan: _Plan) -> tuple[str, str]:
    """(outcome, item id) of the item's create-or-update, as planned; an item deleted in the target since is
    created again."""
    if plan.item_id is None or plan.outcome == "unchanged":
        return (plan.outcome, plan.item_id) if plan.item_id is not None else _create(work, plan)
    try:
        work.target.update_product(plan.item_id, plan.update)
    except NotFound:
        return _create(work, plan)
    return _updated(work, plan)


def _updated(work: Work, plan: _Plan) -> tuple[str, str]:
    assert plan.item_id is not None
    _remember(work, plan.sku, plan.item_id, plan.sent)
    return plan.outcome, plan.item_id


def _create(work: Work, plan: _Plan) -> tuple[str, str]:
    """Create the item (marked in flight first: kept if this dies, the target may have the item); an id
    cached for it is dropped (deleted in the target since)."""
    if plan.item_id is not None:
        work.connection.hdel(item_cache(work), plan.sku)
    _flight(work).mark(plan.sku)
    item_id = work.target.create_product(plan.payload)
    _remember(work, plan.sku, item_id, _fingerprint(item_id, _update_fields(work, plan.payload)))
    return "created", item_id


def _remember(work: Work, sku: str, item_id: str, sent: str) -> None:
    """The item id in the item cache (orders read it) and what its next update would repeat; no longer in
    flight."""
    _Notes(remember=[(sku, item_id, sent)]).send(work)


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


Travelling = tuple[str, list[Product], list[str]]
"""A product's label, the items that travel, and why the others do not ("<sku>: <why>")."""


def run(work: Work) -> FlowResult:
    travelling = _travelling(work)
    if isinstance(travelling, FlowResult):
        return travelling
    label, items, left_out = travelling
    before = work.target.calls
    known, earlier = _known(work, [item.sku or "" for item in items])
    outcomes = [(item.sku, *_write(work, _plan(work, item, known, earlier))) for item in items]
    return _result(work, label, outcomes, left_out, work.target.calls - before)


def run_many(works: list[Work]) -> Outcomes:
    """`run` for the products of many events at once (workers/flows `batch_function`): the items' ids looked up
    together, their updates written together (`Target.update_products`), then their creations together
    (`Target.create_products`: every SKU marked in flight first, in one round trip) — an item deleted in the
    target since (its update answered NotFound) among them; the target's id, fingerprint and in-flight mark of
    every written item noted in one round trip. A creation the target refuses because an item holds its SKU
    already (`Taken`: another writer's, or one made since the lookup) is looked up and updated instead. All these
    calls are shared out over the products (`spread`). A product whose item fails gets that error; the others
    are unaffected."""
    outcomes: list[FlowResult | Exception | None] = [None] * len(works)
    travelling = prepared(works, _travelling, outcomes)
    if not travelling:
        return finished(outcomes)
    first = works[next(iter(travelling))]
    before = first.target.calls
    try:
        known, earlier = _known(first, [item.sku or "" for _, items, _ in travelling.values() for item in items])
    except KoppelError as exc:  # the lookup all of them needed: each product fails with it
        return finished(fail(outcomes, travelling, exc))
    plans: dict[int, list[_Plan]] = {}
    for position, (_, items, _) in travelling.items():
        try:
            plans[position] = [_plan(works[position], item, known, earlier) for item in items]
        except KoppelError as exc:
            outcomes[position] = exc
    notes = _Notes()
    written = _write_many(works, [(p, plan) for p, planned in plans.items() for plan in planned], notes)
    notes.send(first)
    shared = first.target.calls - before
    for position, planned in plans.items():
        answers = [written[position, plan.sku] for plan in planned]
        error = next((answer for answer in answers if isinstance(answer, Exception)), None)
        if error is not None:
            outcomes[position] = error
            continue
        label, _, left_out = travelling[position]
        done = [(plan.sku, *answer) for plan, answer in zip(planned, answers, strict=True)
                if not isinstance(answer, Exception)]  # fmt: skip
        outcomes[position] = _result(works[position], label, done, left_out, 0)
    spread(outcomes, list(travelling), shared)
    return finished(outcomes)


Key = tuple[int, str]
"""A planned item in a batch: its product's position and its SKU."""
Written = tuple[str, str] | Exception
"""What became of a planned item: (outcome, item id), or the error it alone met."""


@dataclass
class _Notes:
    """What a batch noted about its items, sent in one round trip: (sku, item id, fingerprint) of each written
    item (`_remember`), and the SKUs whose creation the target refused (no longer in flight)."""

    remember: list[tuple[str, str, str]] = field(default_factory=list)
    unmark: list[str] = field(default_factory=list)

    def send(self, work: Work) -> None:
        if not self.remember and not self.unmark:
            return
        flight = _flight(work).flight
        with work.connection.pipeline(transaction=False) as pipe:
            if self.remember:
                pipe.hset(item_cache(work), mapping={sku: item_id for sku, item_id, _ in self.remember})
                pipe.hdel(flight, *[sku for sku, _, _ in self.remember])
                pipe.hset(_sent_key(work), mapping={sku: sent for sku, _, sent in self.remember})
                pipe.expire(_sent_key(work), SENT_TTL)
            if self.unmark:
                pipe.hdel(flight, *self.unmark)
            pipe.execute()


def _write_many(works: list[Work], pending: list[tuple[int, _Plan]], notes: _Notes) -> dict[Key, Written]:
    """Every planned item written: unchanged ones not at all, updates in one `update_products`, creations (and
    items deleted in the target since) in one `create_products`."""
    written: dict[Key, Written] = {(p, plan.sku): (plan.outcome, plan.item_id) for p, plan in pending
                                   if plan.outcome == "unchanged" and plan.item_id is not None}  # fmt: skip
    updates = [(p, plan) for p, plan in pending if plan.item_id is not None and plan.outcome != "unchanged"]
    creations = [(p, plan) for p, plan in pending if plan.item_id is None]
    target = works[updates[0][0]].target if updates else None
    errors = target.update_products([(plan.item_id or "", plan.update) for _, plan in updates]) if target else []
    for (position, plan), error in zip(updates, errors, strict=True):
        if error is None:
            written[position, plan.sku] = (plan.outcome, plan.item_id or "")
            notes.remember.append((plan.sku, plan.item_id or "", plan.sent))
        elif isinstance(error, NotFound):
            creations.append((position, plan))  # deleted in the target since: created again
        else:
            written[position, plan.sku] = error
    if creations:
        written |= _create_many(works, creations, notes)
    return written


def _create_many(works: list[Work], creations: list[tuple[int, _Plan]], notes: _Notes) -> dict[Key, Written]:
    """The items created with one `create_products`, every SKU marked in flight first (one round trip, the ids
    cached for items deleted in the target since dropped in it): a worker killed before the answer leaves them
    marked, and the retry finds what the target made by SKU (`_known`, "created earlier"). A SKU the target
    says an item holds already (`Taken`) is looked up and updated (`_update_taken`)."""
    work = works[creations[0][0]]
    stale = [plan.sku for _, plan in creations if plan.item_id is not None]
    _flight(work).mark_many([plan.sku for _, plan in creations],
                            (lambda pipe: pipe.hdel(item_cache(work), *stale)) if stale else None)  # fmt: skip
    answers = work.target.create_products([plan.payload for _, plan in creations])
    out: dict[Key, Written] = {}
    taken: list[tuple[int, _Plan, Taken]] = []
    for (position, plan), answer in zip(creations, answers, strict=True):
        if isinstance(answer, Taken):
            taken.append((position, plan, answer))
        elif isinstance(answer, Exception):
            out[position, plan.sku] = answer
            if isinstance(answer, Rejected):  # refused (4xx): nothing was made, no lookup is owed
                notes.unmark.append(plan.sku)
        else:
            out[position, plan.sku] = ("created", answer)
            sent = _fingerprint(answer, _update_fields(works[position], plan.payload))
            notes.remember.append((plan.sku, answer, sent))
    if taken:
        out |= _update_taken(works, taken, notes)
    return out


def _update_taken(works: list[Work], taken: list[tuple[int, _Plan, Taken]], notes: _Notes) -> dict[Key, Written]:
    """The creations refused because an item holds their SKU: those items looked up (one call) and updated with
    the fields of the update groups switched on (one `update_products`), reported "updated"; a SKU the lookup
    does not find keeps the refusal."""
    target = works[taken[0][0]].target
    try:
        found = target.find_items([plan.sku for _, plan, _ in taken])
    except KoppelError as exc:
        return {(position, plan.sku): exc for position, plan, _ in taken}
    out: dict[Key, Written] = {}
    updates: list[tuple[int, _Plan, str, dict[str, Any]]] = []
    for position, plan, refusal in taken:
        item_id = found.get(plan.sku)
        if item_id is None:
            out[position, plan.sku] = refusal
        else:
            updates.append((position, plan, item_id, _update_fields(works[position], plan.payload)))
    errors = target.update_products([(item_id, update) for _, _, item_id, update in updates]) if updates else []
    for (position, plan, item_id, update), error in zip(updates, errors, strict=True):
        if error is not None:
            out[position, plan.sku] = error
            continue
        log.info("product SKU %s: %s has an item with it already (%s); updated it instead", plan.sku,
                 target.kind, item_id)  # fmt: skip
        out[position, plan.sku] = ("updated", item_id)
        notes.remember.append((plan.sku, item_id, _fingerprint(item_id, update)))
    return out


def _travelling(work: Work) -> Travelling | FlowResult:
    """The product's items that travel, or its skip (no item travels)."""
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
    return label, travelling, left_out


def _result(work: Work, label: str, outcomes: Sequence[tuple[str | None, str, str]], left_out: list[str],
            calls: int) -> FlowResult:  # fmt: skip
    """The product's activity entry from its items' (sku, outcome, item id)."""
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
    return FlowResult(outcome, label, target_ids, calls, ", ".join(parts))
