"""Business Central API v2.0 JSON (salesOrders, customers, items) into Koppel's canonical model.

Business Central quirks handled here:
- Amounts are JSON numbers; they are read through their shortest repr (the text BC sent).
- `pricesIncludeTax` on an order (`priceIncludesTax` on an item) decides what `unitPrice` means.
- Order lines come from `$expand=salesOrderLines` (embedded) or are passed in. `lineType` "Item"
  lines are products (`lineObjectNumber` = item number = SKU); "Comment" lines become notes; other
  types (G/L account, resource, charge) become fees.
- A salesOrder names its customer only by number and name; pass the customers entity to learn
  whether it is a company or a person. Without it the order's customer is read as a company
  named `customerName` with `shipToContact` as its contact.
- Dates: `orderDate` is a calendar date; `lastModifiedDateTime` is UTC with "Z".
- `externalDocumentNumber` is the number of the order in the system it came from (Koppel books a shop's
  or a till's order with it): the order's `reference`, which tells an order Koppel booked into BC from
  another system from BC's own, so it never travels back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from gateway.model import (
    Address,
    Customer,
    Fee,
    Order,
    OrderLine,
    Person,
    Product,
    Reader,
    StockLevel,
    per_unit,
)

SOURCE = "businesscentral"
ZERO = Decimal(0)

__all__ = ["normalise_customer", "normalise_item", "normalise_item_stock", "normalise_sales_order"]


def normalise_sales_order(
    payload: Mapping[str, Any],
    lines: Iterable[Mapping[str, Any]] | None = None,
    *,
    customer: Mapping[str, Any] | None = None,
) -> Order:
    """A BC salesOrder (with `salesOrderLines` embedded or passed as `lines`) as an `Order`."""
    doc = Reader(payload, SOURCE, "order")
    order_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "order", order_id)
    incl = bool(doc.boolean("pricesIncludeTax", default=False))
    if lines is not None:
        line_docs = [Reader(x, SOURCE, "order", order_id, f"salesOrderLines[{i}]") for i, x in enumerate(lines)]
    else:
        line_docs = doc.objects("salesOrderLines")
    order_lines: list[OrderLine] = []
    fees: list[Fee] = []
    notes: list[str] = []
    for line in line_docs:
        kind = (line.text("lineType") or "Item").lower()
        if kind == "item":
            order_lines.append(_line(line, incl))
        elif kind == "comment":
            if text := line.text("description"):
                notes.append(text)
        else:
            fees.append(
                Fee(
                    name=line.text("description") or line.text("lineObjectNumber"),
                    total_excl=line.number("amountExcludingTax"),
                    tax_total=line.number("totalTaxAmount"),
                    total_incl=line.number("amountIncludingTax"),
                    tax_rate=line.number("taxPercent"),
                )
            )
    sell_to = _address(doc, "sellTo", name=doc.text("customerName"))
    bill_to = _address(doc, "billTo", name=doc.text("billToName")) or sell_to
    ship_to = _address(doc, "shipTo", name=doc.text("shipToName")) or sell_to
    if customer is not None:
        buyer = normalise_customer(customer)
    else:
        first, last = _split_name(doc.text("shipToContact"))
        name = doc.text("customerName")
        buyer = Customer(
            source=SOURCE,
            id=doc.ident("customerId", required=False),
            number=doc.text("customerNumber"),
            kind="company" if name else "person",
            company_name=name,
            contact=Person(first_name=first, last_name=last, email=doc.text("email"), phone=doc.text("phoneNumber")),
            email=doc.text("email"),
            phone=doc.text("phoneNumber"),
            billing_address=bill_to,
            shipping_address=ship_to,
            currency=doc.text("currencyCode"),
        )
    contact = buyer.contact if buyer.kind == "person" else None
    person = " ".join(p for p in (contact.first_name, contact.last_name) if p) if contact is not None else ""
    if person:  # BC writes a person's name where an address has a company's
        sell_to, bill_to, ship_to = (_personal(a, person) for a in (sell_to, bill_to, ship_to))
    return Order(
        source=SOURCE,
        id=order_id or "",
        number=doc.text("number") or order_id or "",
        reference=doc.text("externalDocumentNumber"),
        status=(s.lower() if (s := doc.text("status")) else None),
        modified_at=doc.timestamp("lastModifiedDateTime"),
        order_date=doc.date("orderDate"),
        currency=doc.text("currencyCode"),
        prices_include_tax=incl,
        customer=buyer,
        billing_address=bill_to,
        shipping_address=ship_to,
        lines=order_lines,
        fees=fees,
        total_excl=doc.number("totalAmountExcludingTax"),
        tax_total=doc.number("totalTaxAmount"),
        total_incl=doc.number("totalAmountIncludingTax"),
        notes=notes,
        custom_fields={k: v for k in ("externalDocumentNumber",) if (v := doc.text(k))},
    )


def normalise_customer(payload: Mapping[str, Any]) -> Customer:
    """A BC customer as a `Customer`; `type` "Company" or "Person" decides the kind."""
    doc = Reader(payload, SOURCE, "customer")
    customer_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "customer", customer_id)
    name = doc.text("displayName")
    company = (doc.text("type") or "Company").lower() != "person"
    first, last = (None, None) if company else _split_name(name)
    address = _address(doc, "", name=name)
    return Customer(
        source=SOURCE,
        id=customer_id,
        number=doc.text("number"),
        kind="company" if company else "person",
        company_name=name if company else None,
        contact=Person(first_name=first, last_name=last, email=doc.text("email"), phone=doc.text("phoneNumber")),
        email=doc.text("email"),
        phone=doc.text("phoneNumber"),
        billing_address=address,
        shipping_address=address,
        vat_number=doc.text("taxRegistrationNumber"),
        currency=doc.text("currencyCode"),
        modified_at=doc.timestamp("lastModifiedDateTime"),
    )


def normalise_item(payload: Mapping[str, Any]) -> Product:
    """A BC item as a `Product`. Inventory items are simple products; Service and Non-Inventory
    items are virtual."""
    doc = Reader(payload, SOURCE, "product")
    item_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "product", item_id)
    incl = bool(doc.boolean("priceIncludesTax", default=False))
    price = doc.number("unitPrice")
    inventory = (doc.text("type") or "Inventory").lower() == "inventory"
    category = doc.text("itemCategoryCode")
    return Product(
        source=SOURCE,
        id=item_id,
        sku=doc.text("number"),
        name=doc.text("displayName"),
        type="simple" if inventory else "virtual",
        price_excl=None if incl else price,
        price_incl=price if incl else None,
        tax_class=doc.text("taxGroupCode"),
        ean=doc.text("gtin"),
        short_description=doc.text("displayName2"),
        categories=[category] if category else [],
        published=not doc.boolean("blocked", default=False),
        unit=doc.text("baseUnitOfMeasureCode"),
        stock_quantity=doc.number("inventory"),
        manage_stock=inventory,
        modified_at=doc.timestamp("lastModifiedDateTime"),
    )


def normalise_item_stock(payload: Mapping[str, Any]) -> StockLevel:
    """The `inventory` of a BC item as a `StockLevel`: on hand and available, reserved 0 (API v2.0 reports no
    reservations, so on hand minus reserved is the inventory; see connector.py)."""
    product = normalise_item(payload)
    quantity = product.stock_quantity or ZERO
    if not product.sku:
        raise Reader(payload, SOURCE, "stock", product.id).fail("number", "is missing")
    return StockLevel(
        source=SOURCE,
        id=product.id,
        sku=product.sku,
        on_hand=quantity,
        available=quantity,
        managed=bool(product.manage_stock),
        modified_at=product.modified_at,
    )


def _line(line: Reader, incl: bool) -> OrderLine:
    quantity = line.number("quantity", default=ZERO) or ZERO
    unit = line.number("unitPrice")
    excl = line.number("amountExcludingTax")
    tax = line.number("totalTaxAmount")
    total_incl = line.number("amountIncludingTax")
    discount = line.number("discountAmount", default=ZERO) or ZERO
    return OrderLine(
        id=line.ident("id", required=False),
        sku=line.text("lineObjectNumber"),
        name=line.text("description"),
        product_id=line.ident("itemId", required=False),
        variant_id=_guid_or_none(line.ident("itemVariantId", required=False)),
        quantity=quantity,
        unit_price_excl=None if incl else unit,
        unit_price_incl=unit if incl else None,
        net_unit_price_excl=per_unit(excl, quantity),
        net_unit_price_incl=per_unit(total_incl, quantity),
        discount_excl=ZERO if incl else discount,
        total_excl=excl,
        tax_total=tax,
        total_incl=total_incl,
        tax_rate=line.number("taxPercent"),
        tax_class=line.text("taxCode"),
    )


def _address(doc: Reader, prefix: str, *, name: str | None) -> Address | None:
    def key(suffix: str) -> str:
        return f"{prefix}{suffix}" if prefix else suffix[0].lower() + suffix[1:]

    address = Address(
        company=name,
        street=doc.text(key("AddressLine1")),
        street2=doc.text(key("AddressLine2")),
        postcode=doc.text(key("PostCode")) or doc.text(key("PostalCode")),
        city=doc.text(key("City")),
        state=doc.text(key("State")),
        country=(c.upper() if (c := doc.text(key("Country"))) else None),
    )
    if not address.model_dump(exclude_none=True, exclude={"name", "company"}):
        return None
    return address


def _personal(address: Address | None, person: str) -> Address | None:
    """An address BC names with the customer's (a person's) name: that name as first and last name, no company."""
    if address is None or (address.company or "").strip().casefold() != person.casefold():
        return address
    first, last = _split_name(address.company)
    return address.model_copy(update={"company": None, "first_name": first, "last_name": last})


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """ "Robert Townes" -> ("Robert", "Townes"); a single word is a last name."""
    if not name:
        return None, None
    first, _, last = name.strip().partition(" ")
    return (first, last.strip()) if last.strip() else (None, first)


def _guid_or_none(value: str | None) -> str | None:
    return None if value in (None, "00000000-0000-0000-0000-000000000000") else value
