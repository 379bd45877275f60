"""WooCommerce REST v3 JSON into Koppel's canonical model.

WooCommerce quirks handled here:
- Money is a string with the shop's decimals; line `price` is total / quantity as a *float*
  (12.356666666666667) and is never read: unit prices are derived from the line totals.
- `subtotal` is a line before coupons, `total` after; coupons are spread over the lines, so the
  order's `coupon_lines` are informational (`Discount.applied_to_lines`); a line's discount is
  `subtotal - total` excl. tax and `subtotal_tax - total_tax` its tax (`gateway.model.separate_discounts`
  books them on lines of their own).
- Dates without offset are shop-local; the `*_gmt` twins are UTC and are preferred.
- PHP serialises an empty object as `[]` (e.g. `image` on a line without one).
- A variable product's own payload lists variation *ids*; the variations themselves come from
  `/products/{id}/variations` and are passed in (or embedded as objects under `variations`).
- Orders Koppel itself created from another system's order carry meta `_koppel_origin`
  ("<system id>:<order id>"), read into `Order.origin`, so they are never booked back there.
- Product prices are excl. or incl. tax depending on a shop setting that the payload does not
  carry: pass `prices_include_tax` from the integration's settings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from gateway.model import (
    Address,
    Attribute,
    Customer,
    CustomFields,
    Discount,
    Fee,
    Order,
    OrderLine,
    Person,
    Product,
    ProductType,
    Reader,
    ShippingLine,
    StockLevel,
    Variant,
    per_unit,
    rate_of,
)

SOURCE = "woocommerce"
ZERO = Decimal(0)
_VAT_META_KEYS = (
    "_billing_vat", "billing_vat", "_billing_vat_number", "billing_vat_number", "_vat_number", "vat_number",
    "yweu_billing_vat", "_billing_vat_id", "billing_vat_id", "btw_nummer",
)  # fmt: skip
"""Where VAT plug-ins keep a customer's VAT number (EU VAT Number, Germanized's VAT ID, YITH EU VAT,
WooCommerce EU VAT Assistant …), the first one filled."""
_EAN_META_KEYS = ("_ean", "ean", "_alg_ean", "_wpm_gtin_code", "_global_unique_id", "gtin", "_gtin")
ORIGIN_META = "_koppel_origin"
"""Meta key of an order Koppel made from another system's order: "<system id>:<order id>" (`Order.origin`)."""
SOURCE_ORDER_META = "_koppel_source_order"
"""Meta key of an order Koppel made: "<source system id>:<source order number>" (its lookup after a crash)."""
_COC_META_KEYS = ("_billing_coc", "billing_coc", "kvk_nummer", "_kvk")

__all__ = ["normalise_customer", "normalise_order", "normalise_product", "normalise_stock"]


