"""Koppel's canonical model: Order, Customer, Product and StockLevel, between every source and target.

Normalisers (`connectors/<system>/normalise.py`) turn a source payload into these records; the
datamapper (`transforms/`) turns a record into the payload a target accepts. Records are frozen
pydantic models with no web, queue or HTTP imports, so each side can be read and tested alone.

Money, quantities and tax rates are `Decimal`, never float: a float handed to a money field is
refused (`Decimal(0.1)` is not 0.1). Tax rates are percentages (`Decimal("21")`). Timestamps are
timezone-aware UTC `datetime`s. Every record carries `source` (system kind) and `id` (the source's
own id) so that any error about it can name it.

`NormaliseError` is raised when a source payload cannot be read into the model; it is permanent
(retrying the same payload cannot help), like the datamapper's `MappingError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, computed_field

from gateway.errors import PermanentError

__all__ = [
    "Address",
    "Attribute",
    "CustomFields",
    "Customer",
    "Discount",
    "Fee",
    "NormaliseError",
    "Order",
    "OrderLine",
    "Person",
    "Product",
    "ProductType",
    "Reader",
    "ShippingLine",
    "StockLevel",
    "Variant",
    "number_from",
    "per_unit",
    "plain",
    "rate_of",
    "record_kind",
    "record_label",
    "separate_discounts",
    "timestamp_from",
    "to_decimal",
]


class NormaliseError(PermanentError):
    """A source payload does not fit the canonical model. Names the record and the field, never values."""

    def __init__(self, source: str, kind: str, record_id: str | None, field: str, reason: str) -> None:
        self.source = source
        self.kind = kind
        self.record_id = record_id
        self.field = field
        self.reason = reason
        who = f"{source} {kind} {record_id}" if record_id else f"{source} {kind} (no id)"
        super().__init__(f"{who}: {field}: {reason}")


def to_decimal(value: object) -> Decimal:
    """An exact Decimal from a decimal string, int or Decimal. Floats are refused: they are not exact.

    Raises ValueError with a sentence when the value is not a finite number.
    """
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            raise ValueError("expected a decimal number")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError("expected a decimal number") from None
    elif isinstance(value, float):
        raise ValueError("money and quantities must not be floats; pass a decimal string or Decimal")
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError("expected a finite number")
    if result and not -12 <= result.adjusted() <= 15:
        raise ValueError("number out of range")
    return result


def _decimal(value: object) -> Decimal:
    return to_decimal(value)


def _optional_decimal(value: object) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _utc(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp without a time zone")
        return value.astimezone(UTC)
    raise ValueError("expected a timezone-aware datetime")


Money = Annotated[Decimal, BeforeValidator(_decimal)]
"""An exact amount in the record's currency."""
OptionalMoney = Annotated[Decimal | None, BeforeValidator(_optional_decimal)]
Quantity = Annotated[Decimal, BeforeValidator(_decimal)]
OptionalQuantity = Annotated[Decimal | None, BeforeValidator(_optional_decimal)]
Rate = Annotated[Decimal | None, BeforeValidator(_optional_decimal)]
"""A tax rate in percent, e.g. Decimal("21"); None when the source does not say."""
Timestamp = Annotated[datetime | None, BeforeValidator(_utc)]
Scalar = str | int | bool | Decimal | None
CustomFields = dict[str, Scalar | list[Scalar]]
ProductType = Literal["simple", "virtual", "variable", "variation"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Address(_Record):
    """A postal address. `street` is the line as the source holds it; splitting street and house
    number is a transform function, because sources disagree on where the number lives."""

    company: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    street: str | None = None
    street2: str | None = None
    postcode: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    """ISO 3166-1 alpha-2 when the source gives one; otherwise as the source wrote it."""
    email: str | None = None
    phone: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str | None:
        full = " ".join(p for p in (self.first_name, self.last_name) if p)
        return full or None


class Person(_Record):
    """A natural person: the customer itself, or the contact person of a company customer."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class Customer(_Record):
    """A debtor. `kind` is "company" when the source has a company name, else "person" (SPEC)."""

    source: str
    id: str | None = None
    number: str | None = None
    """The source's customer code / number, when it has one besides the id."""
    kind: Literal["company", "person"] = "person"
    company_name: str | None = None
    contact: Person = Person()
    email: str | None = None
    phone: str | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    vat_number: str | None = None
    chamber_of_commerce: str | None = None
    classification: str | None = None
    currency: str | None = None
    language: str | None = None
    created_at: Timestamp = None
    modified_at: Timestamp = None
    custom_fields: CustomFields = {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def display_name(self) -> str | None:
        if self.kind == "company" and self.company_name:
            return self.company_name
        full = " ".join(p for p in (self.contact.first_name, self.contact.last_name) if p)
        return full or self.company_name or self.email


class OrderLine(_Record):
    """One ordered product. Unit prices are per unit before line discount; `net_unit_price_*` after it.

    Line totals are authoritative (they are what the customer paid); unit prices are derived from
    them, rounded half-up to `UNIT_PRICE_PLACES` decimals, because sources such as WooCommerce
    report the unit price only as a float.
    """

    id: str | None = None
    sku: str | None = None
    name: str | None = None
    product_id: str | None = None
    variant_id: str | None = None
    quantity: Quantity
    unit_price_excl: OptionalMoney = None
    unit_price_incl: OptionalMoney = None
    net_unit_price_excl: OptionalMoney = None
    net_unit_price_incl: OptionalMoney = None
    discount_excl: Money = Decimal(0)
    """Discount on this line, excluding tax (line subtotal minus line total)."""
    discount_tax: Money = Decimal(0)
    """The tax that discount took off the line (line subtotal tax minus line tax)."""
    total_excl: OptionalMoney = None
    tax_total: OptionalMoney = None
    total_incl: OptionalMoney = None
    tax_rate: Rate = None
    tax_class: str | None = None
    options: dict[str, str] = {}
    """Variant options chosen (size, colour), as the source names them."""
    custom_fields: CustomFields = {}


class ShippingLine(_Record):
    """Shipping cost. Amounts the source does not give (e.g. excl. tax on a tax-inclusive shop that
    reports no tax per line) are None, never a made-up 0."""

    method_id: str | None = None
    method_title: str | None = None
    total_excl: OptionalMoney = None
    tax_total: OptionalMoney = None
    total_incl: OptionalMoney = None
    tax_rate: Rate = None


class Fee(_Record):
    name: str | None = None
    total_excl: OptionalMoney = None
    tax_total: OptionalMoney = None
    total_incl: OptionalMoney = None
    tax_rate: Rate = None


class Discount(_Record):
    """An order-level discount (coupon, promotion). Already reflected in the line totals when the
    source spreads discounts over lines (WooCommerce does): then it is informational."""

    code: str | None = None
    description: str | None = None
    amount_excl: OptionalMoney = None
    tax_total: OptionalMoney = None
    amount_incl: OptionalMoney = None
    applied_to_lines: bool = True
    tax_rate: Rate = None
    """The VAT rate of the discount when it is known: a discount line books at one rate."""


class Order(_Record):
    source: str
    id: str
    number: str
    """The order number the customer sees; the target's external reference (idempotency key)."""
    reference: str | None = None
    """The order number in the system this order was made from (Exact's YourRef): for write-backs."""
    origin: str | None = None
    """"<system id>:<order id>" of the order Koppel made this one from (a shop order booked from an ERP
    order): never booked back into that system."""
    status: str | None = None
    created_at: Timestamp = None
    modified_at: Timestamp = None
    paid_at: Timestamp = None
    order_date: date | None = None
    """The order's calendar date as the source means it (local date), when it says."""
    currency: str | None = None
    prices_include_tax: bool = False
    customer: Customer
    billing_address: Address | None = None
    shipping_address: Address | None = None
    lines: list[OrderLine] = []
    shipping_lines: list[ShippingLine] = []
    fees: list[Fee] = []
    discounts: list[Discount] = []
    payment_method: str | None = None
    payment_method_title: str | None = None
    shipping_method: str | None = None
    shipping_method_title: str | None = None
    total_excl: OptionalMoney = None
    tax_total: OptionalMoney = None
    total_incl: OptionalMoney = None
    notes: list[str] = []
    custom_fields: CustomFields = {}


class Attribute(_Record):
    """A product attribute. `variation=True` attributes build variants (size, colour); others are
    features (extra information such as country of origin)."""

    name: str
    values: list[str] = []
    variation: bool = False


class Variant(_Record):
    id: str | None = None
    sku: str | None = None
    options: dict[str, str] = {}
    price_excl: OptionalMoney = None
    price_incl: OptionalMoney = None
    ean: str | None = None
    stock_quantity: OptionalQuantity = None
    manage_stock: bool | None = None
    image: str | None = None
    published: bool = True
    virtual: bool = False
    """A variant that is not shipped (a service, a download): not a stock item."""
    custom_fields: CustomFields = {}


class Product(_Record):
    source: str
    id: str | None = None
    sku: str | None = None
    name: str | None = None
    type: ProductType = "simple"
    """"variation" is one variant arriving on its own (WooCommerce sends product.updated for it)."""
    parent_id: str | None = None
    variants: list[Variant] = []
    attributes: list[Attribute] = []
    features: dict[str, str] = {}
    categories: list[str] = []
    category_slugs: list[str] = []
    """The categories' short stable names (a shop's slugs), in the order of `categories`."""
    images: list[str] = []
    price_excl: OptionalMoney = None
    price_incl: OptionalMoney = None
    tax_rate: Rate = None
    tax_class: str | None = None
    ean: str | None = None
    description: str | None = None
    short_description: str | None = None
    published: bool = True
    unit: str | None = None
    stock_quantity: OptionalQuantity = None
    manage_stock: bool | None = None
    modified_at: Timestamp = None
    custom_fields: CustomFields = {}


class StockLevel(_Record):
    """Stock of one SKU. `available` is on hand minus reserved unless the source says otherwise."""

    source: str
    sku: str
    id: str | None = None
    on_hand: Quantity = Decimal(0)
    reserved: Quantity = Decimal(0)
    available: Quantity = Decimal(0)
    managed: bool = True
    location: str | None = None
    modified_at: Timestamp = None


Record = Order | Customer | Product | StockLevel
"""Any canonical record."""

KIND_OF: dict[type[BaseModel], str] = {Order: "order", Customer: "customer", Product: "product", StockLevel: "stock"}


def record_kind(record: BaseModel) -> str:
    """ "order", "customer", "product" or "stock"."""
    return KIND_OF.get(type(record), type(record).__name__.lower())


def record_label(record: BaseModel) -> str:
    """How errors name a record: "woocommerce order 4711"."""
    source = getattr(record, "source", "?")
    ident = getattr(record, "number", None) or getattr(record, "id", None) or getattr(record, "sku", None)
    return f"{source} {record_kind(record)} {ident}" if ident else f"{source} {record_kind(record)}"


# --- reading source payloads ------------------------------------------------------------------



class Reader:
    """Typed, path-aware access to one JSON object of a source payload.

    Every accessor either returns a value of the promised type or raises `NormaliseError` naming
    the record and the field path, so normalisers never leak KeyError or TypeError. Numbers that
    arrive as JSON numbers (Exact, Business Central) are read through their shortest repr, which
    is the text that was sent; no arithmetic is ever done on a float.
    """

    __slots__ = ("data", "kind", "path", "record_id", "source")

    def __init__(self, data: object, source: str, kind: str, record_id: str | None = None, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise NormaliseError(source, kind, record_id, path or "(record)", "expected a JSON object")
        self.data: Mapping[str, Any] = data
        self.source = source
        self.kind = kind
        self.record_id = record_id
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, reason: str) -> NormaliseError:
        return NormaliseError(self.source, self.kind, self.record_id, self.where(key), reason)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A string (ints are accepted as their digits); blank counts as absent."""
        value = self.data.get(key)
        if isinstance(value, bool):
            raise self.fail(key, "expected text, got a boolean")
        if isinstance(value, int):
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"expected text, got {_json_type(value)}")
        value = value.strip() if value is not None else None
        if not value:
            if required:
                raise self.fail(key, "is missing")
            return None
        return value

    def ident(self, key: str, *, required: bool = True) -> str | None:
        """An id: string or integer, kept as text."""
        return self.text(key, required=required)

    def number(self, key: str, *, default: Decimal | None = None) -> Decimal | None:
        """An exact Decimal from a decimal string, int or JSON number; absent or blank gives `default`."""
        value = self.data.get(key)
        if value is None or value == "":
            return default
        try:
            return number_from(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def boolean(self, key: str, *, default: bool | None = None) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if value in ("true", "yes", "1", 1):
            return True
        if value in ("false", "no", "0", 0, ""):
            return False
        raise self.fail(key, f"expected true or false, got {_json_type(value)}")

    def timestamp(self, key: str) -> datetime | None:
        """A UTC datetime from ISO 8601 (no offset means UTC). System-specific encodings (Exact's
        `/Date(ms)/`) are the connector's to turn into ISO text first: they are read one way there."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        try:
            return timestamp_from(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def date(self, key: str) -> date | None:
        """A calendar date from "YYYY-MM-DD", or the date part of a timestamp as written: a local midnight
        with its offset ("2026-03-14T00:00:00+01:00") is 14 March, not the 13th in UTC."""
        value = self.data.get(key)
        if value is None or value == "" or value == "0001-01-01":
            return None
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise self.fail(key, "expected a date (YYYY-MM-DD)") from None
        if not isinstance(value, str):
            raise self.fail(key, f"expected a date, got {_json_type(value)}")
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError:
            raise self.fail(key, "expected a date or an ISO 8601 timestamp") from None

    def obj(self, key: str) -> Reader | None:
        value = self.data.get(key)
        if value is None or value == [] or value == "":
            return None  # PHP serialises an empty object as []
        return Reader(value, self.source, self.kind, self.record_id, self.where(key))

    def objects(self, key: str) -> list[Reader]:
        """A list of objects; OData's {"results": [...]} wrapper is unwrapped."""
        value = self.data.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("results"), list):
            value = value["results"]
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_json_type(value)}")
        return [
            Reader(item, self.source, self.kind, self.record_id, f"{self.where(key)}[{i}]")
            for i, item in enumerate(value)
        ]

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_json_type(value)}")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise self.fail(f"{key}[{i}]", f"expected text, got {_json_type(item)}")
            out.append(str(item))
        return out


