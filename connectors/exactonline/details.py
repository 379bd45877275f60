"""Exact Online's side of customers and of an order's details: what `ExactTarget` does beyond one POST.

Customers (crm/Accounts, crm/Contacts, crm/Addresses):

* An account is written field by field. When the flow knows which fields the shop changed since Koppel
  last sent them (`changed`), only those are written; otherwise (an account Koppel finds by e-mail
  but did not write, or whose history it lost) the account is read and only the fields whose value
  differs from Exact's are written. Either way a bookkeeper's edit in Exact to a field the shop did
  not change survives. The address fields travel as one group: when any differs, the whole address
  is written (a shop street must not be mixed with Exact's postcode).
* A company's contact person (crm/Contacts) is created when the account has none matching it (by
  e-mail, else by name) — also on an update — and never twice: its ID is cached per account.
* The shop's shipping address becomes a delivery address of the account (crm/Addresses, Type 4),
  found among the account's delivery addresses by its fields or created, and made the main one.
  Addresses are not rewritten: orders booked earlier keep pointing at where they were delivered.
* Reference fields Exact stores as GUIDs take a *code* in the mapping, resolved here (cached a day
  per system; an unknown code fails naming it): `GLAccountSales` (a G/L account code),
  `Classification1`..`8` (crm/AccountClassifications codes), `ShippingMethod` (sales/ShippingMethods).
  A value that already is a GUID is sent as it is.

Order details (sales orders, sales invoices, sales entries):

* `DeliveryAddress` (sales orders) / `DeliverToAddress` (sales invoices) given as an address object
  in the mapped payload is replaced by the GUID of the delivery account's matching delivery
  address, created when missing; address fingerprint → GUID is cached per account, so a returning
  customer's known address costs no call.
* `ShippingMethod` given as a code becomes the sales/ShippingMethods GUID.
* Lines' `CostCenter` and `CostUnit` are codes, as Exact takes them; each is checked once a day
  against hrm/Costcenters and hrm/Costunits, so an unknown code fails naming it before Exact answers
  400 (Exact blocks an app after repeated errors).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from connectors.contract import Context
from connectors.exactonline.client import ExactClient
from connectors.exactonline.endpoints import DELIVERY_ADDRESS, Accounts, Addresses, Contacts
from connectors.exactonline.errors import ExactNotFound
from connectors.exactonline.odata import Guid, eq
from gateway import keys
from gateway.config import System
from gateway.errors import PermanentError

ADDRESS_FIELDS = ("AddressLine1", "AddressLine2", "AddressLine3", "Postcode", "City", "State", "Country")
"""An address's fields: written together, compared together."""
ADDRESS_GROUP = ("AddressLine1", "AddressLine2", "Postcode", "City", "Country")
"""The address fields cleared in Exact when the shop's address no longer has them."""
ADDRESS_TTL = 30 * 24 * 3600
"""Delivery address GUIDs per account and address: a month (a GUID Exact rejects is forgotten at once)."""
CONTACT_TTL = 30 * 24 * 3600
REFERENCE_TTL = 24 * 3600

_CLASSIFICATION = ("account_classifications", "crm/AccountClassifications", "account classification",
                   "the mapping table 'customer_classifications' by default")  # fmt: skip
CODED: dict[str, tuple[str, str, str, str]] = {
    "GLAccountSales": ("gl_accounts", "financial/GLAccounts", "G/L account",
                       "the mapping table 'revenue_accounts' by default"),
    "ShippingMethod": ("shipping_methods", "sales/ShippingMethods", "shipping method",
                       "the mapping table 'shipping_methods' by default"),
    **{f"Classification{n}": _CLASSIFICATION for n in range(1, 9)},
}  # fmt: skip
"""Fields whose code the mapping gives and Exact wants as a GUID: field → (cache name, endpoint, what, where
the code comes from)."""
LINE_CODES: dict[str, tuple[str, str, str, str]] = {
    "CostCenter": ("cost_centres", "hrm/Costcenters", "cost centre", "the mapping table 'cost_centres'"),
    "CostUnit": ("cost_units", "hrm/Costunits", "cost unit", "the mapping table 'cost_units'"),
}
"""Line fields Exact takes as codes; checked against their entity."""
DELIVERY_FIELDS = ("DeliveryAddress", "DeliverToAddress")
LINES = ("SalesOrderLines", "SalesInvoiceLines", "SalesEntryLines")


