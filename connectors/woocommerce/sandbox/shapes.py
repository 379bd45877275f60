"""The REST v3 JSON the sandbox answers with (PLATFORMS.md §1.4): key order as WooCommerce emits it,
money as strings, `date_*` shop-local and `date_*_gmt` UTC without offset, `_links` to the site URL."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.woocommerce.sandbox.store import ShopSettings, Store

Row = dict[str, Any]
_ORDER_ADDRESS = ("first_name", "last_name", "company", "address_1", "address_2", "city", "state", "postcode",
                  "country")  # fmt: skip
_CUSTOMER_ADDRESS = ("first_name", "last_name", "company", "address_1", "address_2", "city", "postcode", "country",
                     "state")  # fmt: skip
UNCATEGORIZED = {"id": 15, "name": "Uncategorized", "slug": "uncategorized"}


@dataclass(frozen=True)
class Context:
    site_url: str
    tz: tzinfo
    settings: ShopSettings

    @property
    def api(self) -> str:
        return f"{self.site_url}wp-json/wc/v3"


def local(ctx: Context, timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(int(timestamp), ctx.tz).strftime("%Y-%m-%dT%H:%M:%S")


def gmt(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%S")


def slugify(name: str, fallback: int) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-") or str(fallback)


def address(value: Mapping[str, Any], *, with_email: bool, base: Row | None = None, customer: bool = False) -> Row:
    keys = [*(_CUSTOMER_ADDRESS if customer else _ORDER_ADDRESS), *(["email"] if with_email else []), "phone"]
    merged = {**(base or {}), **{k: v for k, v in value.items() if k in keys}}
    return {key: "" if merged.get(key) is None else str(merged[key]) for key in keys}


def input_attributes(value: list[Any], for_variation: bool) -> list[Row]:
    out: list[Row] = []
    for position, item in enumerate(a for a in value if isinstance(a, Mapping)):
        name = str(item.get("name") or "")
        if for_variation:
            out.append({"id": int(item.get("id") or 0), "name": name, "option": str(item.get("option") or "")})
        else:
            out.append({"id": int(item.get("id") or 0), "name": name, "slug": slugify(name, position),
                        "position": int(item.get("position", position)), "visible": bool(item.get("visible", True)),
                        "variation": bool(item.get("variation", False)),
                        "options": [str(o) for o in item.get("options") or []]})  # fmt: skip
    return out


def _links(ctx: Context, path: str, collection: str, **extra: str) -> Row:
    links = {"self": [{"href": f"{ctx.api}/{path}"}], "collection": [{"href": f"{ctx.api}/{collection}"}]}
    return links | {name: [{"href": f"{ctx.api}/{target}"}] for name, target in extra.items()}


def _price_html(ctx: Context, price: str) -> str:
    if not price:
        return ""
    amount = f"{Decimal(price):.2f}".replace(".", ",")
    return (
        '<span class="woocommerce-Price-amount amount"><bdi><span class="woocommerce-Price-currencySymbol">'
        f"&euro;</span>{amount}</bdi></span>"
    )


def _images(ctx: Context, row: Row) -> list[Row]:
    return [
        {"id": int(i.get("id") or 0), "date_created": local(ctx, row["created"]),
         "date_created_gmt": gmt(row["created"]), "date_modified": local(ctx, row["modified"]),
         "date_modified_gmt": gmt(row["modified"]), "src": str(i.get("src") or ""), "name": str(i.get("name") or ""),
         "alt": str(i.get("alt") or "")}
        for i in row["images"]
    ]  # fmt: skip


def stock_status(row: Row, store: Store) -> str:
    if row["type"] == "variable":
        kids = [stock_status(child, store) for child in store.children(row["id"])]
        if not kids:
            return str(row["stock_status"])
        return next((s for s in ("instock", "onbackorder") if s in kids), "outofstock")
    holder = store.stock_holder(row)
    if holder is None:
        return str(row["stock_status"])
    if int(holder["stock_quantity"] or 0) > 0:
        return "instock"
    return "onbackorder" if holder["backorders"] != "no" else "outofstock"


def _stock_fields(row: Row, store: Store) -> tuple[bool | str, int | None]:
    holder = store.stock_holder(row)
    manage: bool | str = bool(row["manage_stock"]) or ("parent" if holder is not None else False)
    return manage, None if holder is None else holder["stock_quantity"]


def _price(row: Row, store: Store) -> tuple[str, str, str, bool]:
    """price, regular_price, sale_price, on_sale (a variable product: its cheapest variation)."""
    if row["type"] == "variable":
        prices = [_price(child, store) for child in store.children(row["id"])]
        cheapest = min((p[0] for p in prices if p[0]), key=Decimal, default="")
        return cheapest, "", "", any(p[3] for p in prices)
    sale = row["sale_price"]
    on_sale = bool(sale) and bool(row["regular_price"]) and Decimal(sale) < Decimal(row["regular_price"])
    return (sale if on_sale else row["regular_price"]), row["regular_price"], sale if on_sale else "", on_sale


def variation_name(row: Row, parent: Row) -> str:
    """WooCommerce titles a variation "{parent} - {option, option}"."""
    return f"{parent['name']} - {', '.join(a['option'] for a in row['attributes'])}".rstrip(" -")


def product(ctx: Context, row: Row, store: Store) -> Row:
    """`/products/{id}`; a variation here has type "variation", `parent_id` and `[{id, name, option}]` attributes."""
    price, regular, sale, on_sale = _price(row, store)
    manage, quantity = _stock_fields(row, store)
    parent = store.products.get(row["parent_id"]) if row["type"] == "variation" else None
    name = row["name"] if parent is None else variation_name(row, parent)
    slug = row["slug"] or (parent["slug"] if parent else str(row["id"]))
    up = {"up": f"products/{row['parent_id']}"} if parent is not None else {}
    status = stock_status(row, store)
    return {
        "id": row["id"], "name": name, "slug": slug, "permalink": f"{ctx.site_url}product/{slug}/",
        "date_created": local(ctx, row["created"]), "date_created_gmt": gmt(row["created"]),
        "date_modified": local(ctx, row["modified"]), "date_modified_gmt": gmt(row["modified"]),
        "type": row["type"], "status": row["status"], "featured": row["featured"],
        "catalog_visibility": row["catalog_visibility"], "description": row["description"],
        "short_description": row["short_description"], "sku": row["sku"], "price": price, "regular_price": regular,
        "sale_price": sale, "date_on_sale_from": None, "date_on_sale_from_gmt": None, "date_on_sale_to": None,
        "date_on_sale_to_gmt": None, "on_sale": on_sale, "purchasable": bool(price) and row["status"] == "publish",
        "total_sales": row["total_sales"], "virtual": row["virtual"], "downloadable": False, "downloads": [],
        "download_limit": -1, "download_expiry": -1, "external_url": "", "button_text": "",
        "tax_status": row["tax_status"], "tax_class": row["tax_class"], "manage_stock": manage,
        "stock_quantity": quantity, "backorders": row["backorders"], "backorders_allowed": row["backorders"] != "no",
        "backordered": False, "low_stock_amount": None, "sold_individually": False, "weight": row["weight"],
        "dimensions": row["dimensions"], "shipping_required": not row["virtual"], "shipping_taxable": True,
        "shipping_class": "", "shipping_class_id": 0, "reviews_allowed": True, "average_rating": "0.00",
        "rating_count": 0, "upsell_ids": [], "cross_sell_ids": [], "parent_id": row["parent_id"],
        "purchase_note": "", "categories": row["categories"] or ([] if parent else [UNCATEGORIZED]),
        "tags": row["tags"], "images": _images(ctx, row), "attributes": row["attributes"],
        "default_attributes": row["default_attributes"],
        "variations": [child["id"] for child in store.children(row["id"])] if row["type"] == "variable" else [],
        "grouped_products": [], "menu_order": row["menu_order"], "price_html": _price_html(ctx, price),
        "related_ids": [], "meta_data": row["meta_data"], "stock_status": status,
        "has_options": row["type"] == "variable", "post_password": "", "global_unique_id": row["global_unique_id"],
        "_links": _links(ctx, f"products/{row['id']}", "products", **up),
    }  # fmt: skip


def variation(ctx: Context, row: Row, store: Store) -> Row:
    """`/products/{parent}/variations/{id}`."""
    price, regular, sale, on_sale = _price(row, store)
    manage, quantity = _stock_fields(row, store)
    parent = store.products[row["parent_id"]]
    query = "&".join(f"attribute_{slugify(a['name'], i)}={a['option']}" for i, a in enumerate(row["attributes"]))
    image = _images(ctx, row)
    return {
        "id": row["id"], "date_created": local(ctx, row["created"]), "date_created_gmt": gmt(row["created"]),
        "date_modified": local(ctx, row["modified"]), "date_modified_gmt": gmt(row["modified"]),
        "description": row["description"], "permalink": f"{ctx.site_url}product/{parent['slug']}/?{query}",
        "sku": row["sku"], "global_unique_id": row["global_unique_id"], "price": price, "regular_price": regular,
        "sale_price": sale, "date_on_sale_from": None, "date_on_sale_from_gmt": None, "date_on_sale_to": None,
        "date_on_sale_to_gmt": None, "on_sale": on_sale, "status": row["status"],
        "purchasable": bool(price) and row["status"] == "publish", "virtual": row["virtual"], "downloadable": False,
        "downloads": [], "download_limit": -1, "download_expiry": -1, "tax_status": row["tax_status"],
        "tax_class": row["tax_class"], "manage_stock": manage, "stock_quantity": quantity,
        "stock_status": stock_status(row, store), "backorders": row["backorders"],
        "backorders_allowed": row["backorders"] != "no", "backordered": False, "low_stock_amount": None,
        "weight": row["weight"], "dimensions": row["dimensions"], "shipping_class": "", "shipping_class_id": 0,
        "image": image[0] if image else None, "attributes": row["attributes"], "menu_order": row["menu_order"],
        "meta_data": row["meta_data"], "name": variation_name(row, parent), "parent_id": row["parent_id"],
        "_links": _links(ctx, f"products/{row['parent_id']}/variations/{row['id']}",
                         f"products/{row['parent_id']}/variations", up=f"products/{row['parent_id']}"),
    }  # fmt: skip


def order(ctx: Context, row: Row) -> Row:
    status, total = row["status"], row["total"]
    customer = {"customer": f"customers/{row['customer_id']}"} if row["customer_id"] else {}
    return {
        "id": row["id"], "parent_id": 0, "status": status, "currency": row["currency"],
        "version": ctx.settings.wc_version, "prices_include_tax": row["prices_include_tax"],
        "date_created": local(ctx, row["created"]), "date_modified": local(ctx, row["modified"]),
        "discount_total": row["discount_total"], "discount_tax": row["discount_tax"],
        "shipping_total": row["shipping_total"], "shipping_tax": row["shipping_tax"], "cart_tax": row["cart_tax"],
        "total": total, "total_tax": row["total_tax"], "customer_id": row["customer_id"],
        "order_key": row["order_key"], "billing": row["billing"], "shipping": row["shipping"],
        "payment_method": row["payment_method"], "payment_method_title": row["payment_method_title"],
        "transaction_id": row["transaction_id"], "customer_ip_address": row["customer_ip_address"],
        "customer_user_agent": row["customer_user_agent"], "created_via": row["created_via"],
        "customer_note": row["customer_note"], "date_completed": local(ctx, row["date_completed"]),
        "date_paid": local(ctx, row["date_paid"]), "cart_hash": row["cart_hash"], "number": str(row["id"]),
        "meta_data": row["meta_data"], "line_items": row["line_items"], "tax_lines": row["tax_lines"],
        "shipping_lines": row["shipping_lines"], "fee_lines": row["fee_lines"], "coupon_lines": row["coupon_lines"],
        "refunds": [],
        "payment_url": f"{ctx.site_url}checkout/order-pay/{row['id']}/?pay_for_order=true&key={row['order_key']}",
        "is_editable": status in ("pending", "on-hold", "auto-draft"),
        "needs_payment": status in ("pending", "failed") and Decimal(total) > 0, "needs_processing": True,
        "date_created_gmt": gmt(row["created"]), "date_modified_gmt": gmt(row["modified"]),
        "date_completed_gmt": gmt(row["date_completed"]), "date_paid_gmt": gmt(row["date_paid"]),
        "currency_symbol": ctx.settings.currency_symbol,
        "_links": _links(ctx, f"orders/{row['id']}", "orders", **customer),
    }  # fmt: skip


def customer(ctx: Context, row: Row) -> Row:
    avatar = hashlib.md5(row["email"].strip().lower().encode(), usedforsecurity=False).hexdigest()
    return {
        "id": row["id"], "date_created": local(ctx, row["created"]), "date_created_gmt": gmt(row["created"]),
        "date_modified": local(ctx, row["modified"]), "date_modified_gmt": gmt(row["modified"]),
        "email": row["email"], "first_name": row["first_name"], "last_name": row["last_name"], "role": row["role"],
        "username": row["username"], "billing": row["billing"], "shipping": row["shipping"],
        "is_paying_customer": row["is_paying_customer"],
        "avatar_url": f"https://secure.gravatar.com/avatar/{avatar}?s=96&d=mm&r=g", "meta_data": row["meta_data"],
        "_links": _links(ctx, f"customers/{row['id']}", "customers"),
    }  # fmt: skip


HOOKS = {
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded", "woocommerce_delete_order_refund"],
    "order.deleted": ["wp_trash_post", "woocommerce_trash_order"],
    "order.restored": ["untrashed_post", "woocommerce_untrash_order"],
    "product.created": ["woocommerce_process_product_meta", "woocommerce_new_product",
                        "woocommerce_new_product_variation"],
    "product.updated": ["woocommerce_process_product_meta", "woocommerce_update_product",
                        "woocommerce_update_product_variation"],
    "product.deleted": ["wp_trash_post"],
    "product.restored": ["untrashed_post"],
    "customer.created": ["user_register", "woocommerce_created_customer", "woocommerce_new_customer"],
    "customer.updated": ["profile_update", "woocommerce_update_customer"],
    "customer.deleted": ["delete_user"],
    "coupon.created": ["woocommerce_process_shop_coupon_meta", "woocommerce_new_coupon"],
    "coupon.updated": ["woocommerce_process_shop_coupon_meta", "woocommerce_update_coupon"],
    "coupon.deleted": ["wp_trash_post"],
    "coupon.restored": ["untrashed_post"],
}  # fmt: skip


def webhook(ctx: Context, row: Row) -> Row:
    resource, _, event = row["topic"].partition(".")
    hooks = HOOKS.get(row["topic"], [event] if resource == "action" else [])
    return {
        "id": row["id"], "name": row["name"], "status": row["status"], "topic": row["topic"], "resource": resource,
        "event": event, "hooks": hooks, "delivery_url": row["delivery_url"],
        "date_created": local(ctx, row["created"]), "date_created_gmt": gmt(row["created"]),
        "date_modified": local(ctx, row["modified"]), "date_modified_gmt": gmt(row["modified"]),
        "_links": _links(ctx, f"webhooks/{row['id']}", "webhooks"),
    }  # fmt: skip
