"""Winstore's article and stock records in the canonical model (gateway/model.py).

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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from connectors.winstore.wire import field as any_field
from gateway.errors import PermanentError
from gateway.model import Product, StockLevel

__all__ = ["ARTICLE", "STOCK", "article_key", "change_time", "field", "normalise_product", "normalise_stock", "sku_of"]

KIND = "winstore"
Built = TypeVar("Built", Product, StockLevel)
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
    text = str(value).strip().replace(" ", "T", 1)
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z") + ("+00:00" if text.endswith("Z") else ""))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(zone))


def _decimal(value: Any, what: str, label: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise PermanentError(f"{label}: {what} {str(value)[:30]!r} is not a number") from None
    if not number.is_finite():
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
