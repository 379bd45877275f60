"""Customers, as the SPEC's Customers section (and step 4 of Orders) describes them.

1. The debtor: the integration's default debtor when configured (`settings.default_debtor`, looked
   up by its code), else the customer by e-mail: created when missing — a company with its contact
   person, or a person (the mapping decides the shape) — and updated when what Koppel would send
   differs from what it last sent (a fingerprint of the mapped payload; addresses included).
2. E-mail → target id is cached per integration with that fingerprint, so a known, unchanged
   customer costs no target call; a cached id the target rejects is forgotten (`forget`).
3. An update writes what changed, not everything: Koppel keeps, per customer, a hash of each field
   it last sent (no personal data) and hands the target the names of the fields whose value changed
   since (`Target.sync_customer`), so an edit made in the target to a field the shop did not change
   survives. Without that history (a customer found in the target that Koppel did not write) the
   target compares with what it holds.
4. A creation is marked in flight first (workers/ledger.py, by a hash of the e-mail: no ledger is kept,
   the target is asked by e-mail anyway). A worker killed inside it — after the company's account and
   before its contact person, say — leaves the mark: the retry finds the account by e-mail, completes
   it as an update that compares with what the target holds (the contact person and delivery address
   are each found or created, once), and reports the customer "created" (how: `CREATED_EARLIER`).

`resolve` serves the orders flow (the order's customer) and `run` the customers flow itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from connectors.contract import FlowResult, Outcome
from gateway import keys
from gateway.errors import NotFound, PermanentError
from gateway.model import Customer
from gateway.payload import dumps
from transforms import decide_debtor
from workers.flows import Work
from workers.ledger import EARLIER_ATTEMPT, Ledger, email_key

log = logging.getLogger("koppel.flows.customers")

CACHE_TTL = 24 * 3600
SENT_TTL = 400 * 24 * 3600
"""What Koppel last sent per customer (field hashes): kept beyond a year of silence."""
UNREAD: Any = object()
"""A cache entry not read ahead: `resolve` reads it itself."""
CREATED_EARLIER = "created earlier"
"""How `resolve` found a customer that its own earlier attempt created and did not finish or note."""


def cache_key(work: Work) -> str:
    return keys.cache(work.integration.id, "customers")


def cache_field(work: Work, customer: Customer, flow: str = "orders") -> str:
    """The customer's field in the cache: `code:<debtor code>` or the e-mail ('' if none)."""
    debtor = decide_debtor(customer, work.settings, flow=flow)
    if debtor.kind == "default":
        return f"code:{debtor.code}"
    return (debtor.email or customer.email or "").strip().lower()


def sent_key(work: Work) -> str:
    return keys.cache(work.integration.id, "customers-sent")


def field_hashes(payload: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every field of a mapped payload by its dotted name ("Account.City") → a short hash of its value."""
    out: dict[str, str] = {}
    for name, value in payload.items():
        if isinstance(value, Mapping):
            out.update(field_hashes(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = hashlib.sha256(dumps(value).encode()).hexdigest()[:12]
    return out


def changed_fields(before: Mapping[str, str], now: Mapping[str, str]) -> frozenset[str]:
    """The fields whose hash differs, new ones and gone ones."""
    return frozenset(name for name in {*before, *now} if before.get(name) != now.get(name))


def _last_sent(work: Work, email: str, target_id: str) -> dict[str, str] | None:
    """The field hashes Koppel last sent for this customer to this target record, if it knows them."""
    raw = work.connection.hget(sent_key(work), email)
    if not raw:
        return None
    try:
        sent = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(sent, dict) or sent.get("id") != target_id or not isinstance(sent.get("fields"), dict):
        return None
    return {str(k): str(v) for k, v in sent["fields"].items()}


def forget(work: Work, customer: Customer) -> bool:
    return bool(work.connection.hdel(cache_key(work), cache_field(work, customer)))


def resolve(
    work: Work, customer: Customer, *, label: str, cached: Any = UNREAD, flow: str = "orders"
) -> tuple[str, str]:
    """The target's id for this customer, and how it was found: default / cached / unchanged / updated / created /
    `CREATED_EARLIER`.
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
    payload = work.mapped("customers", customer, {"account": "<account>"}, label=f"customer of {label}")
    fingerprint = hashlib.sha256(dumps(payload).encode()).hexdigest()[:16]
    if cached is UNREAD:
        cached = connection.hget(key, email)
    target_id: str | None = None
    if cached:
        target_id, _, sent = cached.decode().partition(":")
        if sent == fingerprint:
            return target_id, "cached"
    hashes = field_hashes(payload)
    how = ""
    flight = Ledger(connection, work.integration.id, "customers", keep=False)
    marker = email_key(email)
    earlier = False
    for attempt in (1, 2):
        if target_id is None:
            target_id = target.find_customer(email)
            earlier = target_id is not None and flight.in_flight(marker)
        if target_id is None:
            flight.mark(marker)  # kept if this dies: the account may be there without the rest
            target_id, how = target.create_customer(payload), "created"
            break
        last = None if earlier else _last_sent(work, email, target_id)
        try:
            wrote = target.sync_customer(target_id, payload, None if last is None else changed_fields(last, hashes))
        except NotFound:
            if attempt == 2:
                raise
            log.info("%s: %s no longer has the cached customer %s; looking it up again", label, work.target.kind,
                     target_id)  # fmt: skip
            connection.hdel(key, email)
            target_id = None
            continue
        how = CREATED_EARLIER if earlier else "updated" if wrote else "unchanged"
        break
    assert target_id is not None
    if earlier:
        log.info("%s: %s customer %s was created by an earlier attempt that stopped before noting it; completed",
                 label, work.target.kind, target_id)  # fmt: skip
    with connection.pipeline(transaction=False) as pipe:
        if how in ("created", CREATED_EARLIER):
            pipe.hdel(flight.flight, marker)
        pipe.hset(key, email, f"{target_id}:{fingerprint}")
        pipe.expire(key, CACHE_TTL)
        pipe.hset(sent_key(work), email, json.dumps({"id": target_id, "fields": hashes}, separators=(",", ":")))
        pipe.expire(sent_key(work), SENT_TTL)
        pipe.execute()
    return target_id, how


def run(work: Work) -> FlowResult:
    customer = work.record("customers")
    assert isinstance(customer, Customer)
    number = customer.number or customer.id or ""  # never the e-mail address: it is personal data
    before = work.target.calls
    label = f"{work.envelope.source} customer {number or '(no id)'}"
    target_id, how = resolve(work, customer, label=label, flow="customers")
    created = how in ("created", CREATED_EARLIER)
    outcome: Outcome = "created" if created else "updated" if how == "updated" else "skipped"
    reason = EARLIER_ATTEMPT if how == CREATED_EARLIER else ""
    if how == "unchanged":
        reason = f"already as in {work.target.title}"
    elif outcome == "skipped":
        reason = "unchanged since Koppel last sent it"
    log.info("%s: %s in %s as %s", label, how, work.target.kind, target_id)
    return FlowResult(outcome, number, target_id, work.target.calls - before, reason)
