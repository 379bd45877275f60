"""Asperion's articles, relations, sales orders and sales invoices in the canonical model (gateway/model.py).

Asperion's field names come from its Swagger, which is not public: beyond `currentStock` and the resources
named in PLATFORMS.md §5 they are assumed [U]. Every field is read by any of the spellings in `SPELLINGS`
(case-insensitively); the first of each list is what the sandbox answers.

* Articles: one simple product each (`type = virtual` for a service article, not stock-managed); the sales
  price is excl. VAT unless the article says `salesPriceIncludesVat` [U]; an inactive article is unpublished.
  `currentStock` is read only: it feeds the stock flow, never a write. Its `properties` [U: no public page
  names a field for an article's properties], a list of {name, value}, are its (non-variation) attributes.
* Relations: a company when `relationType` says so (Company/Organisation/Business/Bedrijf/Zakelijk), or,
  without a type, when it has a company name; else a person. Its address is `address`, its delivery
  address `deliveryAddress`.
* Sales orders (`SalesOrderWithLines`) and sales invoices: lines with quantity, unit price (excl. VAT unless
  the document's `pricesIncludeVat`), discount percentage and VAT percentage; the line total is the one
  Asperion gives, else derived. The customer is the document's relation, embedded by `Source.expand` under
  `relation` (its e-mail is what other systems find the customer by). Status names are lower-cased. A
  document Koppel made carries `koppel_origin` (added by `AsperionSource.read`), read into `Order.origin`.
* Dates: ISO 8601; without an offset they are wall-clock time in the system's `timezone` (Europe/Amsterdam);
  .NET's seven fractional digits are cut to six.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from connectors.readers import decimal_of, iso_time
from gateway.errors import PermanentError
from gateway.model import Address, Attribute, Customer, Order, OrderLine, Person, Product, StockLevel

KIND = "asperion"
DEFAULT_ZONE = "Europe/Amsterdam"
RELATION_KEY = "relation"
"""Where `AsperionSource.expand` embeds a document's relation."""
Built = TypeVar("Built", bound=BaseModel)

