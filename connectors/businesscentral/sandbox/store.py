"""The Business Central sandbox's data: companies and their records, with BC's ETags and times.

Every write gives the record a new `@odata.etag` (W/"…", from a counter the sandbox keeps) and a
`lastModifiedDateTime` on the sandbox clock, strictly later than the previous write's (millisecond
precision, as BC stores it). Documents compute their totals from their lines; lines of item type take
the item's number, description and price when the line does not say.

A customer's "Prices Including VAT" (a field of BC's customer card, not of API v2.0's customer) is kept
beside the record (`prices_including_vat`, default the customer template's): a document created for the
customer takes it as its `pricesIncludeTax`, which the API cannot write (read-only in Microsoft's API pages),
and its lines' amounts follow it.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Record = dict[str, Any]

ENTITIES = ("customers", "items", "itemCategories", "salesOrders", "salesInvoices", "taxAreas", "paymentTerms",
            "paymentMethods", "shipmentMethods")  # fmt: skip
CODE_LISTS = {"itemCategories": "Item Category", "taxAreas": "Tax Area", "paymentTerms": "Payment Terms",
              "paymentMethods": "Payment Method", "shipmentMethods": "Shipment Method"}  # fmt: skip
"""Setup lists keyed by an upper-case `code` (their BC table's name for errors)."""
CUSTOMER_REFERENCES = {"taxAreaId": "taxAreas", "paymentTermsId": "paymentTerms", "paymentMethodId": "paymentMethods",
                       "shipmentMethodId": "shipmentMethods"}  # fmt: skip
"""A customer's references to setup lists, by id (as API v2.0 takes them; NIL: none)."""
LINES = {"salesOrders": "salesOrderLines", "salesInvoices": "salesInvoiceLines"}
CARD_PRICES_INCLUDING_VAT = "pricesIncludingVat"
"""The customer card's "Prices Including VAT" as the control routes name it (not a field of API v2.0)."""
NIL = "00000000-0000-0000-0000-000000000000"


class BCError(Exception):
    """An error BC answers: `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(entity: str) -> BCError:
    return BCError(404, "BadRequest_NotFound", f"The {entity} does not exist. Identification fields and values: Id")


class Store:
    def __init__(
        self, clock: Callable[[], float], currencies: Iterable[str] = ("GBP", "USD"), *,
        template_prices_including_vat: bool = False,
    ) -> None:  # fmt: skip
        self.clock = clock
        self.template_prices_including_vat = template_prices_including_vat
        """The customer template's "Prices Including VAT", which a customer created through the API takes."""
        self.prices_including_vat: dict[tuple[str, str], bool] = {}
        """(company, customer id) → the customer card's "Prices Including VAT" (not in API v2.0's customer)."""
        self.currencies = frozenset(currencies)
        """Currencies besides the company's own, which BC writes as an empty `currencyCode`."""
        self.companies: dict[str, Record] = {}
        self.records: dict[str, dict[str, dict[str, Record]]] = {}
        self.pictures: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._version = 0
        self._last_ms = 0
        self._numbers: dict[tuple[str, str], int] = {}
        self._picture_tags: dict[tuple[str, str], str] = {}
        self.on_change: Callable[[str, str, Record, str], None] | None = None
        """Called with (company, entity, record, changeType) after every write: the webhook notifier."""

    def _changed(self, company: str, entity: str, record: Record, change: str) -> None:
        if self.on_change is not None:
            self.on_change(company, entity, record, change)

    # -- bookkeeping ---------------------------------------------------------------------------------

    def stamp(self) -> tuple[str, str]:
        """(a new ETag, a modification time strictly after the last one)."""
        self._version += 1
        ms = max(int(self.clock() * 1000), self._last_ms + 1)
        self._last_ms = ms
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        tag = base64.b64encode(f"'{self._version};{ms}'".encode()).decode()
        return f'W/"{tag}"', text

    def touch(self, record: Record) -> Record:
        record["@odata.etag"], record["lastModifiedDateTime"] = self.stamp()
        return record

    def next_number(self, company: str, entity: str) -> str:
        start = {"customers": 10000, "items": 1000, "salesOrders": 101001, "salesInvoices": 103001}.get(entity, 1)
        key = (company, entity)
        self._numbers[key] = self._numbers.get(key, start - 1) + 1
        prefix = {"salesOrders": "S-ORD", "salesInvoices": "S-INV"}.get(entity, "")
        return f"{prefix}{self._numbers[key]}"

    # -- companies -------------------------------------------------------------------------------------

    def add_company(self, name: str, company_id: str | None = None) -> Record:
        company_id = company_id or str(uuid.uuid4())
        record = {"id": company_id, "systemVersion": "24.0", "name": name, "displayName": name,
                  "businessProfileId": ""}  # fmt: skip
        self.touch(record)
        self.companies[company_id] = record
        self.records[company_id] = {entity: {} for entity in ENTITIES}
        return record

    def table(self, company: str, entity: str) -> dict[str, Record]:
        if company not in self.records:
            raise BCError(
                404, "BadRequest_NotFound", "The company does not exist. Identification fields and values: Id"
            )
        if entity not in self.records[company]:
            raise BCError(404, "BadRequest_NotFound", f"Resource not found for the segment '{entity}'.")
        return self.records[company][entity]

    def get(self, company: str, entity: str, record_id: str) -> Record:
        found = self.table(company, entity).get(record_id.lower())
        if found is None:
            raise not_found(entity[:-1] if entity.endswith("s") else entity)
        return found

    # -- writes ------------------------------------------------------------------------------------------

    def create(self, company: str, entity: str, fields: Mapping[str, Any]) -> Record:
        table = self.table(company, entity)
        record = self._defaults(company, entity)
        self._apply(company, entity, record, fields, creating=True)
        record["id"] = str(fields.get("id") or uuid.uuid4()).lower()
        if record["id"] in table:
            raise BCError(400, "Internal_EntityWithSameKeyExists", f"The record in table {entity} already exists.")
        table[record["id"]] = self.touch(record)
        if entity == "customers":
            self.prices_including_vat[(company, record["id"])] = self.template_prices_including_vat
        if entity in LINES:
            self._totals(company, entity, record)
        self._changed(company, entity, record, "created")
        return record

    def update(
        self, company: str, entity: str, record_id: str, fields: Mapping[str, Any], if_match: str | None
    ) -> Record:
        record = self.get(company, entity, record_id)
        check_etag(record, if_match)
        self._apply(company, entity, record, fields, creating=False)
        self.touch(record)
        if entity in LINES:
            self._totals(company, entity, record)
        self._changed(company, entity, record, "updated")
        return record

    def change(self, company: str, entity: str, record_id: str, fields: Mapping[str, Any]) -> Record:
        """A change a user makes in BC (no ETag asked; read-only fields such as `inventory` writable; a
        customer's `pricesIncludingVat` is its card's setting). Inventory postings do not move the item's ETag
        or time, as in BC."""
        record = self.get(company, entity, record_id)
        only_inventory = set(fields) <= {"inventory"}
        fields = dict(fields)
        if entity == "customers" and CARD_PRICES_INCLUDING_VAT in fields:
            self.prices_including_vat[(company, record["id"])] = bool(fields.pop(CARD_PRICES_INCLUDING_VAT))
        record.update(copy.deepcopy(fields))
        if not only_inventory:
            self.touch(record)
            self._changed(company, entity, record, "updated")
        return record

    def delete(self, company: str, entity: str, record_id: str, if_match: str | None) -> None:
        record = self.get(company, entity, record_id)
        check_etag(record, if_match)
        del self.table(company, entity)[record["id"]]
        self._changed(company, entity, record, "deleted")

    def add_line(self, company: str, entity: str, document_id: str, fields: Mapping[str, Any]) -> Record:
        document = self.get(company, entity, document_id)
        lines: list[Record] = document.setdefault(LINES[entity], [])
        line: Record = {"id": str(uuid.uuid4()), "documentId": document["id"],
                        "sequence": 10000 * (len(lines) + 1), "itemId": NIL, "accountId": NIL,
                        "lineType": "Item", "lineObjectNumber": "", "description": "", "unitOfMeasureCode": "",
                        "quantity": 0, "unitPrice": 0, "discountAmount": 0, "discountPercent": 0, "taxCode": "",
                        "taxPercent": 0, "itemVariantId": NIL}  # fmt: skip
        line.update({k: v for k, v in fields.items() if k in line and k not in ("id", "documentId", "sequence")})
        if line["lineType"] == "Item":
            item = self._item_of(company, line)
            line["itemId"], line["lineObjectNumber"] = item["id"], item["number"]
            line["description"] = line["description"] or item["displayName"]
            line["unitOfMeasureCode"] = line["unitOfMeasureCode"] or item["baseUnitOfMeasureCode"]
            if "unitPrice" not in fields:
                line["unitPrice"] = item["unitPrice"]
            line["taxPercent"] = fields.get("taxPercent", item.get("_taxPercent", 21))
        elif line["lineType"] not in ("Comment", "Account", "Resource", "Fixed Asset", "Charge"):
            raise BCError(400, "BadRequest", f'The value "{line["lineType"]}" is not a valid lineType.')
        same_rate = [other for other in lines if other["taxPercent"] == line["taxPercent"]]
        _line_amounts(line, bool(document.get("pricesIncludeTax")), same_rate)
        lines.append(line)
        self.touch(document)
        self._totals(company, entity, document)
        return line

    def set_picture(self, company: str, item_id: str, content: bytes, kind: str, if_match: str | None) -> None:
        item = self.get(company, "items", item_id)
        picture = self.picture(company, item_id)
        check_etag(picture, if_match)
        self.pictures[(company, item["id"])] = (content, kind)
        self._picture_tags[(company, item["id"])] = self.stamp()[0]
        self.touch(item)

    def picture(self, company: str, item_id: str) -> Record:
        item = self.get(company, "items", item_id)
        key = (company, item["id"])
        if key not in self._picture_tags:
            self._picture_tags[key] = self.stamp()[0]
        content, kind = self.pictures.get(key, (b"", ""))
        return {"@odata.etag": self._picture_tags[key], "id": item["id"], "parentType": "Item",
                "width": 0, "height": 0, "contentType": kind, "size": len(content)}  # fmt: skip

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _defaults(self, company: str, entity: str) -> Record:
        if entity == "customers":
            return {"number": "", "displayName": "", "type": "Company", "addressLine1": "", "addressLine2": "",
                    "city": "", "state": "", "country": "", "postalCode": "", "phoneNumber": "", "email": "",
                    "website": "", "taxRegistrationNumber": "", "currencyCode": "", "blocked": " ",
                    "taxLiable": False, "taxAreaDisplayName": "",
                    **dict.fromkeys(CUSTOMER_REFERENCES, NIL)}  # fmt: skip
        if entity == "items":
            return {"number": "", "displayName": "", "displayName2": "", "type": "Inventory", "itemCategoryId": NIL,
                    "itemCategoryCode": "", "blocked": False, "gtin": "", "inventory": 0, "unitPrice": 0,
                    "priceIncludesTax": False, "unitCost": 0, "taxGroupCode": "", "baseUnitOfMeasureCode": "PCS",
                    "generalProductPostingGroupCode": "RETAIL", "inventoryPostingGroupCode": "RESALE"}  # fmt: skip
        if entity == "taxAreas":
            return {"code": "", "displayName": "", "taxType": "VAT"}
        if entity in CODE_LISTS:
            return {"code": "", "displayName": ""}
        today = datetime.fromtimestamp(self.clock(), UTC).date().isoformat()
        base: Record = {"number": "", "externalDocumentNumber": "", "customerId": NIL, "customerNumber": "",
                        "customerName": "", "currencyCode": "", "pricesIncludeTax": False, "email": "",
                        "phoneNumber": "", "discountAmount": 0, "totalAmountExcludingTax": 0, "totalTaxAmount": 0,
                        "totalAmountIncludingTax": 0,
                        "status": "Draft" if entity == "salesInvoices" else "Open"}  # fmt: skip
        for prefix in ("sellTo", "billTo", "shipTo"):
            for suffix in ("AddressLine1", "AddressLine2", "City", "Country", "State", "PostCode"):
                base[prefix + suffix] = ""
        base |= {"shipToName": "", "shipToContact": "", "billToName": ""}
        base |= (
            {"orderDate": today, "postingDate": today}
            if entity == "salesOrders"
            else {"invoiceDate": today, "postingDate": today}
        )
        return base

    _READ_ONLY = frozenset({"id", "@odata.etag", "lastModifiedDateTime", "inventory", "totalAmountExcludingTax",
                            "totalTaxAmount", "totalAmountIncludingTax", "status", "customerName",
                            "taxAreaDisplayName", "pricesIncludeTax"})  # fmt: skip
    """Fields the API refuses to write. A document's `pricesIncludeTax` is `Editable = false` in Microsoft's
    API pages (it follows the customer); BC's answer to a write of it is assumed [U] to be this refusal (it
    may instead ignore the value): Koppel never sends it."""

    def _apply(self, company: str, entity: str, record: Record, fields: Mapping[str, Any], *, creating: bool) -> None:
        unknown = [k for k in fields if k not in record and k not in ("id",) and k != LINES.get(entity)]
        if unknown:
            text = f"The property '{unknown[0]}' does not exist on type 'Microsoft.NAV.{entity[:-1]}'."
            raise BCError(400, "BadRequest_PropertyNotFound", text)
        if entity in LINES and LINES[entity] in fields:
            raise BCError(400, "BadRequest", f"Deep insert of {LINES[entity]} is not supported by this entity; "
                                             "create the lines separately.")  # fmt: skip
        for name, value in fields.items():
            if name in self._READ_ONLY:
                if name == "id" and creating:
                    continue
                raise BCError(400, "BadRequest", f"The property '{name}' is read-only.")
            if isinstance(value, (dict, list)):
                raise BCError(400, "BadRequest", f"The property '{name}' has an invalid value.")
            record[name] = value
        currency = record.get("currencyCode")
        if currency and currency not in self.currencies:
            text = f"The Currency does not exist. Identification fields and values: Code='{currency}'"
            raise BCError(400, "Internal_RecordNotFound", text)
        if entity in ("customers", "items"):
            if creating and not record["number"]:
                record["number"] = self.next_number(company, entity)
            number = str(record["number"]).upper()
            if len(number) > 20:
                raise BCError(400, "BadRequest", f"The length of the string is {len(number)}, but it must be less "
                                                 "than or equal to 20 characters. Value: " + number)  # fmt: skip
            record["number"] = number
            same = [r for r in self.table(company, entity).values() if r["number"] == number and r is not record]
            if same:
                raise BCError(400, "Internal_EntityWithSameKeyExists",
                              f"The record in table {entity[:-1].capitalize()} already exists. Identification fields "
                              f"and values: No.='{number}'")  # fmt: skip
        if entity == "items" and record.get("itemCategoryCode"):
            found = [
                c for c in self.table(company, "itemCategories").values() if c["code"] == record["itemCategoryCode"]
            ]
            if not found:
                code = record["itemCategoryCode"]
                text = f"The Item Category does not exist. Identification fields and values: Code='{code}'"
                raise BCError(400, "Internal_RecordNotFound", text)
            record["itemCategoryId"] = found[0]["id"]
        if entity in CODE_LISTS:
            name = CODE_LISTS[entity]
            record["code"] = str(record["code"]).upper()
            if not record["code"]:
                raise BCError(400, "BadRequest", f"The field Code of table {name} must have a value.")
            if any(c["code"] == record["code"] and c is not record for c in self.table(company, entity).values()):
                raise BCError(400, "Internal_EntityWithSameKeyExists", f"The record in table {name} already exists.")
        if entity == "customers":
            for field, listed in CUSTOMER_REFERENCES.items():
                ref = str(record.get(field) or NIL).lower()
                if ref != NIL and ref not in self.table(company, listed):
                    text = f"The {CODE_LISTS[listed]} does not exist. Identification fields and values: Id='{ref}'"
                    raise BCError(400, "Internal_RecordNotFound", text)
                record[field] = ref
            area = self.table(company, "taxAreas").get(record["taxAreaId"])
            record["taxAreaDisplayName"] = area["displayName"] if area else ""
        if entity in LINES:
            if creating and not record["number"]:  # BC numbers a document from its number series (S-ORD101001)
                record["number"] = self.next_number(company, entity)
            record["externalDocumentNumber"] = str(record.get("externalDocumentNumber") or "").upper()[:35]
            customer_set = creating or bool({"customerId", "customerNumber"} & set(fields))
            self._customer_of(company, record, validate=customer_set)

    def _customer_of(self, company: str, document: Record, *, validate: bool) -> None:
        """The document's customer's fields copied; `validate` (the customer set): its Prices Including VAT too."""
        customers = self.table(company, "customers")
        customer = None
        if document.get("customerId") and document["customerId"] != NIL:
            customer = customers.get(str(document["customerId"]).lower())
        elif document.get("customerNumber"):
            customer = next(
                (c for c in customers.values() if c["number"] == str(document["customerNumber"]).upper()), None
            )
        if customer is None:
            raise BCError(400, "Internal_RecordNotFound", "The Customer does not exist. Identification fields and "
                                                          "values: No.=''")  # fmt: skip
        if validate:  # BC copies the card's setting when the customer is set
            card = self.prices_including_vat.get((company, customer["id"]), self.template_prices_including_vat)
            document["pricesIncludeTax"] = card
        document["customerId"], document["customerNumber"] = customer["id"], customer["number"]
        document["customerName"] = customer["displayName"]
        document["billToName"] = document["billToName"] or customer["displayName"]
        for prefix in ("sellTo", "billTo"):
            for ours, theirs in (("AddressLine1", "addressLine1"), ("AddressLine2", "addressLine2"), ("City", "city"),
                                 ("Country", "country"), ("State", "state"), ("PostCode", "postalCode")):  # fmt: skip
                document[prefix + ours] = document[prefix + ours] or customer[theirs]
        document["email"] = document["email"] or customer["email"]

    def _item_of(self, company: str, line: Record) -> Record:
        items = self.table(company, "items")
        if line.get("itemId") and line["itemId"] != NIL:
            found = items.get(str(line["itemId"]).lower())
        else:
            number = str(line.get("lineObjectNumber") or "").upper()
            found = next((i for i in items.values() if i["number"] == number), None) if number else None
        if found is None:
            number = line.get("lineObjectNumber") or ""
            raise BCError(
                400,
                "Internal_RecordNotFound",
                f"The Item does not exist. Identification fields and values: No.='{number}'",
            )
        return found

    def _totals(self, company: str, entity: str, document: Record) -> None:
        lines = document.get(LINES[entity]) or []
        excl = sum((Decimal(str(line["amountExcludingTax"])) for line in lines), Decimal(0))
        tax = sum((Decimal(str(line["totalTaxAmount"])) for line in lines), Decimal(0))
        document["totalAmountExcludingTax"] = float(excl)
        document["totalTaxAmount"] = float(tax)
        document["totalAmountIncludingTax"] = float(excl + tax)


def _line_amounts(line: Record, prices_include_tax: bool, before: list[Record]) -> None:
    """The line's amounts excl. and incl. VAT. As BC's sales lines do [U], the VAT is computed on the running
    total of the document's lines at the same VAT rate (`before`): the document's VAT per rate is that of the
    rate's total, whatever the rounding of single lines."""
    cent = Decimal("0.01")
    quantity, price = Decimal(str(line["quantity"])), Decimal(str(line["unitPrice"]))
    rate = Decimal(str(line["taxPercent"])) / 100
    gross = (quantity * price - Decimal(str(line["discountAmount"]))).quantize(cent, ROUND_HALF_UP)
    total_excl = sum((Decimal(str(ln["amountExcludingTax"])) for ln in before), Decimal(0))
    total_incl = sum((Decimal(str(ln["amountIncludingTax"])) for ln in before), Decimal(0))
    if prices_include_tax:
        incl = gross
        excl = ((total_incl + incl) / (1 + rate)).quantize(cent, ROUND_HALF_UP) - total_excl
    else:
        excl = gross
        incl = (total_excl + excl + ((total_excl + excl) * rate).quantize(cent, ROUND_HALF_UP)) - total_incl
    line["amountExcludingTax"], line["amountIncludingTax"] = float(excl), float(incl)
    line["totalTaxAmount"] = float(incl - excl)


def check_etag(record: Mapping[str, Any], if_match: str | None) -> None:
    """BC's answers: no If-Match → 400 `BadRequest_InvalidToken` (the concurrency token is required); a stale
    one → 412 `Request_EntityChanged`."""
    if if_match is None:
        text = ("Could not validate the client concurrency token required by the service. Please provide a valid "
                "token in the client request.")  # fmt: skip
        raise BCError(400, "BadRequest_InvalidToken", text)
    if if_match.strip() != "*" and if_match.strip() != record.get("@odata.etag"):
        raise BCError(412, "Request_EntityChanged", "Another user has already changed the record.")


# -- queries ------------------------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<op>eq|ne|gt|ge|lt|le)\s+"
    r"(?P<value>'(?:[^']|'')*'|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z|[0-9a-fA-F-]{36}|-?[0-9.]+|true|false|null)\s*"
)


