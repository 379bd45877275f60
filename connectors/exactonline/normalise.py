"""Exact Online REST JSON (SalesOrders, SalesInvoices, Accounts, Items, StockPositions) into the canonical model.

Exact Online quirks handled here:
- Responses are wrapped: `{"d": {...}}` for one entity, `{"d": {"results": [...]}}` for lists and
  for an expanded collection (`SalesOrderLines`); both wrappers are accepted.
- Amounts are JSON numbers (read through their shortest repr, the text Exact sent). Dates are read
  one way, `odata.parse_date`: `/Date(ms)/` holds Amsterdam wall-clock milliseconds (so an `OrderDate`
  is local midnight, and stays that day); the client has already parsed them into datetimes, which a
  record carries as ISO text with the offset. Both shapes are accepted here and read alike.
- `Discount` on a line and `VATPercentage` are fractions (0.21), Koppel's rates are percent (21).
- Account `Code` is right-aligned in 18 characters: the spaces are stripped here.
- A SalesOrder names its customer only by GUID and name (`OrderedBy`, `OrderedByName`); pass the
  Account (and its contacts) to read the customer fully.
- Exact has no company/person flag on an Account. An Account is read as a person when it has no
  VAT or Chamber of Commerce number and its name is its main contact's full name (or it has no
  contact); otherwise as a company with that contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from connectors.exactonline.odata import iso_dates, parse_dates
from gateway.model import (
    Address,
    Attribute,
    Customer,
    CustomFields,
    Order,
    OrderLine,
    Person,
    Product,
    Reader,
    ShippingLine,
    StockLevel,
    per_unit,
    plain,
)

SOURCE = "exactonline"
ZERO = Decimal(0)
HUNDRED = Decimal(100)
ORDER_STATUS = {"12": "open", "20": "partial", "21": "complete", "45": "cancelled"}
INVOICE_STATUS = {"10": "draft", "20": "open", "50": "complete"}
CREDIT_NOTES = ("8021", "8024")

ITEM_CLASSES = tuple(f"Class_{n:02d}" for n in range(1, 11))
FREE_FIELDS = (
    *(f"FreeTextField_{n:02d}" for n in range(1, 11)),
    *(f"FreeNumberField_{n:02d}" for n in range(1, 9)),
    *(f"FreeBoolField_{n:02d}" for n in range(1, 6)),
    *(f"FreeDateField_{n:02d}" for n in range(1, 6)),
)
ITEM_ATTRIBUTE_FIELDS = (*ITEM_CLASSES, *FREE_FIELDS)
"""An Exact item's properties that can become attributes (logistics/Items and its Sync API both carry them)."""

__all__ = [
    "FREE_FIELDS",
    "ITEM_ATTRIBUTE_FIELDS",
    "ITEM_CLASSES",
    "item_attributes",
    "normalise_account",
    "normalise_item",
    "normalise_sales_invoice",
    "normalise_sales_order",
    "normalise_stock_position",
]


