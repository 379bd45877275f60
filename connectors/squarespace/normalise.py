"""Squarespace Commerce API order JSON (GET /1.0/commerce/orders/{id}) into Koppel's canonical model.

Squarespace quirks handled here:
- Money is `{"value": "12.50", "currency": "EUR"}` with the value as a string.
- `priceTaxInterpretation` says whether prices include tax (INCLUSIVE, a European shop's) or not
  (EXCLUSIVE); tax is only given as the order's `taxTotal`, never per line or per rate. The VAT rate
  of each amount (product lines, shipping, discounts) is the site's rate as the system's `tax_rates`
  table says (by SKU, then the shipping country, then `default`: the rates the site charges); without
  an entry, the one rate the order's totals imply (`taxTotal` of `grandTotal`: a European VAT rate,
  `VAT_RATES`, that gives that tax within the amounts' rounding). Each amount is split at its rate,
  rounded to the cent per amount; the cents the rounding leaves against `taxTotal` go to the largest
  amount, so the lines add up to what the customer paid and the VAT Squarespace charged, to the cent.
  Rates that cannot give `taxTotal` within that rounding (half a cent per amount) are a `NormaliseError`
  naming the setting; an order whose amounts have no rate (mixed rates, no table) keeps its amounts as
  given, unsplit (a mapping that needs net amounts then fails naming the field).
- `discountLines` are order-level (not in `unitPricePaid`): a discount of goods at one rate has that
  rate; over several rates it is split in proportion to the goods at each rate (one discount per rate).
- `fulfillmentStatus` PENDING, FULFILLED, CANCELED is the status `pending`, `fulfilled`, `cancelled`
  (Koppel's spelling), the code itself `custom_fields.status_code` (`order_statuses` may name either).
- `orderNumber` is what the customer sees; `id` is the API id. Empty arrays may arrive as null.
- There is no company field on an address: Squarespace customers are persons.
- The order holds no payment method: the connector reads the payment's `provider` (SQUARESPACE, STRIPE,
  PAYPAL, SQUARE) and card type from the Transactions API into `koppel_payment`; the provider in lower
  case is `payment_method` (what the payment tables are keyed on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from gateway.model import (
    Address,
    Customer,
    CustomFields,
    Discount,
    NormaliseError,
    Order,
    OrderLine,
    Person,
    Reader,
    ShippingLine,
    per_unit,
    plain,
)

SOURCE = "squarespace"
ZERO = Decimal(0)
CENT = Decimal("0.01")
VAT_RATES = tuple(
    Decimal(rate)
    for rate in ("0", "2.1", "2.5", "2.6", "3", "3.8", "4", "5", "5.5", "6", "7", "7.7", "8", "8.1", "9", "10", "12",
                 "13", "13.5", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "25.5", "27")
)  # fmt: skip
"""The VAT rates of the EU, the UK, Norway and Switzerland: the one rate an order's totals imply is one of them."""

STATUS_NAMES = {"canceled": "cancelled"}
"""`fulfillmentStatus` in lower case is the status, Koppel's spelling where it has one (a booked order cancelled
since is then noticed by the orders flow); Squarespace's own code is `custom_fields.status_code`."""

__all__ = ["normalise_order"]


