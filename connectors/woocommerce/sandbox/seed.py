"""Realistic content for the sandbox: a small catalogue and checkout orders from Dutch, Belgian and German
customers (non-ASCII names, companies with VAT numbers, guests and registered customers), with the tax
arithmetic of a shop whose prices include VAT: line taxes per destination country and tax class,
coupons spread over the lines, fees and shipping taxed at the standard rate."""

from __future__ import annotations

import hashlib
import random
import re
import string
import struct
import zlib
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.woocommerce.sandbox.shapes import slugify, variation_name
from connectors.woocommerce.sandbox.store import Row, Store

# country → tax class → (rate id, percent, label)
TAX_RATES: dict[str, dict[str, tuple[int, int, str]]] = {
    "NL": {"": (1, 21, "BTW"), "reduced-rate": (2, 9, "BTW laag")},
    "BE": {"": (3, 21, "BTW"), "reduced-rate": (4, 6, "BTW verlaagd")},
    "DE": {"": (5, 19, "MwSt."), "reduced-rate": (6, 7, "MwSt. erm\u00e4\u00dfigt")},
}
SHIPPING = {  # country → (method title, instance id, cost excl. VAT)
    "NL": ("PostNL Standaard", "1", "4.95"),
    "BE": ("bpost", "2", "6.95"),
    "DE": ("DHL Paket", "3", "5.95"),
}
FREE_SHIPPING_FROM = Decimal("75.00")
PAYMENT = {
    "NL": [("ideal", "iDEAL"), ("paypal", "PayPal")],
    "BE": [("bancontact", "Bancontact"), ("ideal", "iDEAL")],
    "DE": [("paypal", "PayPal"), ("klarna_payments_pay_later", "Klarna Rechnung")],
}
COUPONS = [("welkom10", "percent", Decimal(10)), ("zomer5", "fixed_cart", Decimal(5))]
NOTES = [
    "Graag bezorgen na 17:00 uur.",
    "Bitte beim Nachbarn abgeben \u2013 danke!",
    "Merci\u202f! \U0001f389 Livraison/retrait au magasin SVP.",
]
# (country, first name, last name, company, street, postcode, city, phone, VAT number)
PEOPLE = [
    ("NL", "Zo\u00eb", "van den Berg", "", "Prinsengracht 263", "1016 GV", "Amsterdam", "+31 20 555 0142", ""),
    ("NL", "Ana\u00efs", "Dijkstra", "Bakkerij 't Hoekje B.V.", "Oudegracht 112", "3511 AX", "Utrecht",
     "+31 30 555 0190", "NL812345678B01"),
    ("NL", "Sjoerd", "Brouwer", "", "Grote Markt 3", "9711 LV", "Groningen", "06 12345678", ""),
    ("NL", "No\u00eblle", "IJzerman", "Van Dijk Installatietechniek B.V.", "Industrieweg 14-16", "5262 GJ", "Vught",
     "+31 73 555 0111", "NL823456789B01"),
    ("BE", "Am\u00e9lie", "Peeters", "", "Veldstraat 45", "9000", "Gent", "+32 9 555 01 23", ""),
    ("BE", "Fr\u00e9d\u00e9ric", "Lambert", "Brasserie L'\u00c9cluse SRL", "Quai de la Batte 10", "4000",
     "Li\u00e8ge", "+32 4 555 66 77", "BE0123456789"),
    ("BE", "Maarten", "Janssens", "", "Meir 78 bus 3", "2000", "Antwerpen", "+32 3 555 12 12", ""),
    ("BE", "Chlo\u00e9", "Dubois", "", "Rue Neuve 1/2", "1000", "Bruxelles/Brussel", "+32 2 555 98 76", ""),
    ("DE", "J\u00f6rg", "M\u00fcller", "", "Stra\u00dfe des 17. Juni 135", "10623", "Berlin", "+49 30 5550123", ""),
    ("DE", "K\u00e4the", "Gro\u00df", "M\u00fcller & S\u00f6hne GmbH", "K\u00f6nigsallee 60", "40212",
     "D\u00fcsseldorf", "+49 211 555 0199", "DE123456789"),
    ("DE", "G\u00fcnther", "Wei\u00df", "", "Schlo\u00dfstra\u00dfe 7", "50667", "K\u00f6ln", "+49 221 555 777", ""),
    ("DE", "Lena", "Schr\u00f6der", "B\u00e4ckerei Schr\u00f6der e.K.", "Maximilianstra\u00dfe 2", "80539",
     "M\u00fcnchen", "+49 89 555 4321", "DE987654321"),
]  # fmt: skip
CATALOGUE: list[dict[str, Any]] = [
    {"name": "Koppel-Tasse \u201eBlau\u201c", "sku": "KOP-TASSE-BL", "regular_price": "12.95", "stock": 40},
    {"name": "Onderzetters (4 stuks)", "sku": "KOP-ONDZ-4", "regular_price": "7.50", "stock": 120},
    {"name": "Koffiebonen Espresso 1 kg", "sku": "KOP-KOF-1KG", "regular_price": "24.90",
     "tax_class": "reduced-rate", "stock": 60},
    {"name": "Theedoek Delfts blauw", "sku": "KOP-DOEK-DB", "regular_price": "9.95", "sale_price": "7.95",
     "stock": 75},
    {"name": "Kookboek \u201eStamppot & Co\u201c", "sku": "KOP-BOEK-ST", "regular_price": "29.50",
     "tax_class": "reduced-rate", "stock": 25},
    {"name": "Cadeaubon \u20ac25", "sku": "KOP-BON-25", "regular_price": "25.00", "virtual": True},
    {"name": "T-shirt Koppel", "sku": "KOP-TS", "attribute": ("Maat", ["S", "M", "L", "XL"]),
     "regular_price": "19.95", "prices": {"XL": "21.95"}, "variation_stock": 15},
    {"name": "Emaille mok", "sku": "KOP-MOK", "attribute": ("Kleur", ["Rood", "Groen", "Cr\u00e8me"]),
     "regular_price": "14.50", "stock": 90},
]  # fmt: skip
CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP):.2f}"


