"""Winstore's article, stock, order and customer records in the canonical model (gateway/model.py).

Field names are read by any of the spellings in `ARTICLE`/`STOCK` (wire.field: case and underscores
ignored), because Winstore's are not documented publicly: the first of each list is what the sandbox
answers, the others are plausible spellings (Dutch ones included) of the same field [U].

Winstore holds simple products only: a record is always read as one simple product. Variants,
categories and images a record might carry are not read (a record claiming a type other than simple is
still a simple product). The article's descriptive fields travel as `features` under fixed names —
`supplier`, `supplier_number`, `brand`, `colour`, `group` (the article group) — so a target's mapping
picks them through mapping tables (`$mapped('features', …)`, `$table(…)`), and as custom fields
(`winstore_<name>`); its unit of sale is `unit`.

Prices: Winstore is a till system; its sales price is the consumer price, VAT included (`price_incl`),
with the article's VAT percentage when it gives one. Dates without an offset are local time in the
system's `timezone` (default Europe/Amsterdam).

Orders and customers come through assumed endpoints [U] (connectors/winstore/connector.py): an order is a
till's, prices VAT included (`prices_include_tax`); a position's amounts excl. VAT are derived at its VAT
rate (`vat`, which the connector adds from the article when the read lacks it), rounded to cents, the tax
the rest; `reduction` is the position's discount incl. VAT. A position's SKU is its article number (`artnr`).
The customer (an order's, from `customerid`, `email` and `invoice_add`; or a customer record) is a company
when a company name is given, its person the contact; else a person. Status codes are named through
`DEFAULT_STATUS_NAMES` or the system's table, the code kept as `custom_fields["status_code"]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from connectors.readers import decimal_of, iso_time
from connectors.winstore.wire import field as any_field
from gateway.errors import PermanentError
from gateway.model import Address, Customer, Order, OrderLine, Person, Product, StockLevel, per_unit

__all__ = [
    "ARTICLE",
    "CUSTOMER",
    "DEFAULT_STATUS_NAMES",
    "ORDER",
    "POSITION",
    "STOCK",
    "article_key",
    "change_time",
    "customer_id",
    "field",
    "normalise_customer",
    "normalise_order",
    "normalise_product",
    "normalise_stock",
    "order_number",
    "positions_of",
    "sku_of",
    "status_name",
]

KIND = "winstore"
Built = TypeVar("Built", Product, StockLevel, Order, OrderLine, Customer)
DEFAULT_ZONE = "Europe/Amsterdam"

ARTICLE: dict[str, tuple[str, ...]] = {
    "key": ("ArtKey", "ArtikelKey", "ArticleKey", "ArtId", "Id"),
    "number": ("ArtNr", "ArtikelNr", "ArticleNumber", "Artikelnummer", "ItemCode", "Sku"),
    "gtin": ("Gtin", "Ean", "Barcode", "EanCode"),
    "name": ("Description", "Omschrijving", "Name", "ArtikelOmschrijving"),
    "long_description": ("LongDescription", "ExtraDescription", "Memo"),
    "price": ("SalesPrice", "Verkoopprijs", "Price", "RetailPrice"),
    "vat": ("VatPercentage", "VatRate", "BtwPercentage", "Vat"),
    "supplier": ("SupplierId", "LeverancierId", "Supplier"),
    "supplier_number": ("SupplierArtNr", "LeveranciersArtNr", "SupplierArticleNumber"),
    "brand": ("Brand", "Merk"),
    "colour": ("Colour", "Color", "Kleur"),
    "group": ("ArticleGroup", "Artikelgroep", "ArticleGroupId", "Group", "Groep", "ProductGroup"),
    "unit": ("Unit", "Eenheid", "UnitOfMeasure", "SalesUnit"),
    "active": ("Active", "Actief", "Blocked"),
    "changed": ("ChangeDate", "ChangedDate", "LastChanged", "Changed", "ModifiedDate", "Mutatiedatum", "Date"),
}
FEATURES = ("supplier", "supplier_number", "brand", "colour", "group")
"""The article fields read as the product's `features` (under these names)."""
STOCK: dict[str, tuple[str, ...]] = {
    "warehouse": ("Warehouse", "WarehouseId", "Magazijn", "Branch", "Filiaal"),
    "quantity": ("Stock", "Quantity", "Voorraad", "Qty", "FreeStock"),
    "reserved": ("Reserved", "Gereserveerd"),
}


