"""Distinct, correctly signed WooCommerce `order.created` deliveries for the load generator.

A body is what WooCommerce 8/9 sends for an order webhook (the wc/v3 REST representation of the
order, `api_version` wp_api_v3) encoded the way WordPress's `wp_json_encode` does it: compact,
non-ASCII as lower-case `\\uXXXX`, `/` escaped as `\\/`, money as strings, a line's `price` as
a float in PHP's shortest round-trip form (the same as Python's `repr`). Every body has its own
order id, so every request is a distinct delivery (dedupe key = topic + id + date_modified_gmt).

The requests are written to files, one line each: `<base64 signature> <body>`, which the wrk
script (load.lua) reads one line per request, so neither side holds them all in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.woocommerce.wordpress import wp_specialchars_decode
from tests.samples import SECRETS

# The tests' secret as stored in WordPress, and the key WooCommerce signs with (after wp_specialchars_decode).
WC_SECRET_STORED = SECRETS["WC_SECRET"]
WC_SIGNING_KEY = wp_specialchars_decode(WC_SECRET_STORED).encode()

SHOP = "https://shop.example"
_FIRST = ["J\u00f6rg", "Ana\u00efs", "Bj\u00f6rn", "Zo\u00eb", "Fran\u00e7ois", "Marie", "Pieter", "Se\u00e1n"]
_LAST = ["M\u00fcller", "van den Berg", "Dupont", "\u00c5kesson", "O'Brien", "Garc\u00eda", "Jansen", "Nov\u00e1k"]
_CITIES = [("Utrecht", "3511 AB", "NL", "UT"), ("K\u00f6ln", "50667", "DE", "NW"), ("Li\u00e8ge", "4000", "BE", "")]
_PRODUCTS = [
    ("Koppel mug \u2013 matte black", "KOP-MUG-BLK", 12.5),
    ("Canvas tote \u201cWebhook\u201d", "KOP-TOTE-01", 18.95),
    ("Hoodie, organic cotton (M)", "KOP-HOOD-M", 54.0),
    ("Sticker pack \u00d7 12", "KOP-STK-12", 4.99),
    ("Notebook A5 dotted", "KOP-NB-A5", 9.75),
]
_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0"


def wp_json_encode(value: Any) -> bytes:
    """`wp_json_encode($value)`: PHP json_encode without flags (escaped slashes and unicode)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


def sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(WC_SIGNING_KEY, body, hashlib.sha256).digest()).decode()


def _money(value: float) -> str:
    return f"{value:.2f}"


def _address(rng: random.Random, first: str, last: str, email: bool) -> dict[str, str]:
    city, postcode, country, state = rng.choice(_CITIES)
    address = {
        "first_name": first,
        "last_name": last,
        "company": rng.choice(["", "", "Koppel B.V."]),
        "address_1": f"Oudegracht {rng.randint(1, 399)}",
        "address_2": rng.choice(["", "2e verdieping"]),
        "city": city,
        "state": state,
        "postcode": postcode,
        "country": country,
    }
    if email:
        address["email"] = f"{first[:1].lower()}.{rng.randint(1, 99999)}@example.com"
    address["phone"] = f"+31 6 {rng.randint(10000000, 99999999)}"
    return address