def normalise_order(payload: Mapping[str, Any], *, tax_rates: Mapping[str, Decimal] | None = None) -> Order:
    """A Squarespace order as an `Order`; `tax_rates`: VAT rates in percent by SKU, country or "default"."""
    doc = Reader(payload, SOURCE, "order")
    order_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "order", order_id)
    inclusive = (doc.text("priceTaxInterpretation") or "EXCLUSIVE").upper() == "INCLUSIVE"
    currency = _currency(doc)
    email = doc.text("customerEmail")
    billing = _address(doc.obj("billingAddress"), email)
    shipping = _address(doc.obj("shippingAddress"), None)
    where = shipping or billing
    country = where.country if where is not None else None
    grand = _money(doc, "grandTotal")
    tax = _money(doc, "taxTotal")
    items = doc.objects("lineItems")
    goods = [_Amount(_line_total(item) or ZERO, item.text("sku")) for item in items]
    ships = [(item.text("method"), _Amount(_money(item, "amount") or ZERO)) for item in doc.objects("shippingLines")]
    if not ships and (shipping_total := _money(doc, "shippingTotal")):
        ships.append((None, _Amount(shipping_total)))
    offs = [(item, _money(item, "amount") or ZERO) for item in doc.objects("discountLines")]
    _rate_goods_and_shipping(goods, [a for _, a in ships], offs, tax_rates or {}, country, grand, tax)
    discounts: list[tuple[Reader, _Amount]] = []
    for item, amount in offs:
        discounts += [(item, part) for part in _discount_parts(amount, goods)]
    amounts = goods + [a for _, a in ships] + [a for _, a in discounts]
    _split(amounts, inclusive, tax, doc, negative=len(goods) + len(ships))
    lines = [_line(item, amount, inclusive) for item, amount in zip(items, goods, strict=True)]
    shipping_lines = [
        ShippingLine(
            method_id=method, method_title=method or "Shipping", tax_rate=amount.rate, **amount.fields(inclusive)
        )
        for method, amount in ships
    ]
    discount_records = [
        Discount(
            code=item.text("promoCode"),
            description=item.text("description") or item.text("name"),
            applied_to_lines=False,
            tax_rate=amount.rate,
            **{
                k.replace("total_", "amount_") if k != "tax_total" else k: v
                for k, v in amount.fields(inclusive).items()
            },
        )
        for item, amount in discounts
    ]
    person = Person(
        first_name=billing.first_name if billing else None,
        last_name=billing.last_name if billing else None,
        email=email,
        phone=billing.phone if billing else None,
    )
    customer = Customer(
        source=SOURCE,
        id=doc.ident("customerId", required=False),
        kind="person",
        contact=person,
        email=email,
        phone=person.phone,
        billing_address=billing,
        shipping_address=shipping,
        currency=currency,
    )
    notes = [n.text("content") or "" for n in doc.objects("internalNotes") if n.text("content")]
    custom: CustomFields = {}
    for i, item in enumerate(doc.objects("formSubmission")):
        label = item.text("label") or f"form_{i}"
        value = item.text("value")
        if value is not None:
            custom[label] = value
    fulfillment = doc.text("fulfillmentStatus")
    if fulfillment:
        custom["status_code"] = fulfillment.upper()
    payment = doc.obj("koppel_payment")  # the connector's, from the Transactions API
    provider = payment.text("provider") if payment else None
    card = payment.text("card") if payment else None
    return Order(
        source=SOURCE,
        id=order_id or "",
        number=doc.text("orderNumber") or order_id or "",
        status=STATUS_NAMES.get(fulfillment.lower(), fulfillment.lower()) if fulfillment else None,
        created_at=doc.timestamp("createdOn"),
        modified_at=doc.timestamp("modifiedOn"),
        paid_at=doc.timestamp("createdOn"),
        currency=currency,
        prices_include_tax=inclusive,
        payment_method=provider.lower() if provider else None,
        payment_method_title=" ".join(p for p in (provider.title() if provider else None, card) if p) or None,
        customer=customer,
        billing_address=billing,
        shipping_address=shipping or billing,
        lines=lines,
        shipping_lines=shipping_lines,
        discounts=discount_records,
        shipping_method=shipping_lines[0].method_id if shipping_lines else None,
        shipping_method_title=shipping_lines[0].method_title if shipping_lines else None,
        total_excl=grand - tax if grand is not None and tax is not None else None,
        tax_total=tax,
        total_incl=grand,
        notes=notes,
        custom_fields=custom,
    )


