"""Squarespace Commerce API order JSON (GET /1.0/commerce/orders/{id}) into Koppel's canonical model.

Squarespace quirks handled here:
- Money is `{"value": "12.50", "currency": "EUR"}` with the value as a string.
- `priceTaxInterpretation` says whether prices include tax (INCLUSIVE) or not (EXCLUSIVE); tax is
  only given as the order's `taxTotal`, never per line, so line tax rates stay unknown (None).
- `orderNumber` is what the customer sees; `id` is the API id. Empty arrays may arrive as null.
- There is no company field on an address: Squarespace customers are persons.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict

from gateway.model import (
    Address,
    Customer,
    CustomFields,
    Discount,
    Order,
    OrderLine,
    Person,
    Reader,
    ShippingLine,
)

SOURCE = "squarespace"
ZERO = Decimal(0)

__all__ = ["normalise_order"]


def normalise_order(payload: Mapping[str, Any]) -> Order:
    """A Squarespace order as an `Order`."""
    doc = Reader(payload, SOURCE, "order")
    order_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "order", order_id)
    inclusive = (doc.text("priceTaxInterpretation") or "EXCLUSIVE").upper() == "INCLUSIVE"
    currency = _currency(doc)
    email = doc.text("customerEmail")
    billing = _address(doc.obj("billingAddress"), email)
    shipping = _address(doc.obj("shippingAddress"), None)
    lines = [_line(item, inclusive) for item in doc.objects("lineItems")]
    shipping_lines = [
        ShippingLine(
            method_id=item.text("method"), method_title=item.text("method"), **_split(_money(item, "amount"), inclusive)
        )
        for item in doc.objects("shippingLines")
    ]
    if not shipping_lines and (shipping_total := _money(doc, "shippingTotal")):
        shipping_lines.append(ShippingLine(method_title="Shipping", **_split(shipping_total, inclusive)))
    discounts = [
        Discount(
            code=item.text("promoCode"),
            description=item.text("description") or item.text("name"),
            applied_to_lines=False,
            **({"amount_incl": amount} if inclusive else {"amount_excl": amount}),
        )
        for item in doc.objects("discountLines")
        for amount in [_money(item, "amount")]
    ]
    grand = _money(doc, "grandTotal")
    tax = _money(doc, "taxTotal")
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
    return Order(
        source=SOURCE,
        id=order_id or "",
        number=doc.text("orderNumber") or order_id or "",
        status=fulfillment.lower() if fulfillment else None,
        created_at=doc.timestamp("createdOn"),
        modified_at=doc.timestamp("modifiedOn"),
        currency=currency,
        prices_include_tax=inclusive,
        customer=customer,
        billing_address=billing,
        shipping_address=shipping or billing,
        lines=lines,
        shipping_lines=shipping_lines,
        discounts=discounts,
        shipping_method=shipping_lines[0].method_id if shipping_lines else None,
        shipping_method_title=shipping_lines[0].method_title if shipping_lines else None,
        total_excl=grand - tax if grand is not None and tax is not None else None,
        tax_total=tax,
        total_incl=grand,
        notes=notes,
        custom_fields=custom,
    )


class _Total(TypedDict, total=False):
    total_incl: Decimal
    total_excl: Decimal


def _split(amount: Decimal | None, inclusive: bool) -> _Total:
    amount = amount or ZERO
    return {"total_incl": amount} if inclusive else {"total_excl": amount}


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


def _line(item: Reader, inclusive: bool) -> OrderLine:
    quantity = item.number("quantity", default=ZERO) or ZERO
    unit = _money(item, "unitPricePaid")
    total = unit * quantity if unit is not None else None
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
    return OrderLine(
        id=item.ident("id", required=False),
        sku=item.text("sku"),
        name=item.text("productName"),
        product_id=item.ident("productId", required=False),
        variant_id=item.ident("variantId", required=False),
        quantity=quantity,
        unit_price_incl=unit if inclusive else None,
        unit_price_excl=None if inclusive else unit,
        net_unit_price_incl=unit if inclusive else None,
        net_unit_price_excl=None if inclusive else unit,
        total_incl=total if inclusive else None,
        total_excl=None if inclusive else total,
        options=options,
        custom_fields=custom,
    )