def _tax_text(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.0001'), ROUND_HALF_UP):f}".rstrip("0").rstrip(".")
    return text or "0"


def swatch(name: str, size: int = 16) -> bytes:
    """A small PNG of one colour (derived from `name`): a product photo the sandbox can serve."""
    red, green, blue = hashlib.sha256(name.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    pixels = zlib.compress(row * size)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def seed_products(store: Store) -> list[int]:
    """Create the catalogue products whose SKUs do not exist yet; their ids (variations included)."""
    created: list[int] = []
    for spec in CATALOGUE:
        if store.sku_owner(spec["sku"]) is not None:
            continue
        slug = slugify(spec["name"], 0)
        src = store.upload(f"{slug}.png", swatch(slug), "image/png")  # served under wp-content/uploads/
        image = {"id": 500 + len(store.products), "src": src, "name": slug, "alt": spec["name"]}
        fields: dict[str, Any] = {"name": spec["name"], "sku": spec["sku"], "images": [image],
                                  "tax_class": spec.get("tax_class", ""), "virtual": spec.get("virtual", False),
                                  "categories": [{"id": 16, "name": "Koppel", "slug": "koppel"}]}  # fmt: skip
        if "stock" in spec:
            fields |= {"manage_stock": True, "stock_quantity": spec["stock"]}
        if "attribute" not in spec:
            product = store.create_product(fields | {"regular_price": spec["regular_price"],
                                                     "sale_price": spec.get("sale_price", "")})  # fmt: skip
            created.append(product["id"])
            continue
        name, options = spec["attribute"]
        attribute = {"name": name, "options": options, "variation": True, "visible": True}
        parent = store.create_product(fields | {"type": "variable", "attributes": [attribute]})
        created.append(parent["id"])
        for option in options:
            variation: dict[str, Any] = {
                "sku": f"{spec['sku']}-{slugify(option, 0).upper()}",
                "regular_price": spec.get("prices", {}).get(option, spec["regular_price"]),
                "attributes": [{"name": name, "option": option}],
            }
            if "variation_stock" in spec:
                variation |= {"manage_stock": True, "stock_quantity": spec["variation_stock"]}
            created.append(store.create_variation(parent["id"], variation)["id"])
    return created


def _email(first: str, last: str, country: str) -> str:
    local = slugify(f"{first} {last}", 0).replace("-", ".")
    return f"{local}@example.{ {'NL': 'com', 'BE': 'org', 'DE': 'net'}[country] }"


def _person(rng: random.Random) -> tuple[Row, Row, str, str]:
    country, first, last, company, street, postcode, city, phone, vat = rng.choice(PEOPLE)
    billing = {"first_name": first, "last_name": last, "company": company, "address_1": street, "address_2": "",
               "city": city, "state": "", "postcode": postcode, "country": country,
               "email": _email(first, last, country), "phone": phone}  # fmt: skip
    shipping = {k: v for k, v in billing.items() if k != "email"}
    if rng.random() < 0.1:  # a gift, sent to someone else in the same country
        other = rng.choice([p for p in PEOPLE if p[0] == country])
        shipping |= {"first_name": other[1], "last_name": other[2], "company": "", "address_1": other[4],
                     "postcode": other[5], "city": other[6], "phone": ""}  # fmt: skip
    return billing, shipping, country, vat


def _price(row: Row) -> Decimal:
    sale, regular = row["sale_price"], row["regular_price"]
    return Decimal(sale) if sale and Decimal(sale) < Decimal(regular) else Decimal(regular)


def place_order(
    store: Store, rng: random.Random, *, status: str = "processing", checkout_update: bool = True,
    coupon_code: str | None = None,
) -> Row:
    """One checkout order, built from the store's products (seeded first when there are none); with
    `coupon_code` (one of `COUPONS`) that coupon is applied, else a quarter of the orders get one."""
    sellable = [p for p in store.products.values() if p["type"] in ("simple", "variation") and p["status"] == "publish"]
    sellable = [p for p in sellable if p["regular_price"]]
    if not sellable:
        seed_products(store)
        return place_order(store, rng, status=status, checkout_update=checkout_update, coupon_code=coupon_code)
    billing, shipping, country, vat = _person(rng)
    customer_id = 0
    if rng.random() < 0.6:
        customer = store.customer_by_email(billing["email"]) or store.create_customer(
            {"email": billing["email"], "first_name": billing["first_name"], "last_name": billing["last_name"],
             "billing": billing, "shipping": shipping}, paying=True)  # fmt: skip
        customer_id = customer["id"]
    picked = rng.sample(sorted(sellable, key=lambda p: p["id"]), k=min(len(sellable), rng.randint(1, 4)))
    coupon = rng.choice(COUPONS) if rng.random() < 0.25 else None
    if coupon_code is not None:
        coupon = next(c for c in COUPONS if c[0] == coupon_code)
    quantities = [rng.choice([1, 1, 1, 2, 2, 3]) for _ in picked]
    gross = [_price(p) * q for p, q in zip(picked, quantities, strict=True)]
    discounts = [Decimal(0)] * len(picked)
    if coupon is not None and coupon[1] == "percent":
        discounts = [(g * coupon[2] / 100).quantize(CENT, ROUND_HALF_UP) for g in gross]
    elif coupon is not None:
        basis = sum(gross, Decimal(0))
        amount = min(coupon[2], basis)
        discounts = [(amount * g / basis).quantize(CENT, ROUND_HALF_UP) for g in gross]
        discounts[-1] = amount - sum(discounts[:-1], Decimal(0))
    taxes: dict[int, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])  # rate id → [cart, shipping]
    lines: list[Row] = []
    for product, quantity, line_gross, discount in zip(picked, quantities, gross, discounts, strict=True):
        rate_id, percent, _ = TAX_RATES[country][product["tax_class"]]
        factor = Decimal(percent) / (100 + Decimal(percent))
        subtotal_tax, total_tax = line_gross * factor, (line_gross - discount) * factor
        total = (line_gross - discount - total_tax).quantize(CENT, ROUND_HALF_UP)
        taxes[rate_id][0] += total_tax.quantize(CENT, ROUND_HALF_UP)
        parent = store.products.get(product["parent_id"]) if product["type"] == "variation" else None
        image = (product["images"] or (parent or {}).get("images") or [{"id": "", "src": ""}])[0]
        meta = [{"id": store.next_meta_id(), "key": f"pa_{slugify(a['name'], 0)}", "value": slugify(a["option"], 0),
                 "display_key": a["name"], "display_value": a["option"]} for a in product["attributes"]
                if parent is not None]  # fmt: skip
        lines.append({
            "id": store.next_item_id(), "name": variation_name(product, parent) if parent else product["name"],
            "product_id": parent["id"] if parent else product["id"], "variation_id": product["id"] if parent else 0,
            "quantity": quantity, "tax_class": product["tax_class"],
            "subtotal": money(line_gross - subtotal_tax), "subtotal_tax": money(subtotal_tax), "total": money(total),
            "total_tax": money(total_tax), "taxes": [{"id": rate_id, "total": _tax_text(total_tax),
                                                      "subtotal": _tax_text(subtotal_tax)}],
            "meta_data": meta, "sku": product["sku"], "price": float(total) / quantity,
            "image": {"id": image.get("id", ""), "src": image.get("src", "")},
            "parent_name": parent["name"] if parent else None,
        })  # fmt: skip
    standard_id, standard, _ = TAX_RATES[country][""]
    coupon_lines: list[Row] = []
    if coupon is not None:
        coupon_lines.append({
            "id": store.next_item_id(), "code": coupon[0],
            "discount": money(sum((Decimal(li["subtotal"]) - Decimal(li["total"]) for li in lines), Decimal(0))),
            "discount_tax": money(sum((Decimal(li["subtotal_tax"]) - Decimal(li["total_tax"]) for li in lines),
                                      Decimal(0))),
            "meta_data": [], "discount_type": coupon[1], "nominal_amount": float(coupon[2]), "free_shipping": False,
        })  # fmt: skip
    fee_lines: list[Row] = []
    if rng.random() < 0.15:
        fee_tax = Decimal("2.50") * standard / 100
        taxes[standard_id][0] += fee_tax.quantize(CENT, ROUND_HALF_UP)
        fee_lines.append({"id": store.next_item_id(), "name": "Cadeauverpakking", "tax_class": "",
                          "tax_status": "taxable", "amount": "2.50", "total": "2.50", "total_tax": money(fee_tax),
                          "taxes": [{"id": standard_id, "total": _tax_text(fee_tax), "subtotal": ""}],
                          "meta_data": []})  # fmt: skip
    shipping_lines: list[Row] = []
    if not all(p["virtual"] for p in picked):
        title, instance, cost = SHIPPING[country]
        method = "flat_rate"
        if sum(gross) - sum(discounts) >= FREE_SHIPPING_FROM:
            title, method, instance, cost = "Gratis verzending", "free_shipping", "4", "0.00"
        shipping_tax = Decimal(cost) * standard / 100
        taxes[standard_id][1] += shipping_tax.quantize(CENT, ROUND_HALF_UP)
        items = ", ".join(f"{li['name']} &times; {li['quantity']}" for li in lines)
        shipping_lines.append({"id": store.next_item_id(), "method_title": title, "method_id": method,
                               "instance_id": instance, "total": money(Decimal(cost)), "total_tax": money(shipping_tax),
                               "taxes": [{"id": standard_id, "total": _tax_text(shipping_tax), "subtotal": ""}],
                               "meta_data": [{"id": store.next_meta_id(), "key": "Artikelen", "value": items,
                                              "display_key": "Artikelen", "display_value": items}]})  # fmt: skip
    tax_lines = []
    for rate_id, (cart_tax, ship_tax) in sorted(taxes.items()):
        _, percent, label = next(r for r in TAX_RATES[country].values() if r[0] == rate_id)
        code = f"{country}-{re.sub(r'[^A-Z0-9]+', ' ', label.upper()).strip()}-1"
        tax_lines.append({"id": store.next_item_id(), "rate_code": code, "rate_id": rate_id, "label": label,
                          "compound": False, "tax_total": money(cart_tax), "shipping_tax_total": money(ship_tax),
                          "rate_percent": percent, "meta_data": []})  # fmt: skip
    cart_tax = sum((Decimal(li["total_tax"]) for li in lines + fee_lines), Decimal(0))
    shipping_total = sum((Decimal(li["total"]) for li in shipping_lines), Decimal(0))
    shipping_tax_total = sum((Decimal(li["total_tax"]) for li in shipping_lines), Decimal(0))
    total_tax = cart_tax + shipping_tax_total
    total = sum((Decimal(li["total"]) for li in lines + fee_lines), Decimal(0)) + shipping_total + total_tax
    payment, payment_title = rng.choice(PAYMENT[country])
    now = store.clock()
    meta = [{"id": store.next_meta_id(), "key": "_wc_order_attribution_source_type", "value": "typein"}]
    if vat and billing["company"]:
        meta.append({"id": store.next_meta_id(), "key": "_billing_vat_number", "value": vat})
    key = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(13))
    row: Row = {
        "id": store.next_post_id(), "status": status, "currency": store.settings.currency,
        "prices_include_tax": store.settings.prices_include_tax,
        "discount_total": money(sum((Decimal(c["discount"]) for c in coupon_lines), Decimal(0))),
        "discount_tax": money(sum((Decimal(c["discount_tax"]) for c in coupon_lines), Decimal(0))),
        "shipping_total": money(shipping_total), "shipping_tax": money(shipping_tax_total),
        "cart_tax": money(cart_tax), "total": money(total), "total_tax": money(total_tax), "customer_id": customer_id,
        "order_key": f"wc_order_{key}", "billing": billing, "shipping": shipping, "payment_method": payment,
        "payment_method_title": payment_title,
        "transaction_id": f"tr_{rng.randrange(16**10):010x}" if status in ("processing", "completed") else "",
        "customer_ip_address": f"203.0.113.{rng.randint(1, 254)}",
        "customer_user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "created_via": "checkout", "customer_note": rng.choice(NOTES) if rng.random() < 0.2 else "",
        "cart_hash": hashlib.md5(key.encode(), usedforsecurity=False).hexdigest(), "meta_data": meta,
        "line_items": lines, "tax_lines": tax_lines, "shipping_lines": shipping_lines, "fee_lines": fee_lines,
        "coupon_lines": coupon_lines, "created": now, "modified": now,
        "date_paid": now if status in ("processing", "completed") else None,
        "date_completed": now if status == "completed" else None,
    }  # fmt: skip
    return store.add_order(row, checkout_update=checkout_update)