def field(record: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` the record holds a scalar for (a nested table or list is no article field)."""
    for name in names:
        value = any_field(record, name)
        if value is not None and not isinstance(value, dict | list):
            return value
    return None


def article_key(record: Mapping[str, Any]) -> str | None:
    value = field(record, *ARTICLE["key"])
    return None if value is None else str(value).strip() or None


def sku_of(record: Mapping[str, Any]) -> str | None:
    """The article's SKU: its article number; an article without one goes by its GTIN."""
    value = field(record, *ARTICLE["number"]) or field(record, *ARTICLE["gtin"])
    return None if value is None else str(value).strip() or None


def change_time(record: Mapping[str, Any], zone: str = DEFAULT_ZONE) -> datetime | None:
    """When the record last changed, aware (local time in `zone` when Winstore gives no offset); None if unreadable."""
    value = field(record, *ARTICLE["changed"])
    if value is None:
        return None
    return iso_time(str(value).strip().replace(" ", "T", 1), zone)


def _decimal(value: Any, what: str, label: str) -> Decimal | None:
    if value is None or value == "":
        return None
    number = decimal_of(value)
    if number is None:
        raise PermanentError(f"{label}: {what} {str(value)[:30]!r} is not a number")
    return number


def _rate(rate: Decimal | None) -> Decimal | None:
    """A VAT percentage without trailing zeros ("21.00" → 21, "5.50" → 5.5): mapping tables are keyed "21"."""
    if rate is None:
        return None
    return rate.quantize(Decimal(1)) if rate == rate.to_integral_value() else rate.normalize()


def _label(record: Mapping[str, Any]) -> str:
    return f"winstore article {sku_of(record) or article_key(record) or '?'}"


def _active(record: Mapping[str, Any]) -> bool:
    for name in ARTICLE["active"]:
        value = field(record, name)
        if value is None:
            continue
        flag = str(value).strip().lower() in ("true", "1", "yes", "ja", "j")
        return not flag if name == "Blocked" else flag
    return True


def normalise_product(record: Any, *, zone: str = DEFAULT_ZONE) -> Product:
    """One article as a simple product; PermanentError naming what is missing or unreadable."""
    if not isinstance(record, Mapping):
        raise PermanentError(f"a Winstore article must be a record, not {type(record).__name__}")
    label = _label(record)
    sku = sku_of(record)
    if sku is None:
        raise PermanentError(f"{label}: the article has neither an article number nor a GTIN")
    features: dict[str, str] = {}
    for name in FEATURES:
        value = field(record, *ARTICLE[name])
        if value is not None and str(value).strip():
            features[name] = str(value).strip()
    unit = field(record, *ARTICLE["unit"])
    gtin = field(record, *ARTICLE["gtin"])
    name = field(record, *ARTICLE["name"])
    description = field(record, *ARTICLE["long_description"])
    return _built(label, Product, dict(
        source=KIND,
        id=article_key(record),
        sku=sku,
        name=str(name) if name is not None else None,
        type="simple",
        price_incl=_decimal(field(record, *ARTICLE["price"]), "the sales price", label),
        tax_rate=_rate(_decimal(field(record, *ARTICLE["vat"]), "the VAT percentage", label)),
        ean=str(gtin) if gtin is not None else None,
        description=str(description) if description is not None else None,
        published=_active(record),
        unit=(str(unit).strip() or None) if unit is not None else None,
        features=features,
        modified_at=change_time(record, zone),
        custom_fields={f"winstore_{name}": value for name, value in features.items()},
    ))


def normalise_stock(record: Any, *, zone: str = DEFAULT_ZONE) -> StockLevel:
    """An article's stock: `Stock` on hand (summed over the warehouses the connector read, `location` naming
    them), minus `Reserved` where Winstore gives it."""
    if not isinstance(record, Mapping):
        raise PermanentError(f"a Winstore stock record must be a record, not {type(record).__name__}")
    label = _label(record)
    sku = sku_of(record)
    if sku is None:
        raise PermanentError(f"{label}: the stock record names no article number or GTIN")
    on_hand = _decimal(field(record, *STOCK["quantity"]), "the stock", label)
    if on_hand is None:
        raise PermanentError(f"{label}: the stock record holds no stock quantity")
    reserved = _decimal(field(record, *STOCK["reserved"]), "the reserved stock", label) or Decimal(0)
    warehouse = field(record, *STOCK["warehouse"])
    return _built(label, StockLevel, dict(
        source=KIND,
        sku=sku,
        id=article_key(record),
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        location=str(warehouse) if warehouse is not None else None,
        modified_at=change_time(record, zone),
    ))


def _built(label: str, model: type[Built], fields: dict[str, Any]) -> Built:
    """The model, or PermanentError naming the fields the model refused (an amount out of range)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        wrong = ", ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                          for e in exc.errors(include_input=False, include_url=False))  # fmt: skip
        raise PermanentError(f"{label}: {wrong}") from None


# -- orders and customers (read through the assumed endpoints [U], connectors/winstore/client.py) -----------

ORDER: dict[str, tuple[str, ...]] = {
    "number": ("ordernr", "OrderNr", "OrderNumber", "Ordernummer"),
    "id": ("orderid", "OrderId", "Id"),
    "date": ("orderdate", "OrderDate", "Date", "Datum"),
    "customer": ("customerid", "CustomerId", "KlantId", "Klantnummer"),
    "email": ("email", "EmailAddress", "Mail"),
    "branch": ("branch", "Filiaal", "BranchId"),
    "channel": ("channel", "Kanaal", "SalesChannel"),
    "total": ("total", "TotalAmount", "Totaal"),
    "currency": ("currency", "CurrencyCode", "Valuta"),
    "status": ("statuscode", "StatusCode", "Status", "OrderStatus"),
    "address": ("invoice_add", "InvoiceAddress", "Factuuradres"),
    "positions": ("positions", "Positions", "OrderLines", "Lines", "Regels"),
    "origin": ("koppel_origin",),
}
POSITION: dict[str, tuple[str, ...]] = {
    "key": ("product_id", "ProductId", "ArtKey", "ArtikelKey"),
    "number": ("artnr", "ArtNr", "ArticleNumber", "Artikelnummer", "Sku"),
    "name": ("description", "Description", "Omschrijving", "Name"),
    "quantity": ("amount", "Amount", "Quantity", "Aantal", "Qty"),
    "price": ("single_price", "SinglePrice", "UnitPrice", "Price", "Prijs"),
    "reduction": ("reduction", "Reduction", "Discount", "Korting"),
    "vat": ("vat", "VatPercentage", "VatRate", "BtwPercentage"),
}
CUSTOMER: dict[str, tuple[str, ...]] = {
    "id": ("customerid", "CustomerId", "KlantId", "Klantnummer", "Id"),
    "company": ("company", "CompanyName", "Bedrijf", "Bedrijfsnaam"),
    "first_name": ("fname", "FirstName", "Voornaam"),
    "last_name": ("lname", "LastName", "Achternaam"),
    "email": ("email", "EmailAddress", "Mail"),
    "phone": ("phone", "Telephone", "PhoneNumber", "Telefoon"),
    "street": ("street", "Street", "Straat"),
    "number": ("streetnr", "HouseNumber", "Huisnummer", "StreetNumber"),
    "postcode": ("zip", "ZipCode", "PostalCode", "Postcode"),
    "city": ("city", "City", "Plaats", "Woonplaats"),
    "country": ("countryISO", "CountryCode", "Country", "Land"),
    "vat_number": ("vatnumber", "VatNumber", "BtwNummer"),
}
DEFAULT_STATUS_NAMES: dict[str, str] = {"0": "pending", "1": "processing", "2": "completed", "9": "cancelled"}
"""Winstore's order status codes → Koppel's names [U: Winstore's codes are not public]; a system's
`settings.status_names` replaces the table. A code not in it travels as itself (`Order.status` the code)."""
ZERO = Decimal(0)
CENT = Decimal("0.01")


def order_number(record: Mapping[str, Any]) -> str | None:
    value = field(record, *ORDER["number"])
    return None if value is None else str(value).strip() or None


def customer_id(record: Mapping[str, Any]) -> str | None:
    value = field(record, *CUSTOMER["id"])
    return None if value is None else str(value).strip() or None


def positions_of(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The order's positions, however the answer nests them: a list (JSON), `{"position": record or list}` (XML)."""
    for name in ORDER["positions"]:
        value = any_field(record, name)
        if value is None:
            continue
        if isinstance(value, Mapping) and len(value) == 1 and isinstance(next(iter(value.values())), dict | list):
            value = next(iter(value.values()))
        if isinstance(value, Mapping):
            value = [value]
        if isinstance(value, list):
            return [dict(p) for p in value if isinstance(p, Mapping)]
    return []


def _text(record: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    value = field(record, *names)
    return None if value is None else " ".join(str(value).split()) or None


def _moment(value: Any, zone: str) -> datetime | None:
    return change_time({"ChangeDate": value}, zone) if value is not None else None


def _address(record: Mapping[str, Any], *, email: str | None) -> Address | None:
    street = " ".join(p for p in (_text(record, CUSTOMER["street"]), _text(record, CUSTOMER["number"])) if p)
    country = _text(record, CUSTOMER["country"])
    address = Address(
        company=_text(record, CUSTOMER["company"]),
        first_name=_text(record, CUSTOMER["first_name"]),
        last_name=_text(record, CUSTOMER["last_name"]),
        street=street or None,
        postcode=_text(record, CUSTOMER["postcode"]),
        city=_text(record, CUSTOMER["city"]),
        country=country.upper() if country and len(country) == 2 else country,
        email=email,
        phone=_text(record, CUSTOMER["phone"]),
    )
    return address if address.model_dump(exclude_none=True, exclude={"name", "email"}) else None


def _customer(ident: str | None, address: Address | None, email: str | None, label: str,
              modified: datetime | None = None, vat_number: str | None = None) -> Customer:  # fmt: skip
    company = address.company if address is not None else None
    return _built(label, Customer, dict(
        source=KIND,
        id=ident,
        number=ident,
        kind="company" if company else "person",
        company_name=company,
        contact=Person(
            first_name=address.first_name if address else None,
            last_name=address.last_name if address else None,
            email=email,
            phone=address.phone if address else None,
        ),
        email=email,
        phone=address.phone if address else None,
        billing_address=address,
        shipping_address=address,
        vat_number=vat_number,
        modified_at=modified,
    ))


def normalise_customer(record: Any, *, zone: str = DEFAULT_ZONE) -> Customer:
    """A Winstore customer: a company when it has a company name (the person its contact), else a person."""
    if not isinstance(record, Mapping):
        raise PermanentError(f"a Winstore customer must be a record, not {type(record).__name__}")
    ident = customer_id(record)
    label = f"winstore customer {ident or '?'}"
    if ident is None:
        raise PermanentError(f"{label}: the customer has no customerid")
    email = _text(record, CUSTOMER["email"])
    return _customer(ident, _address(record, email=email), email, label, change_time(record, zone),
                     _text(record, CUSTOMER["vat_number"]))  # fmt: skip


def _position(position: Mapping[str, Any], index: int, label: str) -> OrderLine:
    where = f"{label}: position {index}"
    quantity = _decimal(field(position, *POSITION["quantity"]), "the amount", where)
    if not quantity:
        raise PermanentError(f"{where}: no amount" if quantity is None else f"{where}: the amount is 0")
    price = _decimal(field(position, *POSITION["price"]), "the single price", where)
    if price is None:
        raise PermanentError(f"{where}: no single price")
    reduction = _decimal(field(position, *POSITION["reduction"]), "the reduction", where) or ZERO
    rate = _decimal(field(position, *POSITION["vat"]), "the VAT percentage", where)
    gross = price * quantity
    total_incl = gross - reduction
    fields: dict[str, Any] = dict(
        id=str(index),
        sku=_text(position, POSITION["number"]),
        name=_text(position, POSITION["name"]),
        product_id=_text(position, POSITION["key"]),
        quantity=quantity,
        unit_price_incl=price,
        net_unit_price_incl=per_unit(total_incl, quantity),
        total_incl=total_incl,
        tax_rate=rate,
    )
    if rate is not None:  # Winstore's prices include VAT: the amounts excl. VAT at the article's rate
        factor = 1 + rate / 100
        total_excl = (total_incl / factor).quantize(CENT, ROUND_HALF_UP)
        gross_excl = (gross / factor).quantize(CENT, ROUND_HALF_UP)
        fields |= dict(
            unit_price_excl=per_unit(gross_excl, quantity),
            net_unit_price_excl=per_unit(total_excl, quantity),
            total_excl=total_excl,
            tax_total=total_incl - total_excl,
            discount_excl=gross_excl - total_excl,
            discount_tax=reduction - (gross_excl - total_excl),
        )
    return _built(where, OrderLine, fields)


def status_name(code: str | None, names: Mapping[str, str] | None = None) -> str | None:
    """Koppel's name of a Winstore status code (`DEFAULT_STATUS_NAMES`, or the system's table); else the code."""
    if code is None:
        return None
    return (DEFAULT_STATUS_NAMES if names is None else names).get(code, code)


def normalise_order(record: Any, *, zone: str = DEFAULT_ZONE, status_names: Mapping[str, str] | None = None) -> Order:
    """A Winstore order (the assumed read shape [U]) as an `Order`: prices VAT included (a till's), each
    position's SKU its article number (`artnr`, which the connector fills in from the article key when the
    read lacks it), the customer a company when the invoice address names one. PermanentError naming what
    is missing or unreadable."""
    if not isinstance(record, Mapping):
        raise PermanentError(f"a Winstore order must be a record, not {type(record).__name__}")
    number = order_number(record)
    label = f"winstore order {number or '?'}"
    if number is None:
        raise PermanentError(f"{label}: the order has no ordernr")
    address_record = any_field(record, *ORDER["address"])
    email = _text(record, ORDER["email"])
    address = _address(address_record, email=email) if isinstance(address_record, Mapping) else None
    ident = _text(record, ORDER["customer"])
    code = _text(record, ORDER["status"])
    positions = positions_of(record)
    if not positions:
        raise PermanentError(f"{label}: the order has no positions")
    lines = [_position(p, i, label) for i, p in enumerate(positions, 1)]
    created = _moment(field(record, *ORDER["date"]), zone)
    custom: dict[str, Any] = {}
    for name in ("branch", "channel"):
        value = _text(record, ORDER[name])
        if value is not None:
            custom[f"winstore_{name}"] = value
    if code is not None:
        custom["status_code"] = code
    total = _decimal(field(record, *ORDER["total"]), "the total", label)
    taxes = [line.tax_total for line in lines]
    tax_total = sum((t for t in taxes if t is not None), ZERO) if all(t is not None for t in taxes) else None
    return _built(label, Order, dict(
        source=KIND,
        id=_text(record, ORDER["id"]) or number,
        number=number,
        origin=_text(record, ORDER["origin"]),
        status=status_name(code, status_names),
        created_at=created,
        order_date=created.astimezone(ZoneInfo(zone)).date() if created is not None else None,
        modified_at=change_time(record, zone),
        currency=_text(record, ORDER["currency"]) or "EUR",
        prices_include_tax=True,
        customer=_customer(ident, address, email, label),
        billing_address=address,
        shipping_address=address,
        lines=lines,
        total_incl=total,
        tax_total=tax_total,
        total_excl=total - tax_total if total is not None and tax_total is not None else None,
        custom_fields=custom,
    ))