def order(order_id: int, created: datetime, rng: random.Random) -> dict[str, Any]:
    """One order as WooCommerce's order.created webhook payload (wc/v3 shape)."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    vat = 0.21
    items = []
    subtotal = 0.0
    for position, (name, sku, unit) in enumerate(rng.sample(_PRODUCTS, rng.randint(1, 2))):
        quantity = rng.randint(1, 4)
        net = unit * quantity / (1 + vat)
        tax = unit * quantity - net
        subtotal += net
        items.append(
            {
                "id": order_id * 10 + position,
                "name": name,
                "product_id": 100 + _PRODUCTS.index((name, sku, unit)),
                "variation_id": 0,
                "quantity": quantity,
                "tax_class": "",
                "subtotal": _money(net),
                "subtotal_tax": _money(tax),
                "total": _money(net),
                "total_tax": _money(tax),
                "taxes": [{"id": 1, "total": f"{tax:.4f}", "subtotal": f"{tax:.4f}"}],
                "meta_data": [],
                "sku": sku,
                "price": net / quantity,
                "image": {"id": 40 + position, "src": f"{SHOP}/wp-content/uploads/2026/10/{sku.lower()}.jpg"},
                "parent_name": None,
            }
        )
    shipping_net = 4.95
    tax_total = subtotal * vat + shipping_net * vat
    total = subtotal + shipping_net + tax_total
    local = created + timedelta(hours=1)
    stamp, stamp_local = created.strftime("%Y-%m-%dT%H:%M:%S"), local.strftime("%Y-%m-%dT%H:%M:%S")
    key = _order_key(order_id)
    billing = _address(rng, first, last, email=True)
    return {
        "id": order_id,
        "parent_id": 0,
        "status": "processing",
        "currency": "EUR",
        "version": "9.4.2",
        "prices_include_tax": True,
        "date_created": stamp_local,
        "date_modified": stamp_local,
        "discount_total": "0.00",
        "discount_tax": "0.00",
        "shipping_total": _money(shipping_net),
        "shipping_tax": _money(shipping_net * vat),
        "cart_tax": _money(subtotal * vat),
        "total": _money(total),
        "total_tax": _money(tax_total),
        "customer_id": rng.randint(0, 5000),
        "order_key": key,
        "billing": billing,
        "shipping": _address(rng, first, last, email=False),
        "payment_method": "mollie_wc_gateway_ideal",
        "payment_method_title": "iDEAL",
        "transaction_id": f"tr_{rng.getrandbits(40):010x}",
        "customer_ip_address": f"203.0.113.{rng.randint(1, 254)}",
        "customer_user_agent": _AGENT,
        "created_via": "checkout",
        "customer_note": rng.choice(["", "Graag bij de buren afgeven als ik niet thuis ben."]),
        "date_completed": None,
        "date_paid": stamp_local,
        "cart_hash": hashlib.md5(key.encode(), usedforsecurity=False).hexdigest(),
        "number": str(order_id),
        "meta_data": [
            {"id": order_id * 10 + 7, "key": "is_vat_exempt", "value": "no"},
            {"id": order_id * 10 + 8, "key": "_wc_order_attribution_source_type", "value": "organic"},
        ],
        "line_items": items,
        "tax_lines": [
            {
                "id": order_id * 10 + 5,
                "rate_code": f"{billing['country']}-BTW-1",
                "rate_id": 1,
                "label": "BTW",
                "compound": False,
                "tax_total": _money(subtotal * vat),
                "shipping_tax_total": _money(shipping_net * vat),
                "rate_percent": 21,
                "meta_data": [],
            }
        ],
        "shipping_lines": [
            {
                "id": order_id * 10 + 6,
                "method_title": "PostNL",
                "method_id": "flat_rate",
                "instance_id": "3",
                "total": _money(shipping_net),
                "total_tax": _money(shipping_net * vat),
                "taxes": [{"id": 1, "total": f"{shipping_net * vat:.4f}", "subtotal": ""}],
                "meta_data": [],
            }
        ],
        "fee_lines": [],
        "coupon_lines": [],
        "refunds": [],
        "payment_url": f"{SHOP}/checkout/order-pay/{order_id}/?pay_for_order=true&key={key}",
        "is_editable": False,
        "needs_payment": False,
        "needs_processing": True,
        "date_created_gmt": stamp,
        "date_modified_gmt": stamp,
        "date_completed_gmt": None,
        "date_paid_gmt": stamp,
        "currency_symbol": "\u20ac",
        "_links": {
            "self": [{"href": f"{SHOP}/wp-json/wc/v3/orders/{order_id}"}],
            "collection": [{"href": f"{SHOP}/wp-json/wc/v3/orders"}],
        },
    }


_SHAPE_ID = 909090909  # stands for the order id in a shape; derived ids (id * 10 + n) start with it


def _order_key(order_id: int) -> str:
    return f"wc_order_{hashlib.md5(str(order_id).encode(), usedforsecurity=False).hexdigest()[:13]}"


def shapes(count: int = 256, seed: int = 7) -> list[bytes]:
    """`count` different encoded orders (customers, items, amounts, dates) with a placeholder id."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    return [wp_json_encode(order(_SHAPE_ID, start + timedelta(seconds=17 * n), rng)) for n in range(count)]


def deliveries(first_id: int, count: int, seed: int = 7) -> Iterator[tuple[str, bytes]]:
    """`count` distinct signed order.created deliveries with ids first_id, first_id + 1, ...

    Each is one of 256 order shapes with its ids, order key and cart hash made its own, so the
    bodies differ in content and length like real orders while costing a few µs each to make.
    """
    templates = shapes(seed=seed)
    placeholder = str(_SHAPE_ID).encode()
    placeholder_key = _order_key(_SHAPE_ID).encode()
    placeholder_hash = hashlib.md5(placeholder_key, usedforsecurity=False).hexdigest().encode()
    for n in range(count):
        order_id = first_id + n
        key = _order_key(order_id).encode()
        body = (
            templates[n % len(templates)]
            .replace(placeholder_hash, hashlib.md5(key, usedforsecurity=False).hexdigest().encode())
            .replace(placeholder_key, key)
            .replace(placeholder, str(order_id).encode())
        )
        yield sign(body), body


def write_requests(path: Path, first_id: int, count: int) -> tuple[int, int]:
    """Write `count` deliveries to `path` as `<signature> <body>` lines; returns (count, body bytes)."""
    total = 0
    with path.open("wb", buffering=1 << 20) as out:
        for signature, body in deliveries(first_id, count):
            out.write(signature.encode() + b" " + body + b"\n")
            total += len(body)
    return count, total