def number_from(value: object) -> Decimal:
    """An exact Decimal from payload text or a JSON number (a float is read through its repr)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        value = repr(value)
    return to_decimal(value)


def timestamp_from(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected a timestamp, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("expected an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# --- amounts ----------------------------------------------------------------------------------

UNIT_PRICE_PLACES = 4
"""Derived unit prices are rounded half-up to this many decimals; line totals stay exact."""


def per_unit(total: Decimal | None, quantity: Decimal) -> Decimal | None:
    """`total / quantity`, rounded half-up to `UNIT_PRICE_PLACES`; None when it cannot be derived."""
    if total is None or not quantity:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return plain((total / quantity).quantize(Decimal(1).scaleb(-UNIT_PRICE_PLACES), ROUND_HALF_UP))


def rate_of(tax: Decimal | None, base: Decimal | None) -> Decimal | None:
    """The tax rate in percent that `tax` is of `base`, rounded half-up to 2 decimals."""
    if tax is None or not base:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        rate = (tax * 100 / base).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return plain(rate)


def plain(value: Decimal) -> Decimal:
    """`value` without trailing fractional zeros and never in exponent form: 21.00 -> 21, 20.50 -> 20.5."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


# --- discounts as lines of their own ------------------------------------------------------------


def separate_discounts(order: Order, *, from_lines: bool = True) -> Order:
    """The order as a bookkeeper books it with its discounts on lines of their own.

    With `from_lines`, the discounts a source spread over the lines (WooCommerce's coupons: line
    `subtotal` vs `total`) move out of them: every line is at its price before the discount
    (`net_unit_price_*` = `unit_price_*`, totals + `discount_excl` / `discount_tax`), and each VAT rate
    the discounted lines carry gets one discount (`applied_to_lines = False`, `tax_rate`) with their
    discount excl. tax, its tax and the coupon codes. The order's totals excl., tax and incl. are
    unchanged to the cent: the amounts are moved, never recomputed.

    Order-level discounts (`applied_to_lines = False`, e.g. Squarespace's) stay; they get the order's
    VAT rate when all its lines have one (and their amount excl. tax from the amount incl. tax at that
    rate when the source gave only that)."""
    lines = list(order.lines)
    per_rate: dict[Decimal | None, list[Decimal]] = {}
    if from_lines:
        lines = []
        for line in order.lines:
            if not line.discount_excl and not line.discount_tax:
                lines.append(line)
                continue
            amounts = per_rate.setdefault(line.tax_rate, [Decimal(0), Decimal(0)])
            amounts[0] += line.discount_excl
            amounts[1] += line.discount_tax
            excl = None if line.total_excl is None else line.total_excl + line.discount_excl
            tax = None if line.tax_total is None else line.tax_total + line.discount_tax
            incl = None if line.total_incl is None else line.total_incl + line.discount_excl + line.discount_tax
            lines.append(line.model_copy(update={
                "net_unit_price_excl": line.unit_price_excl, "net_unit_price_incl": line.unit_price_incl,
                "discount_excl": Decimal(0), "discount_tax": Decimal(0),
                "total_excl": excl, "tax_total": tax, "total_incl": incl,
            }))  # fmt: skip
    coupons = [d for d in order.discounts if d.applied_to_lines]
    codes = ", ".join(dict.fromkeys(c for d in coupons if (c := d.code or d.description))) or None
    moved = [
        Discount(
            code=codes, description=codes or "discount", amount_excl=excl, tax_total=tax, amount_incl=excl + tax,
            applied_to_lines=False, tax_rate=rate,
        )
        for rate, (excl, tax) in sorted(per_rate.items(), key=lambda item: (item[0] is None, item[0] or 0))
        if excl or tax
    ]
    rates = {line.tax_rate for line in order.lines if line.total_excl or line.discount_excl}
    only_rate = next(iter(rates)) if len(rates) == 1 else None
    kept = [d if d.applied_to_lines else _with_rate(d, only_rate) for d in order.discounts]
    if per_rate:  # the coupons spread over the lines are now the moved discounts
        discounts = moved + [d for d in kept if not d.applied_to_lines]
        return order.model_copy(update={"lines": lines, "discounts": discounts})
    return order.model_copy(update={"discounts": kept})


def _with_rate(discount: Discount, rate: Decimal | None) -> Discount:
    """An order-level discount with the order's only VAT rate (and its amount excl. tax from incl.)."""
    if discount.tax_rate is not None or rate is None:
        return discount
    update: dict[str, Any] = {"tax_rate": rate}
    if discount.amount_excl is None and discount.amount_incl is not None:
        with localcontext() as ctx:
            ctx.prec = 60
            exponent = discount.amount_incl.as_tuple().exponent
            places = Decimal(1).scaleb(min(exponent if isinstance(exponent, int) else -2, -2))
            excl = (discount.amount_incl * 100 / (100 + rate)).quantize(places, ROUND_HALF_UP)
        update |= {"amount_excl": excl, "tax_total": discount.amount_incl - excl}
    return discount.model_copy(update=update)