def _unwrap(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = payload.get("d") if isinstance(payload, Mapping) else None
    record = inner if isinstance(inner, Mapping) else payload
    if not isinstance(record, Mapping):
        return record  # not a record: the Reader says so
    return iso_dates(parse_dates(dict(record)))  # type: ignore[no-any-return]




def normalise_sales_order(
    payload: Mapping[str, Any],
    *,
    account: Mapping[str, Any] | None = None,
    contacts: Iterable[Mapping[str, Any]] | None = None,
    shipping_items: Iterable[str] = (),
    delivery: Mapping[str, Any] | None = None,
) -> Order:
    """An Exact SalesOrder (with `SalesOrderLines` expanded) as an `Order`. Lines whose item is one of
    `shipping_items` (the service items shipping costs are booked on) are its shipping lines; an order
    that names a shipping method and has none gets one without an amount. `delivery` (a crm/Addresses
    record, or the `DeliverTo` account) is its shipping address; without it the customer's address."""
    payload = _unwrap(payload)
    doc = Reader(payload, SOURCE, "order")
    order_id = doc.ident("OrderID")
    doc = Reader(payload, SOURCE, "order", order_id)
    shipping_codes = {code.casefold() for code in shipping_items}
    lines: list[OrderLine] = []
    shipping_lines: list[ShippingLine] = []
    method = doc.text("ShippingMethodCode") or doc.text("ShippingMethod")
    method_title = doc.text("ShippingMethodDescription")
    for raw in doc.objects("SalesOrderLines"):
        line = _line(raw)
        if line.sku and line.sku.casefold() in shipping_codes:
            shipping_lines.append(ShippingLine(
                method_id=method, method_title=method_title or line.name, total_excl=line.total_excl,
                tax_total=line.tax_total, total_incl=line.total_incl, tax_rate=line.tax_rate,
            ))  # fmt: skip
        else:
            lines.append(line)
    if method and not shipping_lines:
        shipping_lines.append(ShippingLine(method_id=method, method_title=method_title))
    if account is not None:
        customer = normalise_account(account, contacts)
    else:
        customer = Customer(
            source=SOURCE,
            id=doc.ident("OrderedBy", required=False),
            kind="company",
            company_name=doc.text("OrderedByName"),
        )
    status = doc.text("Status")
    total_excl = doc.number("AmountFCExclVat") or doc.number("AmountFC")
    description = doc.text("Description")
    remarks = doc.text("Remarks")
    fields = (("your_ref", "YourRef"), ("description", "Description"))
    custom: CustomFields = {k: v for k, key in fields if (v := doc.text(key))}
    if status:
        custom["status_code"] = status
    return Order(
        source=SOURCE,
        id=order_id or "",
        number=doc.text("OrderNumber") or order_id or "",
        reference=doc.text("YourRef"),
        status=ORDER_STATUS.get(status or "", status),
        created_at=doc.timestamp("Created"),
        modified_at=doc.timestamp("Modified"),
        order_date=doc.date("OrderDate"),
        currency=doc.text("Currency"),
        customer=customer,
        billing_address=customer.billing_address,
        shipping_address=_delivery_address(delivery, customer) if delivery else customer.shipping_address,
        lines=lines,
        shipping_lines=shipping_lines,
        payment_method=doc.text("PaymentCondition"),
        payment_method_title=doc.text("PaymentConditionDescription"),
        shipping_method=method,
        shipping_method_title=method_title,
        total_excl=total_excl,
        notes=[n for n in (remarks,) if n] if remarks != description else [],
        custom_fields=custom,
    )


def _delivery_address(record: Mapping[str, Any], customer: Customer) -> Address:
    """An order's delivery address: a crm/Addresses record (addressed to the customer's contact) or
    another account's main address (addressed to that account)."""
    doc = Reader(_unwrap(record), SOURCE, "address", None, "DeliveryAddress")
    contact = customer.billing_address or Address()
    other = doc.text("Name")
    return Address(
        company=other or customer.company_name,
        first_name=None if other else contact.first_name,
        last_name=None if other else contact.last_name,
        street=doc.text("AddressLine1"),
        street2=doc.text("AddressLine2"),
        postcode=doc.text("Postcode"),
        city=doc.text("City"),
        state=doc.text("State"),
        country=(c.upper() if (c := doc.text("Country")) else None),
        phone=doc.text("Phone") or (None if other else contact.phone),
    )


def normalise_sales_invoice(payload: Mapping[str, Any]) -> Order:
    """An Exact SalesInvoice (REST, or a row of the Sync API's SalesInvoices) as an `Order`: what the
    status write-back needs. `Status` 10 draft, 20 open, 50 processed (Koppel's "complete"); a credit
    note (Type 8021, 8024) is "credit_note". `custom_fields.status_code` is "invoice:<Status>", apart
    from the sales orders' codes (20 is an open invoice, but a partly delivered order)."""
    payload = _unwrap(payload)
    doc = Reader(payload, SOURCE, "order")
    invoice_id = doc.ident("InvoiceID")
    doc = Reader(payload, SOURCE, "order", invoice_id)
    status = doc.text("Status")
    kind = doc.text("Type")
    custom: CustomFields = {k: v for k, key in (("your_ref", "YourRef"), ("type", "Type")) if (v := doc.text(key))}
    if status:
        custom["status_code"] = f"invoice:{status}"
    return Order(
        source=SOURCE,
        id=invoice_id or "",
        number=doc.text("InvoiceNumber") or invoice_id or "",
        reference=doc.text("YourRef"),
        status="credit_note" if kind in CREDIT_NOTES else INVOICE_STATUS.get(status or "", status),
        modified_at=doc.timestamp("Modified"),
        order_date=doc.date("InvoiceDate"),
        currency=doc.text("Currency"),
        customer=Customer(
            source=SOURCE, id=doc.ident("OrderedBy", required=False), kind="company",
            company_name=doc.text("OrderedByName"),
        ),
        lines=[_line(line) for line in doc.objects("SalesInvoiceLines")],
        total_excl=doc.number("AmountFCExclVat"),
        total_incl=doc.number("AmountFC"),
        custom_fields=custom,
    )


def normalise_account(payload: Mapping[str, Any], contacts: Iterable[Mapping[str, Any]] | None = None) -> Customer:
    """An Exact Account (and optionally its Contacts; the main one is used) as a `Customer`."""
    payload = _unwrap(payload)
    doc = Reader(payload, SOURCE, "customer")
    account_id = doc.ident("ID")
    doc = Reader(payload, SOURCE, "customer", account_id)
    name = doc.text("Name")
    contact = _main_contact(contacts or [], account_id)
    full = " ".join(p for p in (contact.first_name, contact.last_name) if p) if contact else ""
    vat = doc.text("VATNumber")
    coc = doc.text("ChamberOfCommerce")
    person = not vat and not coc and (contact is None or (bool(full) and full.casefold() == (name or "").casefold()))
    if person and contact is None:
        first, _, last = (name or "").partition(" ")
        contact = Person(
            first_name=first or None if last else None,
            last_name=(last or first) or None,
            email=doc.text("Email"),
            phone=doc.text("Phone"),
        )
    address = Address(
        company=None if person else name,
        first_name=contact.first_name if contact else None,
        last_name=contact.last_name if contact else None,
        street=doc.text("AddressLine1"),
        street2=doc.text("AddressLine2"),
        postcode=doc.text("Postcode"),
        city=doc.text("City"),
        state=doc.text("State"),
        country=(c.upper() if (c := doc.text("Country")) else None),
        email=doc.text("Email"),
        phone=doc.text("Phone"),
    )
    return Customer(
        source=SOURCE,
        id=account_id,
        number=doc.text("Code"),
        kind="person" if person else "company",
        company_name=None if person else name,
        contact=contact or Person(email=doc.text("Email"), phone=doc.text("Phone")),
        email=doc.text("Email"),
        phone=doc.text("Phone"),
        billing_address=address,
        shipping_address=address,
        vat_number=vat,
        chamber_of_commerce=coc,
        classification=doc.text("Classification1Description") or doc.text("Status"),
        language=doc.text("Language"),
        created_at=doc.timestamp("Created"),
        modified_at=doc.timestamp("Modified"),
    )


def normalise_item(payload: Mapping[str, Any], *, attribute_names: Mapping[str, str] | None = None) -> Product:
    """An Exact Item as a `Product`: stock items are simple products, others virtual. Exact has no
    variants (an item is one sellable article), so none are made. The item group is the category (its
    code, lower-cased, the slug); the picture's URL the one image; item classes and named free fields the
    attributes (`item_attributes`)."""
    payload = _unwrap(payload)
    doc = Reader(payload, SOURCE, "product")
    item_id = doc.ident("ID")
    doc = Reader(payload, SOURCE, "product", item_id)
    stock_item = bool(doc.boolean("IsStockItem", default=True))
    group_code = doc.text("ItemGroupCode")
    group = doc.text("ItemGroupDescription") or group_code
    picture = doc.text("PictureUrl")
    return Product(
        source=SOURCE,
        id=item_id,
        sku=doc.text("Code"),
        name=doc.text("Description"),
        type="simple" if stock_item else "virtual",
        price_excl=doc.number("StandardSalesPrice") if doc.has("StandardSalesPrice") else doc.number("SalesPrice"),
        tax_class=doc.text("SalesVatCode"),
        ean=doc.text("Barcode"),
        description=doc.text("Notes"),
        short_description=doc.text("ExtraDescription"),
        categories=[group] if group else [],
        category_slugs=[group_code.lower()] if group_code else [],
        images=[picture] if picture else [],
        attributes=item_attributes(doc, attribute_names or {}),
        published=bool(doc.boolean("IsSalesItem", default=True)),
        unit=doc.text("Unit"),
        stock_quantity=doc.number("Stock"),
        manage_stock=stock_item,
        modified_at=doc.timestamp("Modified"),
    )


def item_attributes(doc: Reader, names: Mapping[str, str]) -> list[Attribute]:
    """The item's classes and named free fields as attributes, in Exact's field order. `names` maps a field
    (`Class_03`, `FreeTextField_01`) to the attribute's name: a class not named is "Class 3", one named ""
    is left out; a free field travels only when named. Values as text: numbers as Exact sent them, yes/no
    fields "true"/"false" (an unset one, null, is left out), dates YYYY-MM-DD. Fields given one name make one
    attribute with their values."""
    found: dict[str, list[str]] = {}
    for field in ITEM_ATTRIBUTE_FIELDS:
        default = f"Class {int(field[-2:])}" if field in ITEM_CLASSES else ""
        name = names.get(field, default).strip()
        value = _attribute_value(doc, field) if name else None
        if name and value is not None:
            found.setdefault(name, []).append(value)
    return [Attribute(name=name, values=values, variation=False) for name, values in found.items()]


def _attribute_value(doc: Reader, field: str) -> str | None:
    if field.startswith("FreeNumberField"):
        number = doc.number(field)
        return format(plain(number), "f") if number is not None else None
    if field.startswith("FreeBoolField"):
        flag = doc.boolean(field)
        return None if flag is None else "true" if flag else "false"
    if field.startswith("FreeDateField"):
        day = doc.date(field)
        return day.isoformat() if day is not None else None
    return doc.text(field)


def normalise_stock_position(payload: Mapping[str, Any]) -> StockLevel:
    """An Exact StockPosition as a `StockLevel`: available = FreeStock when given, else on hand
    minus reserved (and minus planned-out when Exact reports it)."""
    payload = _unwrap(payload)
    doc = Reader(payload, SOURCE, "stock")
    ident = doc.ident("ID", required=False) or doc.ident("ItemId", required=False)
    doc = Reader(payload, SOURCE, "stock", ident)
    on_hand = doc.number("CurrentStock", default=ZERO) or doc.number("InStock", default=ZERO) or ZERO
    reserved = doc.number("ReservedStock", default=ZERO) or doc.number("PlanningOut", default=ZERO) or ZERO
    free = doc.number("FreeStock")
    return StockLevel(
        source=SOURCE,
        id=ident,
        sku=doc.text("ItemCode", required=True) or "",
        on_hand=on_hand,
        reserved=reserved,
        available=free if free is not None else on_hand - reserved,
        location=doc.text("WarehouseCode"),
        modified_at=doc.timestamp("Modified"),
    )


def _line(line: Reader) -> OrderLine:
    quantity = line.number("Quantity", default=ZERO) or ZERO
    unit = line.number("UnitPrice")
    net = line.number("NetPrice")
    amount = line.number("AmountFC")
    vat = line.number("VATAmountFC")
    if vat is None:  # not `or`: a zero-rated line's 0 is its VAT, not a missing amount
        vat = line.number("VATAmount")
    fraction = line.number("VATPercentage")
    if fraction is not None and not ZERO <= fraction <= 1:
        raise line.fail("VATPercentage", "expected a fraction between 0 and 1 (0.21 is 21 %)")
    discount = line.number("Discount", default=ZERO) or ZERO
    gross = unit * quantity if unit is not None else None
    return OrderLine(
        id=line.ident("ID", required=False),
        sku=line.text("ItemCode"),
        name=line.text("Description") or line.text("ItemDescription"),
        product_id=line.ident("Item", required=False),
        quantity=quantity,
        unit_price_excl=unit,
        net_unit_price_excl=net if net is not None else per_unit(amount, quantity),
        discount_excl=gross - amount
        if gross is not None and amount is not None
        else gross * discount
        if gross
        else ZERO,
        total_excl=amount,
        tax_total=vat,
        total_incl=amount + vat if amount is not None and vat is not None else None,
        tax_rate=plain(fraction * HUNDRED) if fraction is not None else None,
        tax_class=line.text("VATCode"),
    )


def _main_contact(contacts: Iterable[Mapping[str, Any]], account_id: str | None) -> Person | None:
    chosen: Reader | None = None
    for i, raw in enumerate(contacts):
        contact = Reader(_unwrap(raw), SOURCE, "customer", account_id, f"contacts[{i}]")
        if chosen is None or contact.boolean("IsMainContact", default=False):
            chosen = contact
    if chosen is None:
        return None
    return Person(
        first_name=chosen.text("FirstName"),
        last_name=" ".join(p for p in (chosen.text("MiddleName"), chosen.text("LastName")) if p) or None,
        email=chosen.text("Email"),
        phone=chosen.text("Phone") or chosen.text("BusinessPhone"),
    )