def is_guid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _norm(name: str, value: Any) -> Any:
    """A value as compared: blank is absent, text without case or repeated spaces, postcodes without
    spaces, numbers by value."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value)).normalize()
    text = " ".join(str(value).split()).casefold()
    if name == "Postcode":
        text = text.replace(" ", "")
    return text or None


def same(name: str, ours: Any, theirs: Any) -> bool:
    return bool(_norm(name, ours) == _norm(name, theirs))


def address_fingerprint(fields: Mapping[str, Any]) -> str:
    parts = [f"{name}={_norm(name, fields.get(name)) or ''}" for name in ADDRESS_FIELDS]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _section(changed: Iterable[str] | None, prefix: str) -> set[str] | None:
    """The names in `changed` under `prefix` ("Account." → {"Name"}); None when changed is None."""
    if changed is None:
        return None
    return {name[len(prefix) :] for name in changed if name.startswith(prefix) and "." not in name[len(prefix) :]}


class Details:
    """Mixed into `ExactTarget` (which provides `system`, `context`, `exact` and `reference_id`)."""

    system: System
    context: Context
    _used_addresses: list[str]

    @property
    def exact(self) -> ExactClient:  # pragma: no cover - ExactTarget's
        raise NotImplementedError

    def reference_id(self, name: str, path: str, code: str) -> str | None:  # pragma: no cover - ExactTarget's
        raise NotImplementedError

    # -- codes -------------------------------------------------------------------------------------

    def coded(self, field: str, value: Any, spec: tuple[str, str, str, str], where: str = "") -> str:
        """The GUID for a code (a GUID stays as it is); PermanentError naming the code and its table."""
        text = str(value).strip()
        if is_guid(text):
            return text
        name, path, what, source = spec
        found = self.reference_id(name, path, text)
        if found is None:
            raise PermanentError(
                f"{where}{field}: {what} {text!r} does not exist in Exact Online ({path}); the code comes from {source}"
            )
        return found

    def with_guids(self, fields: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """`fields` with the codes of GUID fields (CODED) resolved."""
        out = dict(fields)
        for field, spec in CODED.items():
            if out.get(field) not in (None, ""):
                out[field] = self.coded(field, out[field], spec, where)
        return out

    # -- delivery addresses ------------------------------------------------------------------------

    def delivery_address(self, account_id: str, fields: Mapping[str, Any], *, main: bool = False) -> str:
        """The GUID of the account's delivery address with these address fields: cached, else found among
        the account's delivery addresses, else created (`main`: made the account's main one)."""
        return self._delivery(account_id, fields, main=main)[0]

    def _delivery(
        self, account_id: str, fields: Mapping[str, Any], *, main: bool, new_account: bool = False
    ) -> tuple[str, bool]:
        """(the address GUID, whether Exact was written: created or made main). A `new_account` has none yet."""
        wanted = {k: v for k, v in fields.items() if k in ADDRESS_FIELDS and v not in (None, "")}
        fingerprint = address_fingerprint(wanted)
        cache, entry = keys.cache(self.system.id, "delivery-addresses"), f"{account_id.lower()}:{fingerprint}"
        redis = self.context.redis
        cached = None if main else redis.hget(cache, entry)
        if cached:
            self._remember_address(entry)
            return keys.text(cached), False
        where = f"{eq('Account', Guid(account_id))} and {eq('Type', DELIVERY_ADDRESS)}"
        rows = [] if new_account else self.exact.query(Addresses, filter=where)
        found = next((r for r in rows if address_fingerprint(r) == fingerprint), None)
        wrote = found is None or (main and not found.get("Main"))
        if found is None:
            body = {**wanted, "Account": account_id, "Type": DELIVERY_ADDRESS, "Main": main or not rows}
            found = self.exact.create(Addresses, body)
        elif wrote:
            self.exact.update(Addresses, str(found["ID"]), {"Main": True})
        address_id = str(found["ID"])
        with redis.pipeline(transaction=False) as pipe:
            pipe.hset(cache, entry, address_id)
            pipe.expire(cache, ADDRESS_TTL)
            pipe.execute()
        self._remember_address(entry)
        return address_id, wrote

    def _remember_address(self, entry: str) -> None:
        if not hasattr(self, "_used_addresses"):
            self._used_addresses = []
        self._used_addresses.append(entry)

    # -- order documents ---------------------------------------------------------------------------

    def prepare_document(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The mapped document with its delivery address, shipping method and line codes resolved."""
        body = dict(payload)
        self._used_addresses = []
        account = body.get("DeliverTo") or body.get("OrderedBy") or body.get("Customer")
        for field in DELIVERY_FIELDS:
            value = body.get(field)
            if not isinstance(value, Mapping):
                continue
            if not account or not any(value.get(k) not in (None, "") for k in ADDRESS_FIELDS):
                body.pop(field)
                continue
            body[field] = self.delivery_address(str(account), value)
        if body.get("ShippingMethod") not in (None, ""):
            body["ShippingMethod"] = self.coded("ShippingMethod", body["ShippingMethod"], CODED["ShippingMethod"])
        for lines in LINES:
            for number, line in enumerate(body.get(lines) or [], start=1):
                if not isinstance(line, Mapping):
                    continue
                for field, spec in LINE_CODES.items():
                    if line.get(field) not in (None, ""):
                        name, path, what, source = spec
                        if self.reference_id(name, path, str(line[field]).strip()) is None:
                            raise PermanentError(
                                f"{lines}[{number}].{field}: {what} {str(line[field])!r} does not exist in Exact "
                                f"Online ({path}); the code comes from {source}"
                            )
        return body

    def forget_details(self) -> bool:
        """Drop the delivery addresses the last document used and the codes of shipping methods and cost
        centres/units (one may have been deleted in Exact since); True if anything was cached."""
        redis = self.context.redis
        used = getattr(self, "_used_addresses", [])
        dropped = bool(used) and bool(redis.hdel(keys.cache(self.system.id, "delivery-addresses"), *used))
        names = ("shipping_methods", "cost_centres", "cost_units")
        dropped = bool(redis.delete(*(keys.cache(self.system.id, n) for n in names))) or dropped
        self._used_addresses = []
        return dropped

    # -- customers ---------------------------------------------------------------------------------

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        """The account (`payload["Account"]`), its contact person (`Contact`) and delivery address
        (`Delivery`) when given."""
        account = self.with_guids(payload.get("Account", payload), "Account.")
        account_id = str(self.exact.create_account(account)["ID"])
        contact = payload.get("Contact")
        if contact:
            created = self.exact.create_contact({**contact, "Account": account_id})
            self._cache_contact(account_id, str(created["ID"]))
        delivery = payload.get("Delivery")
        if isinstance(delivery, Mapping) and any(delivery.get(k) not in (None, "") for k in ADDRESS_FIELDS):
            self._delivery(account_id, delivery, main=True, new_account=True)
        return account_id

    def update_customer(self, target_id: str, payload: Mapping[str, Any]) -> None:
        self.sync_customer(target_id, payload, None)

    def sync_customer(self, target_id: str, payload: Mapping[str, Any], changed: Iterable[str] | None) -> bool:
        """Bring the account in line with `payload`, writing only what the shop changed (`changed`, the
        payload's dotted field names) or, when that is unknown (None), what differs from Exact's."""
        changed = None if changed is None else frozenset(changed)
        flat = "Account" not in payload
        account = payload if flat else payload["Account"]
        wrote = self._sync_account(target_id, account, _section(changed, "" if flat else "Account."))
        contact = payload.get("Contact")
        if isinstance(contact, Mapping) and contact:
            wrote = self._sync_contact(target_id, contact, _section(changed, "Contact.")) or wrote
        delivery = payload.get("Delivery")
        touched = changed is None or any(name.startswith("Delivery.") for name in changed)
        if isinstance(delivery, Mapping) and touched and any(delivery.get(k) not in (None, "") for k in ADDRESS_FIELDS):
            wrote = self._delivery(target_id, delivery, main=True)[1] or wrote
        return wrote

    def _sync_account(self, target_id: str, account: Mapping[str, Any], changed: set[str] | None) -> bool:
        fields = {k: v for k, v in account.items() if not isinstance(v, Mapping | list)}
        address = {*ADDRESS_GROUP, *(k for k in fields if k in ADDRESS_FIELDS)}
        if changed is None:
            current = self.exact.get(Accounts, target_id, select=sorted({*fields, *address}))
            ours = self.with_guids(fields, "Account.")
            differ = {k for k in fields if not same(k, ours[k], current.get(k))}
            moved = any(not same(k, ours.get(k), current.get(k)) for k in address)
        else:
            differ = {k for k in changed if k in fields or k not in account}  # changed, or gone from the shop
            moved = any(k in ADDRESS_FIELDS for k in differ)
        if moved:
            differ |= address
        if not differ:
            return False
        self.exact.update_account(target_id, self.with_guids({k: fields.get(k) for k in sorted(differ)}, "Account."))
        return True

    def _cache_contact(self, account_id: str, contact_id: str) -> None:
        key = keys.cache(self.system.id, "contacts")
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, account_id.lower(), contact_id)
            pipe.expire(key, CONTACT_TTL)
            pipe.execute()

    def _sync_contact(self, account_id: str, contact: Mapping[str, Any], changed: set[str] | None) -> bool:
        """The company's contact person: updated where it changed, created when the account has none
        matching it (never a second one)."""
        fields = {k: v for k, v in contact.items() if k != "Account"}
        key = keys.cache(self.system.id, "contacts")
        cached = self.context.redis.hget(key, account_id.lower())
        if cached and changed is not None:
            names = {k for k in changed if k != "Account"}
            if not names:
                return False
            try:
                self.exact.update(Contacts, keys.text(cached), {k: fields.get(k) for k in sorted(names)})
                return True
            except ExactNotFound:
                self.context.redis.hdel(key, account_id.lower())  # deleted in Exact: find or create below
        found = self._find_contact(account_id, fields)
        if found is None:
            created = self.exact.create_contact({**fields, "Account": account_id})
            self._cache_contact(account_id, str(created["ID"]))
            return True
        self._cache_contact(account_id, str(found["ID"]))
        if changed is not None:
            names = {k for k in changed if k != "Account"}
        else:
            names = {k for k, v in fields.items() if not same(k, v, found.get(k))}
        if names:
            self.exact.update(Contacts, str(found["ID"]), {k: fields.get(k) for k in sorted(names)})
        return bool(names)

    def _find_contact(self, account_id: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """The account's contact with the contact's e-mail, else with its first and last name."""
        rows = self.exact.query(Contacts, filter=eq("Account", Guid(account_id)))
        email = _norm("Email", fields.get("Email"))
        if email is not None:
            found = next((r for r in rows if _norm("Email", r.get("Email")) == email), None)
            if found is not None:
                return found
        name = (_norm("FirstName", fields.get("FirstName")), _norm("LastName", fields.get("LastName")))
        if name == (None, None):
            return None
        return next((r for r in rows if (_norm("FirstName", r.get("FirstName")), _norm("LastName", r.get("LastName")))
                     == name), None)  # fmt: skip
