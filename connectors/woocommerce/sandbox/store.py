"""The sandbox's in-memory shop: products and variations, orders, customers and webhooks, the REST v3 JSON
shapes WooCommerce answers with (shapes.py), its validation and its error codes.

Every change calls `on_change(resource, event, resource_id)` — the hook WooCommerce's webhook topics
listen on; the sandbox turns those into deliveries (webhooks.py). The store is driven from one
asyncio event loop (uvicorn's), so it holds no lock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from connectors.woocommerce.sandbox import shapes
from connectors.woocommerce.wordpress import wp_generate_password

Row = dict[str, Any]

ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "checkout-draft")
WEBHOOK_STATUSES = ("active", "paused", "disabled")
WEBHOOK_RESOURCES = ("order", "product", "customer", "coupon")
WEBHOOK_EVENTS = ("created", "updated", "deleted", "restored")
_RESTOCK = ("cancelled", "refunded", "failed")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EMAIL_EXISTS = "An account is already registered with your email address. Please log in."
_BAD_URL = "Webhook delivery URL must be a valid URL starting with http:// or https://."
_BAD_TOPIC = "Webhook topic is required and must be valid."


class WCError(Exception):
    """A WooCommerce REST error: `{"code", "message", "data": {"status", ["params", "details"]}}`."""

    def __init__(self, status: int, code: str, message: str, params: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.code, self.message, self.params = status, code, message, dict(params or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, **self.extra}
        if self.params:
            data["params"] = self.params
            data["details"] = {
                k: {"code": "rest_invalid_param", "message": v, "data": None} for k, v in self.params.items()
            }
        return {"code": self.code, "message": self.message, "data": data}


def invalid_param(params: Mapping[str, str]) -> WCError:
    return WCError(400, "rest_invalid_param", f"Invalid parameter(s): {', '.join(params)}", params)


def not_found(code: str, message: str = "Invalid ID.") -> WCError:
    return WCError(404, code, message)


# -- request validation: WordPress's rest_validate_value_from_schema, for the types used here ----------------------

_T = dict[str, Any]
_PRODUCT_FIELDS: _T = {
    "name": str, "slug": str, "type": ("simple", "grouped", "external", "variable"),
    "status": ("draft", "pending", "private", "publish"), "featured": bool,
    "catalog_visibility": ("visible", "catalog", "search", "hidden"), "description": str, "short_description": str,
    "sku": str, "global_unique_id": str, "regular_price": str, "sale_price": str,
    "tax_status": ("taxable", "shipping", "none"), "tax_class": str, "manage_stock": bool, "stock_quantity": int,
    "stock_status": ("instock", "outofstock", "onbackorder"), "backorders": ("no", "notify", "yes"), "weight": str,
    "dimensions": dict, "categories": list, "tags": list, "images": list, "attributes": list,
    "default_attributes": list, "menu_order": int, "meta_data": list, "virtual": bool,
}  # fmt: skip
_VARIATION_FIELDS: _T = {
    key: _PRODUCT_FIELDS[key]
    for key in ("description", "sku", "global_unique_id", "regular_price", "sale_price", "status", "tax_status",
                "tax_class", "manage_stock", "stock_quantity", "stock_status", "backorders", "weight", "dimensions",
                "attributes", "menu_order", "meta_data", "virtual")
} | {"image": dict}  # fmt: skip
_CUSTOMER_FIELDS: _T = {"email": str, "first_name": str, "last_name": str, "username": str, "password": str,
                        "billing": dict, "shipping": dict, "meta_data": list}  # fmt: skip
_ORDER_FIELDS: _T = {"status": ORDER_STATUSES, "customer_note": str, "transaction_id": str, "billing": dict,
                     "shipping": dict, "meta_data": list, "payment_method": str, "payment_method_title": str,
                     "set_paid": bool}  # fmt: skip
_WEBHOOK_FIELDS: _T = {"name": str, "status": WEBHOOK_STATUSES, "topic": str, "secret": str, "delivery_url": str}
_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean", dict: "object", list: "array"}


def _coerce(name: str, value: Any, kind: Any) -> Any:
    if isinstance(kind, tuple):
        if value not in kind:
            raise invalid_param({name: f"{name} is not one of {', '.join(kind)}."})
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if value in ("true", "1", 1, "false", "0", 0):
            return value in ("true", "1", 1)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif isinstance(value, kind):
        return value
    raise invalid_param({name: f"{name} is not of type {_TYPE_NAMES[kind]}."})


def validated(data: Mapping[str, Any], schema: _T) -> Row:
    """The known fields of a request body, type-checked as WordPress does (unknown fields are ignored)."""
    return {name: _coerce(name, data[name], kind) for name, kind in schema.items() if name in data}


@dataclass
class ShopSettings:
    currency: str = "EUR"
    currency_symbol: str = "\u20ac"
    timezone: str = "Europe/Amsterdam"
    wc_version: str = "9.4.2"
    wp_version: str = "6.7.1"
    prices_include_tax: bool = True


class Store:
    """The shop's data. Ids: products, variations and orders share one post-id sequence, as in WordPress."""

    def __init__(self, settings: ShopSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock
        self.site_url = "http://127.0.0.1/"
        self.on_change: Callable[[str, str, int], None] = lambda resource, event, rid: None
        self.reset()

    def reset(self) -> None:
        self.products: dict[int, Row] = {}
        self.orders: dict[int, Row] = {}
        self.customers: dict[int, Row] = {}
        self.webhooks: dict[int, Row] = {}
        self.media: dict[str, tuple[str, bytes]] = {}
        """Uploads by path under wp-content/uploads/ → (content type, bytes): what product image URLs serve."""
        self._post_id, self._user_id, self._webhook_id, self._item_id, self._meta_id = 100, 1, 0, 0, 1000

    def next_post_id(self) -> int:
        self._post_id += 1
        return self._post_id

    def next_item_id(self) -> int:
        self._item_id += 1
        return self._item_id

    def next_meta_id(self) -> int:
        self._meta_id += 1
        return self._meta_id

    def _emit(self, resource: str, event: str, resource_id: int) -> None:
        self.on_change(resource, event, resource_id)

    @property
    def ctx(self) -> shapes.Context:
        return shapes.Context(self.site_url, self.tz, self.settings)

    # -- products ----------------------------------------------------------------------------------

    def sku_owner(self, sku: str) -> Row | None:
        folded = sku.casefold()
        return next((p for p in self.products.values() if p["sku"] and p["sku"].casefold() == folded), None)

    def _check_sku(self, sku: str, own_id: int | None) -> str:
        sku = sku.strip()
        owner = self.sku_owner(sku) if sku else None
        if owner is not None and owner["id"] != own_id:  # WooCommerce names the holder and a free SKU too
            raise WCError(400, "product_invalid_sku", "Invalid or duplicated SKU.",
                          extra={"resource_id": owner["id"], "unique_sku": f"{sku}-1"})  # fmt: skip
        return sku

    def product(self, product_id: int, *, variation_ok: bool = True) -> Row:
        found = self.products.get(product_id)
        if found is None or found["status"] == "trash" or (not variation_ok and found["type"] == "variation"):
            raise not_found("woocommerce_rest_product_invalid_id")
        return found

    def variation(self, product_id: int, variation_id: int) -> Row:
        parent = self.product(product_id, variation_ok=False)
        found = self.products.get(variation_id)
        if found is None or found["type"] != "variation" or found["parent_id"] != parent["id"]:
            raise not_found("woocommerce_rest_product_variation_invalid_id")
        return found

    def _apply_product(self, row: Row, data: Row) -> None:
        for key, value in data.items():
            if key == "sku":
                row["sku"] = self._check_sku(value, row["id"])
            elif key in ("regular_price", "sale_price"):
                value = value.strip()
                if value and not re.fullmatch(r"\d+(\.\d+)?", value):
                    raise invalid_param({key: f"{key} is not a valid price."})
                row[key] = value
            elif key == "attributes":
                row["attributes"] = shapes.input_attributes(value, row["type"] == "variation")
            elif key == "meta_data":
                row["meta_data"] = [{"id": self.next_meta_id(), "key": str(m.get("key", "")), "value": m.get("value")}
                                    for m in value if isinstance(m, Mapping)]  # fmt: skip
            elif key == "image":
                row["images"] = [value] if value else []
            elif key == "images":
                row["images"] = [i for i in value if isinstance(i, Mapping)]
            else:
                row[key] = value
        row["modified"] = self.clock()

    def _new_product(self, kind: str, parent_id: int = 0) -> Row:
        now = self.clock()
        return {"id": self.next_post_id(), "name": "", "slug": "", "type": kind, "status": "publish",
                "featured": False, "catalog_visibility": "visible", "description": "", "short_description": "",
                "sku": "", "global_unique_id": "", "regular_price": "", "sale_price": "", "tax_status": "taxable",
                "tax_class": "", "manage_stock": False, "stock_quantity": None, "stock_status": "instock",
                "backorders": "no", "weight": "", "dimensions": {"length": "", "width": "", "height": ""},
                "categories": [], "tags": [], "images": [], "attributes": [], "default_attributes": [],
                "menu_order": 0, "meta_data": [], "virtual": False, "parent_id": parent_id, "total_sales": 0,
                "created": now, "modified": now}  # fmt: skip

    def create_product(self, data: Mapping[str, Any]) -> Row:
        fields = validated(data, _PRODUCT_FIELDS)
        row = self._new_product(fields.get("type", "simple"))
        self._apply_product(row, fields)
        row["name"] = row["name"] or "Product"
        row["slug"] = row["slug"] or shapes.slugify(row["name"], row["id"])
        self.products[row["id"]] = row
        self._emit("product", "created", row["id"])
        return row

    def update_product(self, product_id: int, data: Mapping[str, Any]) -> Row:
        row = self.product(product_id)
        schema = _VARIATION_FIELDS if row["type"] == "variation" else _PRODUCT_FIELDS
        self._apply_product(row, validated(data, schema))
        self._emit("product", "updated", row["id"])
        return row

    def create_variation(self, product_id: int, data: Mapping[str, Any]) -> Row:
        parent = self.product(product_id, variation_ok=False)
        fields = validated(data, _VARIATION_FIELDS)
        row = self._new_product("variation", parent["id"])
        row["status"] = "publish"
        row["menu_order"] = len(self.children(parent["id"]))
        self._apply_product(row, fields)
        self.products[row["id"]] = row
        parent["modified"] = self.clock()
        self._emit("product", "created", row["id"])
        return row

    def update_variation(self, product_id: int, variation_id: int, data: Mapping[str, Any]) -> Row:
        row = self.variation(product_id, variation_id)
        self._apply_product(row, validated(data, _VARIATION_FIELDS))
        self._emit("product", "updated", row["id"])
        return row

    def delete_product(self, product_id: int, *, force: bool, variation_of: int | None = None) -> Row:
        row = self.variation(variation_of, product_id) if variation_of is not None else self.product(product_id)
        if force or row["type"] == "variation":
            for child in self.children(row["id"]):
                del self.products[child["id"]]
            del self.products[row["id"]]
        else:
            row["status"] = "trash"
        self._emit("product", "deleted", row["id"])
        return row

    def children(self, product_id: int) -> list[Row]:
        found = [p for p in self.products.values() if p["type"] == "variation" and p["parent_id"] == product_id]
        return sorted(found, key=lambda p: (p["menu_order"], p["id"]))

    def stock_holder(self, row: Row) -> Row | None:
        """The row whose stock_quantity a sale of `row` changes (a variation may use its parent's)."""
        if row["manage_stock"]:
            return row
        parent = self.products.get(row["parent_id"]) if row["type"] == "variation" else None
        return parent if parent is not None and parent["manage_stock"] else None

    def change_stock(self, row: Row, delta: int) -> int | None:
        """Add `delta` to the stock of `row` (or the parent that keeps it); the id whose stock changed."""
        holder = self.stock_holder(row)
        if holder is None:
            return None
        holder["stock_quantity"] = int(holder["stock_quantity"] or 0) + delta
        holder["modified"] = self.clock()
        return int(holder["id"])

    def upload(self, name: str, content: bytes, content_type: str) -> str:
        """A media file as WordPress keeps it (`wp-content/uploads/{year}/{month}/{name}`); its URL."""
        month = time.strftime("%Y/%m", time.gmtime(self.clock()))
        path = f"{month}/{shapes.slugify(name.rsplit('.', 1)[0], self._post_id)}"
        path += f".{name.rsplit('.', 1)[1].lower()}" if "." in name else ""
        self.media[path] = (content_type, content)
        return f"{self.site_url}wp-content/uploads/{path}"

    def product_json(self, row: Row) -> Row:
        return shapes.product(self.ctx, row, self)

    def variation_json(self, row: Row) -> Row:
        return shapes.variation(self.ctx, row, self)

    # -- customers ---------------------------------------------------------------------------------

    def customer(self, customer_id: int) -> Row:
        if customer_id not in self.customers:
            raise not_found("woocommerce_rest_invalid_id", "Invalid resource ID.")
        return self.customers[customer_id]

    def customer_by_email(self, email: str) -> Row | None:
        folded = email.strip().casefold()
        return next((c for c in self.customers.values() if c["email"].casefold() == folded), None)

    def _apply_customer(self, row: Row, data: Row) -> None:
        for key, value in data.items():
            if key == "email":
                value = value.strip()
                if not _EMAIL.match(value):
                    raise invalid_param({"email": "Invalid email address."})
                other = self.customer_by_email(value)
                if other is not None and other["id"] != row["id"]:
                    raise WCError(400, "registration-error-email-exists", _EMAIL_EXISTS)
                row["email"] = value
            elif key in ("billing", "shipping"):
                row[key] = shapes.address(value, with_email=key == "billing", base=row[key], customer=True)
            elif key == "meta_data":
                row["meta_data"] = [{"id": self.next_meta_id(), "key": str(m.get("key", "")), "value": m.get("value")}
                                    for m in value if isinstance(m, Mapping)]  # fmt: skip
            elif key != "password":
                row[key] = value
        row["modified"] = self.clock()

    def create_customer(self, data: Mapping[str, Any], *, paying: bool = False) -> Row:
        fields = validated(data, _CUSTOMER_FIELDS)
        if not fields.get("email"):
            raise WCError(400, "rest_missing_callback_param", "Missing parameter(s): email", {"email": "email"})
        self._user_id += 1
        now = self.clock()
        row: Row = {"id": self._user_id, "email": "", "first_name": "", "last_name": "", "role": "customer",
                    "username": "", "billing": shapes.address({}, with_email=True, customer=True),
                    "shipping": shapes.address({}, with_email=False, customer=True), "is_paying_customer": paying,
                    "meta_data": [], "created": now, "modified": now}  # fmt: skip
        self._apply_customer(row, fields)
        if not row["username"]:
            base = re.sub(r"[^a-z0-9._-]", "", row["email"].split("@")[0].lower()) or "customer"
            taken = {c["username"] for c in self.customers.values()}
            row["username"] = next(n for n in [base, *(f"{base}-{i}" for i in range(1, 999))] if n not in taken)
        self.customers[row["id"]] = row
        self._emit("customer", "created", row["id"])
        return row

    def update_customer(self, customer_id: int, data: Mapping[str, Any]) -> Row:
        row = self.customer(customer_id)
        fields = validated(data, _CUSTOMER_FIELDS)
        if "username" in fields and fields["username"] != row["username"]:
            raise WCError(400, "woocommerce_rest_customer_invalid_argument", "Username isn't editable.")
        self._apply_customer(row, fields)
        self._emit("customer", "updated", row["id"])
        return row

    def customer_json(self, row: Row) -> Row:
        return shapes.customer(self.ctx, row)

    # -- orders ------------------------------------------------------------------------------------

    def order(self, order_id: int) -> Row:
        if order_id not in self.orders:
            raise not_found("woocommerce_rest_shop_order_invalid_id")
        return self.orders[order_id]

    def add_order(self, row: Row, *, checkout_update: bool) -> Row:
        """A placed order (seed.py builds it): stock is reduced, `order.created` fires, and with
        `checkout_update` also `order.updated` (payment completion saves the order again)."""
        self.orders[row["id"]] = row
        changed = set()
        for line in row["line_items"]:
            product = self.products.get(line["variation_id"] or line["product_id"])
            if product is not None:
                product["total_sales"] += line["quantity"]
                if (holder := self.change_stock(product, -line["quantity"])) is not None:
                    changed.add(holder)
        row["_stock_reduced"] = bool(changed)
        self._emit("order", "created", row["id"])
        if checkout_update:
            self._emit("order", "updated", row["id"])
        for product_id in sorted(changed):
            self._emit("product", "updated", product_id)
        return row

    def insert_order(self, row: Row, *, reduce_stock: bool) -> Row:
        """An order made through the REST API (orders.py builds it): `order.created` fires; its stock is
        reduced when asked (a status that holds stock)."""
        self.orders[row["id"]] = row
        changed = set()
        for line in row["line_items"] if reduce_stock else []:
            product = self.products.get(line["variation_id"] or line["product_id"])
            if product is not None and (holder := self.change_stock(product, -line["quantity"])) is not None:
                changed.add(holder)
        row["_stock_reduced"] = reduce_stock
        self._emit("order", "created", row["id"])
        for product_id in sorted(changed):
            self._emit("product", "updated", product_id)
        return row

    def update_order(self, order_id: int, data: Mapping[str, Any]) -> Row:
        row = self.order(order_id)
        fields = validated(data, _ORDER_FIELDS)
        now = self.clock()
        if fields.pop("set_paid", False) and row["date_paid"] is None:
            row["date_paid"] = now
            fields.setdefault("status", "processing")
        for key, value in fields.items():
            if key in ("billing", "shipping"):
                row[key] = shapes.address(value, with_email=key == "billing", base=row[key])
            elif key == "meta_data":
                row["meta_data"] += [{"id": self.next_meta_id(), "key": str(m.get("key", "")), "value": m.get("value")}
                                     for m in value if isinstance(m, Mapping)]  # fmt: skip
            else:
                row[key] = value
        status = row["status"]
        if status == "completed" and row["date_completed"] is None:
            row["date_completed"] = now
        if status in ("processing", "completed") and row["date_paid"] is None:
            row["date_paid"] = now
        restock = status in _RESTOCK and row.get("_stock_reduced")
        if restock or (status in ("processing", "completed", "on-hold") and not row.get("_stock_reduced")):
            sign = 1 if restock else -1
            for line in row["line_items"]:
                product = self.products.get(line["variation_id"] or line["product_id"])
                if product is not None and (holder := self.change_stock(product, sign * line["quantity"])):
                    self._emit("product", "updated", holder)
            row["_stock_reduced"] = not restock
        row["modified"] = now
        self._emit("order", "updated", row["id"])
        return row

    def order_json(self, row: Row) -> Row:
        return shapes.order(self.ctx, row)

    # -- webhooks ----------------------------------------------------------------------------------

    def webhook(self, webhook_id: int) -> Row:
        if webhook_id not in self.webhooks:
            raise not_found("woocommerce_rest_shop_webhook_invalid_id")
        return self.webhooks[webhook_id]

    def _apply_webhook(self, row: Row, data: Row) -> None:
        if "topic" in data:
            topic = data["topic"].strip().lower()
            resource, _, event = topic.partition(".")
            valid = (resource in WEBHOOK_RESOURCES and event in WEBHOOK_EVENTS) or (
                resource == "action" and re.fullmatch(r"(woocommerce|wc)_[a-z0-9_]+", event) is not None
            )
            if not valid:
                raise WCError(400, "woocommerce_rest_shop_webhook_invalid_topic", _BAD_TOPIC)
            row["topic"] = topic
        if "delivery_url" in data:
            parts = urlsplit(data["delivery_url"].strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise WCError(400, "woocommerce_rest_shop_webhook_invalid_delivery_url", _BAD_URL)
            if data["delivery_url"].strip() != row["delivery_url"]:
                row["pending_delivery"] = True
            row["delivery_url"] = data["delivery_url"].strip()
        for key in ("name", "status", "secret"):
            if key in data:
                row[key] = data[key]
        row["modified"] = self.clock()

    def create_webhook(self, data: Mapping[str, Any]) -> Row:
        fields = validated(data, _WEBHOOK_FIELDS)
        if not fields.get("topic"):
            raise WCError(400, "woocommerce_rest_shop_webhook_invalid_topic", _BAD_TOPIC)
        if not fields.get("delivery_url"):
            raise WCError(400, "woocommerce_rest_shop_webhook_invalid_delivery_url", _BAD_URL)
        now = self.clock()
        row: Row = {"id": self._webhook_id + 1, "name": "", "status": "active", "topic": "", "delivery_url": "",
                    "secret": "", "failure_count": 0, "pending_delivery": True, "created": now,
                    "modified": now}  # fmt: skip
        self._apply_webhook(row, fields)
        self._webhook_id += 1
        row["name"] = row["name"] or f"Webhook created on {shapes.local(self.ctx, now)}"
        row["secret"] = row["secret"] or wp_generate_password(50)
        self.webhooks[row["id"]] = row
        return row

    def update_webhook(self, webhook_id: int, data: Mapping[str, Any]) -> Row:
        row = self.webhook(webhook_id)
        self._apply_webhook(row, validated(data, _WEBHOOK_FIELDS))
        return row

    def webhook_json(self, row: Row) -> Row:
        return shapes.webhook(self.ctx, row)

    # -- what a webhook delivery carries -------------------------------------------------------------

    def payload(self, resource: str, resource_id: int) -> Row:
        """The REST response for the resource now — or WooCommerce's error body when it is gone."""
        try:
            if resource == "order":
                return self.order_json(self.order(resource_id))
            if resource == "product":
                return self.product_json(self.product(resource_id))
            if resource == "customer":
                return self.customer_json(self.customer(resource_id))
        except WCError as exc:
            return exc.body()
        return {"id": resource_id}

    def deliverable(self, resource: str, resource_id: int) -> bool:
        """WC_Webhook::is_valid_resource: draft orders and auto-draft products are not delivered."""
        if resource == "order":
            order = self.orders.get(resource_id)
            return order is None or order["status"] not in ("checkout-draft", "draft", "auto-draft", "new")
        if resource == "product":
            product = self.products.get(resource_id)
            return product is None or product["status"] != "auto-draft"
        return True