def normalise_order(payload: Mapping[str, Any]) -> Order:
    """A WooCommerce order (webhook body or GET /orders/{id}) as an `Order`."""
    doc = Reader(payload, SOURCE, "order")
    order_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "order", order_id)
    billing = _address(doc.obj("billing"), with_email=True)
    shipping = _address(doc.obj("shipping"), with_email=False)
    rates = _tax_rates(doc)
    lines = [_line(item, rates) for item in doc.objects("line_items")]
    shipping_lines = [
        ShippingLine(
            method_id=item.text("method_id"),
            method_title=item.text("method_title"),
            total_excl=(excl := item.number("total", default=ZERO) or ZERO),
            tax_total=(tax := item.number("total_tax", default=ZERO) or ZERO),
            total_incl=excl + tax,
            tax_rate=_rate(item, rates, excl, tax),
        )
        for item in doc.objects("shipping_lines")
    ]
    fees = [
        Fee(
            name=item.text("name"),
            total_excl=(excl := item.number("total", default=ZERO) or ZERO),
            tax_total=(tax := item.number("total_tax", default=ZERO) or ZERO),
            total_incl=excl + tax,
            tax_rate=_rate(item, rates, excl, tax),
        )
        for item in doc.objects("fee_lines")
    ]
    discounts = [
        Discount(
            code=item.text("code"),
            description=item.text("code"),
            amount_excl=(excl := item.number("discount", default=ZERO) or ZERO),
            tax_total=(tax := item.number("discount_tax", default=ZERO) or ZERO),
            amount_incl=excl + tax,
            applied_to_lines=True,
        )
        for item in doc.objects("coupon_lines")
    ]
    total = doc.number("total")
    total_tax = doc.number("total_tax")
    meta = _meta(doc)
    customer_id = doc.ident("customer_id", required=False)
    customer = _customer_from_addresses(
        customer_id if customer_id not in (None, "0") else None,
        billing,
        shipping,
        email=billing.email if billing else None,
        vat_number=_first_meta(meta, _VAT_META_KEYS),
        chamber_of_commerce=_first_meta(meta, _COC_META_KEYS),
    )
    note = doc.text("customer_note")
    return Order(
        source=SOURCE,
        id=order_id or "",
        number=doc.text("number") or order_id or "",
        status=doc.text("status"),
        created_at=doc.timestamp("date_created_gmt") or doc.timestamp("date_created"),
        modified_at=doc.timestamp("date_modified_gmt") or doc.timestamp("date_modified"),
        paid_at=doc.timestamp("date_paid_gmt") or doc.timestamp("date_paid"),
        order_date=doc.date("date_created"),
        currency=doc.text("currency"),
        prices_include_tax=bool(doc.boolean("prices_include_tax", default=False)),
        customer=customer,
        billing_address=billing,
        shipping_address=shipping or billing,
        lines=lines,
        shipping_lines=shipping_lines,
        fees=fees,
        discounts=discounts,
        payment_method=doc.text("payment_method"),
        payment_method_title=doc.text("payment_method_title"),
        shipping_method=shipping_lines[0].method_id if shipping_lines else None,
        shipping_method_title=shipping_lines[0].method_title if shipping_lines else None,
        total_excl=total - total_tax if total is not None and total_tax is not None else None,
        tax_total=total_tax,
        total_incl=total,
        notes=[note] if note else [],
        origin=_first_meta(meta, (ORIGIN_META,)),
        custom_fields=_custom_fields(meta),
    )


def normalise_customer(payload: Mapping[str, Any]) -> Customer:
    """A WooCommerce customer (GET /customers/{id} or customer.* webhook) as a `Customer`."""
    doc = Reader(payload, SOURCE, "customer")
    customer_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "customer", customer_id)
    billing = _address(doc.obj("billing"), with_email=True)
    shipping = _address(doc.obj("shipping"), with_email=False)
    meta = _meta(doc)
    email = doc.text("email") or (billing.email if billing else None)
    customer = _customer_from_addresses(
        customer_id,
        billing,
        shipping,
        email=email,
        vat_number=_first_meta(meta, _VAT_META_KEYS),
        chamber_of_commerce=_first_meta(meta, _COC_META_KEYS),
        first_name=doc.text("first_name"),
        last_name=doc.text("last_name"),
    )
    # No `number`: WooCommerce customers have none, and the login name (often the person's name) is personal
    # data that would reach the activity log and the worker's log lines as the customer's number.
    return customer.model_copy(
        update={
            "created_at": doc.timestamp("date_created_gmt") or doc.timestamp("date_created"),
            "modified_at": doc.timestamp("date_modified_gmt") or doc.timestamp("date_modified"),
            "classification": doc.text("role"),
            "custom_fields": _custom_fields(meta),
        }
    )