def parse_filter(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """`field op value` clauses joined by `and` / `or` (and binds tighter), as Koppel and BC users write
    them; anything else is BC's 400."""
    groups: list[list[tuple[str, str, Any]]] = [[]]
    rest = text.strip()
    while True:
        match = _CLAUSE.match(rest)
        if match is None:
            raise BCError(400, "BadRequest", f"Invalid filter expression: {text[:200]}")
        groups[-1].append((match["field"], match["op"], _literal(match["value"])))
        rest = rest[match.end() :]
        if not rest:
            break
        word, _, rest = rest.partition(" ")
        if word == "or":
            groups.append([])
        elif word != "and":
            raise BCError(400, "BadRequest", f"Invalid filter expression: {text[:200]}")

    def test(record: Mapping[str, Any]) -> bool:
        return any(all(_compare(record.get(f), op, v) for f, op, v in group) for group in groups)

    return test


def _literal(value: str) -> Any:
    if value.startswith("'"):
        return value[1:-1].replace("''", "'")
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        return None
    if "T" in value and value.endswith("Z"):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if len(value) == 36 and value.count("-") == 4:
        return value.lower()
    return Decimal(value)


def _compare(have: Any, op: str, want: Any) -> bool:
    if isinstance(want, datetime):
        have = datetime.fromisoformat(str(have).replace("Z", "+00:00")) if have else None
    elif isinstance(want, Decimal):
        have = Decimal(str(have)) if have is not None else None
    elif isinstance(want, str):
        have = str(have or "")  # text compares as stored: codes are upper-case, e-mails as typed
    if op == "eq":
        return bool(have == want)
    if op == "ne":
        return bool(have != want)
    if have is None or want is None:
        return False
    return bool({"gt": have > want, "ge": have >= want, "lt": have < want, "le": have <= want}[op])


def select(record: Mapping[str, Any], fields: Iterable[str] | None) -> Record:
    if not fields:
        return dict(record)
    wanted = set(fields) | {"@odata.etag"}
    return {k: v for k, v in record.items() if k in wanted}