@dataclass
class _Amount:
    """One amount of the order as Squarespace gives it (`given`: incl. or excl. tax as the order says),
    its VAT rate and, once split, its parts."""

    given: Decimal
    sku: str | None = None
    rate: Decimal | None = None
    excl: Decimal | None = None
    tax: Decimal | None = None
    incl: Decimal | None = None

    def fields(self, inclusive: bool) -> dict[str, Decimal]:
        if self.tax is None:
            return {"total_incl": self.given} if inclusive else {"total_excl": self.given}
        assert self.excl is not None and self.incl is not None
        return {"total_excl": self.excl, "tax_total": self.tax, "total_incl": self.incl}


def _line_total(item: Reader) -> Decimal | None:
    """What the customer paid for the line (`unitPricePaid` times the quantity); None without a price."""
    quantity = item.number("quantity", default=ZERO) or ZERO
    unit = _money(item, "unitPricePaid")
    return unit * quantity if unit is not None else None


def _rate_goods_and_shipping(
    goods: list[_Amount], ships: list[_Amount], offs: list[tuple[Reader, Decimal]],
    table: Mapping[str, Decimal], country: str | None, grand: Decimal | None, tax: Decimal | None,
) -> None:  # fmt: skip
    """Each product and shipping amount's VAT rate: the table's (SKU, country, default), else the order's one."""
    for amount in goods + ships:
        keys = ([amount.sku] if amount.sku else []) + ([country] if country else []) + ["default"]
        amount.rate = next((plain(Decimal(table[k])) for k in keys if k in table), None)
    if all(a.rate is not None for a in goods + ships):
        return
    implied = _implied_rate(goods + ships, [_Amount(a) for _, a in offs], grand, tax)
    for amount in goods + ships:
        if amount.rate is None:
            amount.rate = implied


def _implied_rate(
    amounts: list[_Amount], offs: list[_Amount], grand: Decimal | None, tax: Decimal | None
) -> Decimal | None:
    """The one VAT rate (`VAT_RATES`) at which the order's amounts give its `taxTotal` within their rounding."""
    if grand is None or tax is None or grand - tax <= 0:
        return None
    if not tax:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = 60
        exact = tax * 100 / (grand - tax)
        tolerance = CENT * max(1, len(amounts) + len(offs)) / 2
        nearest = min(VAT_RATES, key=lambda rate: abs(rate - exact))
        if abs(grand * nearest / (100 + nearest) - tax) <= tolerance:
            return plain(nearest)
    return None


def _discount_parts(amount: Decimal, goods: list[_Amount]) -> list[_Amount]:
    """An order-level discount at the goods' rate; over several rates, split in proportion to them."""
    rates = {g.rate for g in goods if g.given}
    if None in rates or len(rates) <= 1:
        return [_Amount(amount, rate=next(iter(rates)) if len(rates) == 1 else None)]
    per_rate: dict[Decimal, Decimal] = {}
    for good in goods:
        if good.given and good.rate is not None:
            per_rate[good.rate] = per_rate.get(good.rate, ZERO) + good.given
    base = sum(per_rate.values(), ZERO)
    parts, left = [], amount
    for i, (rate, subtotal) in enumerate(sorted(per_rate.items(), reverse=True)):
        share = left if i == len(per_rate) - 1 else (amount * subtotal / base).quantize(CENT, ROUND_HALF_UP)
        left -= share
        parts.append(_Amount(share, rate=rate))
    return [p for p in parts if p.given]