SPELLINGS: dict[str, tuple[str, ...]] = {
    "id": ("id", "articleId", "relationId", "salesOrderId", "invoiceId"),
    "code": ("code", "articleCode", "articleNumber", "number"),
    "description": ("description", "name", "omschrijving"),
    "long_description": ("extendedDescription", "longDescription", "notes"),
    "price": ("salesPrice", "price", "verkoopprijs"),
    "price_incl": ("salesPriceIncludesVat", "priceIncludesVat", "pricesIncludeVat"),
    "vat": ("vatPercentage", "vatRate", "btwPercentage"),
    "vat_code": ("vatCode", "btwCode"),
    "ean": ("ean", "barcode", "gtin"),
    "unit": ("unit", "unitCode", "eenheid"),
    "group": ("articleGroupDescription", "articleGroup", "groupDescription"),
    "group_code": ("articleGroupCode", "groupCode"),
    "active": ("isActive", "active", "activeState"),
    "stock": ("currentStock", "stock", "voorraad"),
    "stock_article": ("isStockArticle", "stockManaged", "manageStock"),
    "properties": ("properties", "attributes", "kenmerken"),
    "article_type": ("articleType", "type"),
    "modified": ("modifiedDate", "modifiedOn", "lastModified", "dateModified", "modified"),
    "created": ("createdDate", "createdOn", "created"),
    "relation_number": ("code", "relationNumber", "relationCode", "debtorNumber"),
    "relation_type": ("relationType", "type", "kind"),
    "company": ("companyName", "company", "name"),
    "first_name": ("firstName", "firstname", "voornaam"),
    "last_name": ("lastName", "lastname", "surname", "achternaam"),
    "email": ("email", "emailAddress", "invoiceEmail"),
    "phone": ("phone", "phoneNumber", "telephone", "mobile"),
    "vat_number": ("vatNumber", "btwNummer"),
    "coc": ("cocNumber", "chamberOfCommerceNumber", "kvkNummer"),
    "language": ("language", "languageCode"),
    "currency": ("currency", "currencyCode"),
    "classification": ("classification", "relationGroup", "category"),
    "address": ("address", "invoiceAddress", "postalAddress"),
    "delivery_address": ("deliveryAddress", "shippingAddress"),
    "street": ("street", "streetName", "addressLine1"),
    "house_number": ("houseNumber", "housenumber", "number"),
    "house_addition": ("houseNumberAddition", "addition"),
    "street2": ("addressLine2",),
    "postcode": ("postalCode", "zipCode", "postcode"),
    "city": ("city", "place", "plaats"),
    "country": ("countryCode", "country", "countryIso"),
    "state": ("state", "province"),
    "order_number": ("orderNumber", "invoiceNumber", "number"),
    "reference": ("reference", "yourReference", "externalReference"),
    "relation_id": ("relationId", "customerId", "debtorId"),
    "order_date": ("orderDate", "invoiceDate", "date"),
    "status": ("status", "state"),
    "prices_incl": ("pricesIncludeVat", "amountsIncludeVat"),
    "lines": ("lines", "salesOrderLines", "invoiceLines"),
    "quantity": ("quantity", "amount", "aantal"),
    "unit_price": ("unitPrice", "price", "salesPrice"),
    "discount_pct": ("discountPercentage", "discount"),
    "line_total": ("lineTotalExclVat", "totalExclVat", "lineAmount", "amountExclVat"),
    "line_vat": ("lineVatAmount", "vatAmount"),
    "article_id": ("articleId",),
    "total_excl": ("totalExclVat", "amountExclVat", "totalAmountExclVat"),
    "total_vat": ("totalVat", "vatAmount", "totalVatAmount"),
    "total_incl": ("totalInclVat", "amountInclVat", "totalAmount"),
    "payment_method": ("paymentMethod", "paymentCondition"),
    "remarks": ("remarks", "notes", "memo"),
    "origin": ("koppel_origin",),
}
COMPANY_TYPES = frozenset({"company", "organisation", "organization", "business", "bedrijf", "zakelijk", "b2b"})
PERSON_TYPES = frozenset({"person", "private", "particulier", "consumer", "b2c", "individual"})
_FRACTION = re.compile(r"(\.\d{6})\d+")


def value(record: Mapping[str, Any], name: str) -> Any:
    """The record's field `name` by the first of its spellings it holds (case-insensitively); None if none."""
    folded = {str(k).lower(): v for k, v in record.items()}
    for spelling in SPELLINGS.get(name, (name,)):
        found = folded.get(spelling.lower())
        if found is not None and found != "":
            return found
    return None


def text(record: Mapping[str, Any], name: str) -> str | None:
    found = value(record, name)
    if found is None or isinstance(found, dict | list):
        return None
    return str(found).strip() or None


def parse_date(raw: Any, zone: str = DEFAULT_ZONE) -> datetime | None:
    """An aware datetime from Asperion's ISO 8601 text (no offset: wall-clock time in `zone`); None when
    absent or unreadable. Never raises."""
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=ZoneInfo(zone))
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 40:
        return None
    candidate = _FRACTION.sub(r"\1", raw.strip().replace(" ", "T", 1))
    if candidate.endswith("z"):
        candidate = candidate[:-1] + "Z"
    return iso_time(candidate, zone)


def amount(raw: Any, what: str, label: str) -> Decimal | None:
    """A Decimal from a JSON number (a float through its repr) or text with a decimal point or comma."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise PermanentError(f"{label}: {what} is a boolean, not a number")
    number = decimal_of(raw)
    if number is None:
        raise PermanentError(f"{label}: {what} {str(raw)[:30]!r} is not a number")
    return number


def flag(raw: Any) -> bool | None:
    """A boolean from true/false, 1/0, yes/no, ja/nee, Active/Inactive; None when absent or unreadable."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower() if raw is not None else ""
    if word in ("true", "1", "yes", "ja", "j", "active", "actief"):
        return True
    if word in ("false", "0", "no", "nee", "n", "inactive", "inactief"):
        return False
    return None