def normalise_product(
    payload: Mapping[str, Any],
    variations: Iterable[Mapping[str, Any]] | None = None,
    *,
    prices_include_tax: bool = False,
) -> Product:
    """A WooCommerce product as a `Product`; for a variable product pass its variations (objects
    from /products/{id}/variations) or embed them as objects under `variations`.

    A variation on its own (type "variation", as `product.updated` sends it) becomes a product of
    type "variation" with itself as its one variant; its parent, when embedded under `parent` (the
    source reads it), gives the name, descriptions, categories, features and images a variation does
    not carry. Without it the parent's name is the variation's title without its options."""
    doc = Reader(payload, SOURCE, "product")
    product_id = doc.ident("id")
    doc = Reader(payload, SOURCE, "product", product_id)
    wc_type = doc.text("type") or "simple"
    if wc_type == "variation":
        return _standalone_variation(doc, payload, prices_include_tax)
    kind: ProductType
    if wc_type == "variable":
        kind = "variable"
    elif doc.boolean("virtual", default=False):
        kind = "virtual"
    else:
        kind = "simple"  # grouped and external products travel as simple ones
    attributes, features = _attributes(doc)
    embedded = [obj for obj in _raw_list(doc, "variations") if isinstance(obj, Mapping)]
    variant_payloads = list(variations) if variations is not None else embedded
    variants = [_variant(v, i, prices_include_tax) for i, v in enumerate(variant_payloads)]
    price = doc.number("regular_price") or doc.number("price")
    meta = _meta(doc)
    status = doc.text("status") or "publish"
    names, slugs = _categories(doc)
    return Product(
        source=SOURCE,
        id=product_id,
        sku=doc.text("sku"),
        name=doc.text("name"),
        type=kind,
        parent_id=_nonzero(doc.ident("parent_id", required=False)),
        variants=variants,
        attributes=attributes,
        features=features,
        categories=names,
        category_slugs=slugs,
        images=_image_urls(doc),
        price_excl=None if prices_include_tax else price,
        price_incl=price if prices_include_tax else None,
        tax_class=doc.text("tax_class"),
        ean=doc.text("global_unique_id") or _first_meta(meta, _EAN_META_KEYS),
        description=doc.text("description"),
        short_description=doc.text("short_description"),
        published=status == "publish",
        stock_quantity=doc.number("stock_quantity"),
        manage_stock=_manage_stock(doc),
        modified_at=doc.timestamp("date_modified_gmt") or doc.timestamp("date_modified"),
        custom_fields=_custom_fields(meta),
    )


def _standalone_variation(doc: Reader, payload: Mapping[str, Any], prices_include_tax: bool) -> Product:
    variant = _variant(payload, 0, prices_include_tax, alone=True)
    raw_parent = payload.get("parent")
    parent = Reader(raw_parent, SOURCE, "product", None, "parent") if isinstance(raw_parent, Mapping) else None
    options = ", ".join(variant.options.values())
    title = doc.text("name") or ""
    if parent is not None:
        name = parent.text("name")
    elif options and title.endswith(f" - {options}"):
        name = title[: -len(f" - {options}")]  # WooCommerce titles a variation "{parent} - {options}"
    else:
        name = title or None
    attributes, features = _attributes(parent) if parent is not None else ([], {})
    names, slugs = _categories(parent) if parent is not None else _categories(doc)
    images = [variant.image] if variant.image else []
    images += [src for src in (_image_urls(parent) if parent is not None else []) if src not in images]
    published = variant.published and (parent is None or (parent.text("status") or "publish") == "publish")
    return Product(
        source=SOURCE,
        id=variant.id,
        sku=variant.sku,
        name=name,
        type="variation",
        parent_id=_nonzero(doc.ident("parent_id", required=False)),
        variants=[variant],
        attributes=attributes,
        features=features,
        categories=names,
        category_slugs=slugs,
        images=images,
        price_excl=variant.price_excl,
        price_incl=variant.price_incl,
        tax_class=doc.text("tax_class") or (parent.text("tax_class") if parent is not None else None),
        ean=variant.ean,
        description=doc.text("description") or (parent.text("description") if parent is not None else None),
        short_description=parent.text("short_description") if parent is not None else None,
        published=published,
        stock_quantity=variant.stock_quantity,
        manage_stock=variant.manage_stock,
        modified_at=doc.timestamp("date_modified_gmt") or doc.timestamp("date_modified"),
        custom_fields=variant.custom_fields,
    )


