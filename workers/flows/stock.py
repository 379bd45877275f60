"""Stock, as the SPEC's Stock section describes it: update-only, matched on SKU.

1. `settings.stock_warehouse` (a warehouse or location code) chooses the one the shop sells from
   when the source keeps stock in several; other locations are skipped.
2. Only products that exist in the target are updated. A missing SKU is a warning naming it:
   outcome "skipped", not a failure; the miss is remembered for an hour, so a busy item the target
   does not sell costs one lookup an hour.
3. What is sent comes from the integration's stock mapping (default for a shop: quantity = available,
   rounded; the target manages stock for the item).
4. No write when the target already holds it (`Target.stock_change` says what would change).
A record the target deleted between read and write is looked up again, once.
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.contract import FlowResult, StockRecord
from gateway import keys
from gateway.errors import KoppelError, NotFound
from gateway.model import StockLevel
from workers.flows import Outcomes, Work, fail, finished, prepared, spread

log = logging.getLogger("koppel.flows.stock")

MISSING_TTL = 3600
Wanted = tuple[str, dict[str, Any]]
"""A record's SKU and the fields the mapping sends for it."""


def run(work: Work) -> FlowResult:
    wanted = _wanted(work)
    if isinstance(wanted, FlowResult):
        return wanted
    sku, fields = wanted
    target = work.target
    before = target.calls
    for attempt in (1, 2):
        current = None if work.connection.exists(_missing(work, sku)) else target.find_stock(sku)
        verdict = _verdict(work, sku, current, fields, target.calls - before)
        if isinstance(verdict, FlowResult):
            return verdict
        assert current is not None  # a verdict to write has a record to write to
        try:
            target.write_stock(current, fields)
            return _updated(work, sku, current, verdict, target.calls - before)
        except NotFound:
            target.forget("stock", sku)  # deleted since it was read: look the SKU up again, once
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def run_many(works: list[Work]) -> Outcomes:
    """`run` for the records of many events at once (workers/flows `batch_function`): the SKUs the target is
    not known to lack looked up together (`Target.find_stocks`), the changed ones written together
    (`Target.write_stocks`); those calls are shared out over the records (`spread`). A record deleted in the
    target since it was read goes through `run` alone (looked up again, once)."""
    outcomes: list[FlowResult | Exception | None] = [None] * len(works)
    wanted = prepared(works, _wanted, outcomes)
    if not wanted:
        return finished(outcomes)
    first = works[next(iter(wanted))]
    target = first.target
    before = target.calls
    with first.connection.pipeline(transaction=False) as pipe:
        for position, (sku, _) in wanted.items():
            pipe.exists(_missing(works[position], sku))
        missing = dict(zip(wanted, pipe.execute(), strict=True))
    looked = [position for position in wanted if not missing[position]]
    try:
        stocks = target.find_stocks([wanted[position][0] for position in looked]) if looked else {}
    except KoppelError as exc:  # the lookup they needed: each record looked up fails with it
        stocks = {}
        fail(outcomes, looked, exc)
    writes: dict[int, tuple[StockRecord, Any]] = {}
    for position, (sku, fields) in wanted.items():
        if outcomes[position] is not None:
            continue
        current = stocks.get(sku) if position in looked else None
        verdict = _verdict(works[position], sku, current, fields, 0)
        if isinstance(verdict, FlowResult):
            outcomes[position] = verdict
        else:
            assert current is not None
            writes[position] = current, verdict
    errors = target.write_stocks([(current, wanted[p][1]) for p, (current, _) in writes.items()]) if writes else []
    shared = target.calls - before
    again: list[int] = []
    for (position, (current, change)), error in zip(writes.items(), errors, strict=True):
        if error is None:
            outcomes[position] = _updated(works[position], wanted[position][0], current, change, 0)
        elif isinstance(error, NotFound):
            target.forget("stock", wanted[position][0])
            again.append(position)
        else:
            outcomes[position] = error
    spread(outcomes, looked, shared)
    for position in again:  # after the spread: the calls `run` makes are its record's own
        try:
            outcomes[position] = run(works[position])
        except KoppelError as exc:
            outcomes[position] = exc
    return finished(outcomes)


def _wanted(work: Work) -> Wanted | FlowResult:
    """The record's SKU and mapped fields, or its skip (a location the shop does not sell from)."""
    level = work.record("stock")
    assert isinstance(level, StockLevel)
    warehouse = work.settings.get("stock_warehouse")
    if warehouse is not None and str(warehouse) != (level.location or ""):
        reason = f"warehouse {level.location or '(none)'} is not the shop's warehouse {warehouse}"
        return FlowResult("skipped", level.sku, calls=0, reason=reason)
    return level.sku, work.mapped("stock", level, label=f"{work.envelope.source} stock of SKU {level.sku}")


def _missing(work: Work, sku: str) -> str:
    return keys.cache(work.target.system.id, "no-sku", sku.casefold())


def _verdict(
    work: Work, sku: str, current: StockRecord | None, fields: dict[str, Any], calls: int
) -> FlowResult | tuple[Any, Any]:
    """The skip when the target lacks the SKU (remembered) or holds what would be written; else the change
    (what it holds, what it will hold)."""
    target = work.target
    if current is None:
        work.connection.set(_missing(work, sku), "1", ex=MISSING_TTL)
        log.warning("stock of SKU %s not sent: %s system %s has no product with it", sku, target.kind,
                    target.system.id)  # fmt: skip
        return FlowResult("skipped", sku, calls=calls, reason=f"SKU {sku} does not exist in {target.title}")
    change = target.stock_change(current, fields)
    if change is None:
        return FlowResult("skipped", sku, current.target_id, calls, f"{target.title} already has {current.quantity}")
    return change


def _updated(work: Work, sku: str, current: StockRecord, change: tuple[Any, Any], calls: int) -> FlowResult:
    old, new = change
    log.info("stock of SKU %s: %s → %s in %s %s", sku, old, new, work.target.kind, current.target_id)
    return FlowResult("updated", sku, current.target_id, calls, f"stock {old} → {new}")
