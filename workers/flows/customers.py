"""Customers, as the SPEC's Customers section (and step 4 of Orders) describes them.

1. The debtor: the integration's default debtor when configured (`settings.default_debtor`, looked
   up by its code), else the customer by e-mail: created when missing — a company with its contact
   person, or a person (the mapping decides the shape) — and updated when what Koppel would send
   differs from what it last sent (a fingerprint of the mapped payload; addresses included).
2. E-mail → target id is cached per integration with that fingerprint, so a known, unchanged
   customer costs no target call; a cached id the target rejects is forgotten (`forget`).

`resolve` serves the orders flow (the order's customer) and `run` the customers flow itself.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from connectors.contract import FlowResult, Outcome
from gateway import keys
from gateway.errors import PermanentError
from gateway.model import Customer
from gateway.payload import dumps
from transforms import decide_debtor
from workers.flows import Work

log = logging.getLogger("koppel.flows.customers")

CACHE_TTL = 24 * 3600
UNREAD: Any = object()
"""A cache entry not read ahead: `resolve` reads it itself."""


def cache_key(work: Work) -> str:
    return keys.cache(work.integration.id, "customers")


def cache_field(work: Work, customer: Customer, flow: str = "orders") -> str:
    """The customer's field in the cache: `code:<debtor code>` or the e-mail ('' if none)."""
    debtor = decide_debtor(customer, work.settings, flow=flow)
    if debtor.kind == "default":
        return f"code:{debtor.code}"
    return (debtor.email or customer.email or "").strip().lower()


def forget(work: Work, customer: Customer) -> bool:
    return bool(work.connection.hdel(cache_key(work), cache_field(work, customer)))


def resolve(
    work: Work, customer: Customer, *, label: str, cached: Any = UNREAD, flow: str = "orders"
) -> tuple[str, str]:
    """The target's id for this customer, and how it was found: default / cached / updated / created.
    `cached`: the customer's cache entry when read ahead. The default debtor applies to orders only."""
    target, connection, key = work.target, work.connection, cache_key(work)
    debtor = decide_debtor(customer, work.settings, flow=flow)
    if debtor.kind == "default":
        code = str(debtor.code)
        if cached is UNREAD:
            cached = connection.hget(key, f"code:{code}")
        if cached:
            return cached.decode(), "default (cached)"
        found = target.find_customer_by_code(code)
        if found is None:
            raise PermanentError(f"the default debtor {code!r} does not exist in {work.target.title} ({label})")
        connection.hset(key, f"code:{code}", found)
        return found, "default"
    email = (debtor.email or customer.email or "").strip().lower()
    if not email:
        raise PermanentError(f"{label} has no customer e-mail address to find the customer by")
    payload = work.mapping("customers").apply(customer, {"account": "<account>"}, label=f"customer of {label}")
    fingerprint = hashlib.sha256(dumps(payload).encode()).hexdigest()[:16]
    if cached is UNREAD:
        cached = connection.hget(key, email)
    if cached:
        target_id, _, sent = cached.decode().partition(":")
        if sent == fingerprint:
            return target_id, "cached"
        target.update_customer(target_id, payload)
        how = "updated"
    else:
        found = target.find_customer(email)
        if found is not None:
            target_id = found
            target.update_customer(target_id, payload)
            how = "updated"
        else:
            target_id = target.create_customer(payload)
            how = "created"
    with connection.pipeline(transaction=False) as pipe:
        pipe.hset(key, email, f"{target_id}:{fingerprint}")
        pipe.expire(key, CACHE_TTL)
        pipe.execute()
    return target_id, how


def run(work: Work) -> FlowResult:
    customer = work.record("customers")
    assert isinstance(customer, Customer)
    number = customer.number or customer.id or customer.email or ""
    before = work.target.calls
    label = f"{work.envelope.source} customer {number}"
    target_id, how = resolve(work, customer, label=label, flow="customers")
    outcome: Outcome = "created" if how == "created" else "updated" if how == "updated" else "skipped"
    reason = "unchanged since Koppel last sent it" if outcome == "skipped" else ""
    log.info("%s: %s in %s as %s", label, how, work.target.kind, target_id)
    return FlowResult(outcome, number, target_id, work.target.calls - before, reason)