def _attributes(doc: Reader) -> tuple[list[Attribute], dict[str, str]]:
    """The product's attributes, and its features: the attributes that build no variations."""
    attributes: list[Attribute] = []
    features: dict[str, str] = {}
    for item in doc.objects("attributes"):
        name = item.text("name", required=True) or ""
        if item.has("option"):  # a variation's own attributes: [{id, name, option}]
            continue
        values = item.texts("options")
        variation = bool(item.boolean("variation", default=False))
        attributes.append(Attribute(name=name, values=values, variation=variation))
        if not variation and values:
            features[name] = ", ".join(values)
    return attributes, features


def _categories(doc: Reader) -> tuple[list[str], list[str]]:
    """(names, slugs) of the product's categories; a category without a slug gets one from its name."""
    names: list[str] = []
    slugs: list[str] = []
    for category in doc.objects("categories"):
        name = category.text("name") or ""
        slug = category.text("slug") or _slug(name) or (category.ident("id", required=False) or "")
        if name or slug:
            names.append(name or slug)
            slugs.append(slug)
    return names, slugs


def _slug(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")


def _image_urls(doc: Reader) -> list[str]:
    return [src for img in doc.objects("images") if (src := img.text("src"))]


def normalise_stock(payload: Mapping[str, Any]) -> StockLevel:
    """The stock of a WooCommerce product or variation. WooCommerce keeps no reservations."""
    doc = Reader(payload, SOURCE, "stock")
    product_id = doc.ident("id", required=False)
    doc = Reader(payload, SOURCE, "stock", product_id)
    quantity = doc.number("stock_quantity", default=ZERO) or ZERO
    return StockLevel(
        source=SOURCE,
        id=product_id,
        sku=doc.text("sku", required=True) or "",
        on_hand=quantity,
        reserved=ZERO,
        available=quantity,
        managed=bool(_manage_stock(doc)),
        modified_at=doc.timestamp("date_modified_gmt") or doc.timestamp("date_modified"),
    )


# --- parts ---------------------------------------------------------------------------------------


def _address(doc: Reader | None, *, with_email: bool) -> Address | None:
    if doc is None:
        return None
    address = Address(
        company=doc.text("company"),
        first_name=doc.text("first_name"),
        last_name=doc.text("last_name"),
        street=doc.text("address_1"),
        street2=doc.text("address_2"),
        postcode=doc.text("postcode"),
        city=doc.text("city"),
        state=doc.text("state"),
        country=(c.upper() if (c := doc.text("country")) else None),
        email=doc.text("email") if with_email else None,
        phone=doc.text("phone"),
    )
    return address if address.model_dump(exclude_none=True, exclude={"name"}) else None


def _customer_from_addresses(
    customer_id: str | None,
    billing: Address | None,
    shipping: Address | None,
    *,
    email: str | None,
    vat_number: str | None,
    chamber_of_commerce: str | None,
    first_name: str | None = None,
    last_name: str | None = None,
) -> Customer:
    """SPEC: a record with a company name is a company debtor with the person as its contact."""
    main = billing or shipping or Address()
    company = main.company
    return Customer(
        source=SOURCE,
        id=customer_id,
        kind="company" if company else "person",
        company_name=company,
        contact=Person(
            first_name=main.first_name or first_name,
            last_name=main.last_name or last_name,
            email=email,
            phone=main.phone,
        ),
        email=email,
        phone=main.phone,
        billing_address=billing,
        shipping_address=shipping,
        vat_number=vat_number,
        chamber_of_commerce=chamber_of_commerce,
    )


def _tax_rates(doc: Reader) -> dict[str, Decimal]:
    """rate id -> percent, from the order's tax_lines."""
    rates: dict[str, Decimal] = {}
    for item in doc.objects("tax_lines"):
        rate_id = item.ident("rate_id", required=False)
        percent = item.number("rate_percent")
        if rate_id is not None and percent is not None:
            rates[rate_id] = percent
    return rates


def _rate(item: Reader, rates: Mapping[str, Decimal], base: Decimal, tax: Decimal) -> Decimal | None:
    """The line's rate: the tax_lines rate of its (first non-zero) tax, else of a tax that is zero after
    the coupon but not before it (a line a coupon made free), else of any tax it names; else tax / base."""
    known = [(t, rid) for t in item.objects("taxes") if (rid := t.ident("id", required=False)) in rates]
    for key in ("total", "subtotal"):
        for tax_item, rate_id in known:
            if tax_item.number(key, default=ZERO):
                return rates[str(rate_id)]
    if known:
        return rates[str(known[0][1])]
    if not tax:
        return ZERO if base else None
    return rate_of(tax, base)


def _line(item: Reader, rates: Mapping[str, Decimal]) -> OrderLine:
    quantity = item.number("quantity", default=ZERO) or ZERO
    total = item.number("total", default=ZERO) or ZERO
    total_tax = item.number("total_tax", default=ZERO) or ZERO
    subtotal = item.number("subtotal", default=total) or ZERO
    subtotal_tax = item.number("subtotal_tax", default=total_tax) or ZERO
    options = {}
    for meta in item.objects("meta_data"):
        key = meta.text("key") or ""
        if key.startswith("_"):
            continue
        label = meta.text("display_key") or key
        value = meta.raw("display_value") if meta.has("display_value") else meta.raw("value")
        if label and isinstance(value, str | int) and not isinstance(value, bool):
            options[label] = str(value)
    return OrderLine(
        id=item.ident("id", required=False),
        sku=item.text("sku"),
        name=item.text("name"),
        product_id=_nonzero(item.ident("product_id", required=False)),
        variant_id=_nonzero(item.ident("variation_id", required=False)),
        quantity=quantity,
        unit_price_excl=per_unit(subtotal, quantity),
        unit_price_incl=per_unit(subtotal + subtotal_tax, quantity),
        net_unit_price_excl=per_unit(total, quantity),
        net_unit_price_incl=per_unit(total + total_tax, quantity),
        discount_excl=subtotal - total,
        discount_tax=subtotal_tax - total_tax,
        total_excl=total,
        tax_total=total_tax,
        total_incl=total + total_tax,
        tax_rate=_rate(item, rates, total or subtotal, total_tax if total else subtotal_tax),
        tax_class=item.text("tax_class"),
        options=options,
    )


def _variant(payload: Mapping[str, Any], index: int, prices_include_tax: bool, *, alone: bool = False) -> Variant:
    doc = Reader(payload, SOURCE, "product", None, "" if alone else f"variations[{index}]")
    price = doc.number("regular_price") or doc.number("price")
    image = doc.obj("image")
    src = image.text("src") if image is not None else next(iter(_image_urls(doc)), None)
    meta = _meta(doc)
    return Variant(
        id=doc.ident("id", required=False),
        sku=doc.text("sku"),
        options={a.text("name") or "": a.text("option") or "" for a in doc.objects("attributes")},
        price_excl=None if prices_include_tax else price,
        price_incl=price if prices_include_tax else None,
        ean=doc.text("global_unique_id") or _first_meta(meta, _EAN_META_KEYS),
        stock_quantity=doc.number("stock_quantity"),
        manage_stock=_manage_stock(doc),
        image=src,
        published=(doc.text("status") or "publish") == "publish",
        virtual=bool(doc.boolean("virtual", default=False)),
        custom_fields=_custom_fields(meta),
    )


def _manage_stock(doc: Reader) -> bool | None:
    value = doc.raw("manage_stock")
    if value == "parent":  # a variation that follows its parent's stock setting
        return None
    return doc.boolean("manage_stock")


def _meta(doc: Reader) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in doc.objects("meta_data"):
        key = item.text("key")
        if key:
            out[key] = item.raw("value")
    return out


def _first_meta(meta: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _custom_fields(meta: Mapping[str, Any]) -> CustomFields:
    """Public meta_data (keys not starting with "_") with scalar values."""
    return {
        k: v
        for k, v in meta.items()
        if not k.startswith("_") and (isinstance(v, str | bool) or (isinstance(v, int) and not isinstance(v, bool)))
    }


def _raw_list(doc: Reader, key: str) -> list[Any]:
    value = doc.raw(key)
    return value if isinstance(value, list) else []


def _nonzero(value: str | None) -> str | None:
    return None if value in (None, "0") else value