def _money(number: Decimal) -> Decimal:
    return number.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _built(label: str, model: type[Built], fields: dict[str, Any]) -> Built:
    try:
        return model(**fields)
    except ValidationError as exc:
        wrong = ", ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                          for e in exc.errors(include_input=False, include_url=False))  # fmt: skip
        raise PermanentError(f"{label}: {wrong}") from None


def _mapping(record: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise PermanentError(f"an Asperion {what} must be a record, not {type(record).__name__}")
    return record


# -- articles -----------------------------------------------------------------------------------------


def article_label(record: Mapping[str, Any]) -> str:
    return f"asperion article {text(record, 'code') or text(record, 'id') or '?'}"


def normalise_article(record: Any, *, zone: str = DEFAULT_ZONE) -> Product:
    record = _mapping(record, "article")
    label = article_label(record)
    sku = text(record, "code")
    if sku is None:
        raise PermanentError(f"{label}: the article has no code (Koppel matches articles on it)")
    price = amount(value(record, "price"), "the sales price", label)
    incl = flag(value(record, "price_incl")) is True
    kind = (text(record, "article_type") or "").lower()
    stock_article = flag(value(record, "stock_article"))
    virtual = kind in ("service", "dienst", "services") or stock_article is False
    group, group_code = text(record, "group"), text(record, "group_code")
    custom = {k: v for k, v in {"asperion_vat_code": text(record, "vat_code")}.items() if v is not None}
    return _built(label, Product, dict(
        source=KIND, id=text(record, "id"), sku=sku, name=text(record, "description"),
        type="virtual" if virtual else "simple",
        categories=[group] if group else [], category_slugs=[(group_code or group or "").lower()] if group else [],
        price_excl=None if incl else price, price_incl=price if incl else None,
        tax_rate=amount(value(record, "vat"), "the VAT percentage", label),
        ean=text(record, "ean"), description=text(record, "long_description"), unit=text(record, "unit"),
        published=flag(value(record, "active")) is not False,
        stock_quantity=amount(value(record, "stock"), "the current stock", label),
        manage_stock=not virtual, attributes=_properties(value(record, "properties"), label),
        modified_at=parse_date(value(record, "modified"), zone), custom_fields=custom,
    ))  # fmt: skip


def _properties(raw: Any, label: str) -> list[Attribute]:
    """An article's `properties` [U]: {name, value} each (a value may be a list); unnamed or empty ones skipped."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PermanentError(f"{label}: properties must be a list of {{name, value}}, not {type(raw).__name__}")
    found: list[Attribute] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise PermanentError(f"{label}: a property must be a {{name, value}} record, not {type(entry).__name__}")
        name, given = text(entry, "name"), value(entry, "value")
        given = given if isinstance(given, list) else [given]
        values = [("true" if v else "false") if isinstance(v, bool) else str(v).strip() for v in given
                  if v is not None and not isinstance(v, dict | list)]  # fmt: skip
        if name and any(values):
            found.append(Attribute(name=name, values=[v for v in values if v]))
    return found


def normalise_stock(record: Any, *, zone: str = DEFAULT_ZONE) -> StockLevel:
    """An article's `currentStock` (read only in Asperion) as its stock level; no reservations are known."""
    record = _mapping(record, "article")
    label = article_label(record)
    sku = text(record, "code")
    if sku is None:
        raise PermanentError(f"{label}: the article has no code (Koppel matches stock on it)")
    on_hand = amount(value(record, "stock"), "the current stock", label)
    if on_hand is None:
        raise PermanentError(f"{label}: the article holds no currentStock")
    managed = flag(value(record, "stock_article")) is not False
    return _built(label, StockLevel, dict(source=KIND, sku=sku, id=text(record, "id"), on_hand=on_hand,
                                          available=on_hand, managed=managed,
                                          modified_at=parse_date(value(record, "modified"), zone)))  # fmt: skip


# -- relations ----------------------------------------------------------------------------------------


def is_company(record: Mapping[str, Any]) -> bool:
    kind = (text(record, "relation_type") or "").lower()
    if kind in COMPANY_TYPES:
        return True
    if kind in PERSON_TYPES:
        return False
    explicit = flag(value(record, "isCompany"))
    if explicit is not None:
        return explicit
    return bool(text(record, "company")) and not (text(record, "first_name") or text(record, "last_name"))


def address_of(raw: Any, *, company: str | None = None) -> Address | None:
    """An Asperion address object; its street and house number (and addition) joined as the street line."""
    if not isinstance(raw, Mapping):
        return None
    parts = [text(raw, "street"), text(raw, "house_number"), text(raw, "house_addition")]
    street = " ".join(p for p in parts if p) or None
    country = text(raw, "country")
    found = Address(company=company, street=street, street2=text(raw, "street2"), postcode=text(raw, "postcode"),
                    city=text(raw, "city"), state=text(raw, "state"),
                    country=country.upper() if country and len(country) == 2 else country)  # fmt: skip
    return found if any((street, found.postcode, found.city, found.country)) else None


def relation_label(record: Mapping[str, Any]) -> str:
    return f"asperion relation {text(record, 'relation_number') or text(record, 'id') or '?'}"


def normalise_relation(record: Any, *, zone: str = DEFAULT_ZONE) -> Customer:
    record = _mapping(record, "relation")
    label = relation_label(record)
    company = is_company(record)
    company_name = text(record, "company") if company else None
    first, last = text(record, "first_name"), text(record, "last_name")
    if not company and not (first or last) and text(record, "company"):
        last = text(record, "company")  # a person known by one name only
    email = text(record, "email")
    billing = address_of(value(record, "address"), company=company_name)
    delivery = address_of(value(record, "delivery_address"), company=company_name) or billing
    if billing is not None:
        billing = billing.model_copy(update={"first_name": first, "last_name": last, "email": email})
    return _built(label, Customer, dict(
        source=KIND, id=text(record, "id"), number=text(record, "relation_number"),
        kind="company" if company else "person", company_name=company_name,
        contact=Person(first_name=first, last_name=last, email=email, phone=text(record, "phone")),
        email=email, phone=text(record, "phone"), billing_address=billing, shipping_address=delivery,
        vat_number=text(record, "vat_number"), chamber_of_commerce=text(record, "coc"),
        classification=text(record, "classification"), currency=text(record, "currency"),
        language=text(record, "language"), created_at=parse_date(value(record, "created"), zone),
        modified_at=parse_date(value(record, "modified"), zone),
    ))  # fmt: skip


# -- sales orders and invoices -------------------------------------------------------------------------


def _line(raw: Any, index: int, prices_incl: bool, label: str) -> OrderLine:
    if not isinstance(raw, Mapping):
        raise PermanentError(f"{label}: line {index} is not a record")
    where = f"{label} line {index}"
    quantity = amount(value(raw, "quantity"), "the quantity", where)
    if quantity is None:
        raise PermanentError(f"{where}: no quantity")
    unit = amount(value(raw, "unit_price"), "the unit price", where) or Decimal(0)
    percent = amount(value(raw, "discount_pct"), "the discount percentage", where) or Decimal(0)
    rate = amount(value(raw, "vat"), "the VAT percentage", where)
    net = unit * (100 - percent) / 100
    given = amount(value(raw, "line_total"), "the line total", where)
    total = _money(given if given is not None else net * quantity)
    gross = _money(unit * quantity)
    if prices_incl:  # unit prices and the derived total include VAT
        incl, vat = total, _money(total - total * 100 / (100 + rate)) if rate is not None else Decimal(0)
        excl = incl - vat
        fields = dict(unit_price_incl=unit, net_unit_price_incl=net, total_incl=incl, total_excl=excl, tax_total=vat,
                      discount_excl=_money((gross - incl) * 100 / (100 + (rate or 0))))  # fmt: skip
    else:
        vat_given = amount(value(raw, "line_vat"), "the line's VAT", where)
        vat = vat_given if vat_given is not None else _money(total * (rate or 0) / 100)
        fields = dict(unit_price_excl=unit, net_unit_price_excl=net, total_excl=total, tax_total=vat,
                      total_incl=total + vat, discount_excl=gross - total)  # fmt: skip
    return _built(where, OrderLine, dict(
        id=text(raw, "id"), sku=text(raw, "code"), name=text(raw, "description"),
        product_id=text(raw, "article_id"), quantity=quantity, tax_rate=rate, **fields,
    ))  # fmt: skip


def document_label(record: Mapping[str, Any]) -> str:
    kind = "sales invoice" if "invoiceNumber" in record or "invoiceDate" in record else "sales order"
    return f"asperion {kind} {text(record, 'order_number') or text(record, 'id') or '?'}"


def normalise_document(record: Any, *, zone: str = DEFAULT_ZONE) -> Order:
    """A sales order (or invoice) with its lines; its customer from the embedded relation (`RELATION_KEY`)."""
    record = _mapping(record, "sales order")
    label = document_label(record)
    ident, number = text(record, "id"), text(record, "order_number")
    if ident is None and number is None:
        raise PermanentError(f"{label}: the document has neither an id nor a number")
    prices_incl = flag(value(record, "prices_incl")) is True
    lines_raw = value(record, "lines") or []
    if not isinstance(lines_raw, list):
        raise PermanentError(f"{label}: lines is not a list")
    lines = [_line(raw, n, prices_incl, label) for n, raw in enumerate(lines_raw, 1)]
    relation = record.get(RELATION_KEY)
    if isinstance(relation, Mapping):
        customer = normalise_relation(relation, zone=zone)
    else:
        customer = Customer(source=KIND, id=text(record, "relation_id"), email=text(record, "email"))
    ordered = parse_date(value(record, "order_date"), zone)
    day = ordered.date() if ordered is not None else _day(text(record, "order_date"))
    excl = amount(value(record, "total_excl"), "the total excl. VAT", label)
    vat = amount(value(record, "total_vat"), "the VAT total", label)
    incl = amount(value(record, "total_incl"), "the total incl. VAT", label)
    if excl is None and lines:
        excl = sum((line.total_excl or Decimal(0) for line in lines), Decimal(0))
        vat = sum((line.tax_total or Decimal(0) for line in lines), Decimal(0)) if vat is None else vat
    if incl is None and excl is not None and vat is not None:
        incl = excl + vat
    remarks = text(record, "remarks")
    delivery = address_of(value(record, "delivery_address"))
    return _built(label, Order, dict(
        source=KIND, id=ident or number, number=number or ident, reference=text(record, "reference"),
        status=(text(record, "status") or "").lower() or None,
        created_at=parse_date(value(record, "created"), zone) or ordered,
        modified_at=parse_date(value(record, "modified"), zone), order_date=day,
        currency=text(record, "currency"), prices_include_tax=prices_incl, customer=customer,
        billing_address=address_of(value(record, "address")) or customer.billing_address,
        shipping_address=delivery or customer.shipping_address, lines=lines,
        payment_method=text(record, "payment_method"), total_excl=excl, tax_total=vat, total_incl=incl,
        notes=[remarks] if remarks else [], origin=text(record, "origin"),
        custom_fields={"status_code": text(record, "status")} if text(record, "status") else {},
    ))  # fmt: skip


def _day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw[:10]) if raw else None
    except ValueError:
        return None


__all__ = ["KIND", "RELATION_KEY", "SPELLINGS", "address_of", "amount", "flag", "is_company", "normalise_article",
           "normalise_document", "normalise_relation", "normalise_stock", "parse_date", "text", "value"]  # fmt: skip