def _split(amounts: list[_Amount], inclusive: bool, tax: Decimal | None, doc: Reader, *, negative: int) -> None:
    """Every amount with a rate split into excl., tax and incl. (cents per amount); the rounding's cents
    against `taxTotal` on the largest amount. Amounts from index `negative` on are subtracted (discounts)."""
    if not amounts or any(a.rate is None for a in amounts):
        return
    with localcontext() as ctx:
        ctx.prec = 60
        for a in amounts:
            assert a.rate is not None
            if inclusive:
                a.incl = a.given
                a.excl = (a.given * 100 / (100 + a.rate)).quantize(CENT, ROUND_HALF_UP)
                a.tax = a.incl - a.excl
            else:
                a.excl = a.given
                a.tax = (a.given * a.rate / 100).quantize(CENT, ROUND_HALF_UP)
                a.incl = a.excl + a.tax
    if tax is None:
        return
    computed = sum((a.tax or ZERO for a in amounts[:negative]), ZERO) - sum(
        (a.tax or ZERO for a in amounts[negative:]), ZERO
    )
    off = tax - computed
    if not off:
        return
    if abs(off) > CENT * len(amounts) / 2 or not any(a.rate for a in amounts[:negative]):
        rates = ", ".join(sorted({f"{a.rate}%" for a in amounts}))
        raise NormaliseError(SOURCE, "order", doc.record_id, "taxTotal",
                             f"Squarespace charged {tax} tax; the VAT rates ({rates}) give {computed}: set the "
                             "system's tax_rates to the rates the site charges")  # fmt: skip
    largest = max((a for a in amounts[:negative] if a.rate), key=lambda a: abs(a.given))
    assert largest.tax is not None and largest.excl is not None and largest.incl is not None
    largest.tax += off
    if inclusive:
        largest.excl -= off
    else:
        largest.incl += off


def _money(doc: Reader, key: str) -> Decimal | None:
    money = doc.obj(key)
    return money.number("value") if money else None


def _currency(doc: Reader) -> str | None:
    for key in ("grandTotal", "subtotal"):
        money = doc.obj(key)
        if money and (currency := money.text("currency")):
            return currency.upper()
    return None


def _address(doc: Reader | None, email: str | None) -> Address | None:
    if doc is None:
        return None
    address = Address(
        first_name=doc.text("firstName"),
        last_name=doc.text("lastName"),
        street=doc.text("address1"),
        street2=doc.text("address2"),
        postcode=doc.text("postalCode"),
        city=doc.text("city"),
        state=doc.text("state"),
        country=(c.upper() if (c := doc.text("countryCode")) else None),
        email=email,
        phone=doc.text("phone"),
    )
    return address if address.model_dump(exclude_none=True, exclude={"name", "email"}) else None


def _line(item: Reader, amount: _Amount, inclusive: bool) -> OrderLine:
    quantity = item.number("quantity", default=ZERO) or ZERO
    unit = _money(item, "unitPricePaid")
    options = {}
    for option in item.objects("variantOptions"):
        name = option.text("optionName")
        if name:
            options[name] = option.text("value") or ""
    custom: CustomFields = {}
    for i, field in enumerate(item.objects("customizations")):
        if (value := field.text("value")) is not None:
            custom[field.text("label") or f"customization_{i}"] = value
    kind = item.text("lineItemType")
    if kind:
        custom["line_item_type"] = kind
    totals = amount.fields(inclusive) if unit is not None else {}
    incl_unit = unit if inclusive else per_unit(totals.get("total_incl"), quantity)
    excl_unit = per_unit(totals.get("total_excl"), quantity) if inclusive else unit
    return OrderLine(
        id=item.ident("id", required=False),
        sku=item.text("sku"),
        name=item.text("productName"),
        product_id=item.ident("productId", required=False),
        variant_id=item.ident("variantId", required=False),
        quantity=quantity,
        unit_price_incl=incl_unit,
        unit_price_excl=excl_unit,
        net_unit_price_incl=incl_unit,
        net_unit_price_excl=excl_unit,
        total_excl=totals.get("total_excl"),
        tax_total=totals.get("tax_total"),
        total_incl=totals.get("total_incl"),
        tax_rate=amount.rate if amount.tax is not None else None,
        options=options,
        custom_fields=custom,
    )
