"""The Squarespace sandbox's data: orders, products with variants, inventory, profiles, webhook subscriptions.

Plain state, no HTTP: app.py answers the API from it. Errors are `SquarespaceError`s carrying the
status and Squarespace's error body fields. Ids are 24 hex characters, as Squarespace's are; times are
ISO 8601 UTC with milliseconds and `Z`.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

TOPICS = ("order.create", "order.update", "extension.uninstall")
MAX_SUBSCRIPTIONS = 25
ORDER_UPDATES = ("FULFILLED", "REFUNDED", "CANCELED", "MARKED_PENDING", "EMAIL_UPDATED")


class SquarespaceError(Exception):
    """An API error as Squarespace answers it: `{"type", "subtype", "message", "details", "contextId"}`."""

    def __init__(self, status: int, type_: str, message: str, subtype: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.subtype = status, type_, message, subtype

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "subtype": self.subtype, "message": self.message, "details": None,
                "contextId": secrets.token_hex(8).upper()}  # fmt: skip


def invalid(message: str, subtype: str | None = None) -> SquarespaceError:
    return SquarespaceError(400, "INVALID_REQUEST_ERROR", message, subtype)


def not_found(what: str) -> SquarespaceError:
    return SquarespaceError(404, "NOT_FOUND", f"{what} not found")


def new_id() -> str:
    return secrets.token_hex(12)


def stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def money(value: Decimal | str, currency: str = "EUR") -> dict[str, str]:
    return {"value": f"{Decimal(value):.2f}", "currency": currency}


@dataclass
class Subscription:
    id: str
    endpoint_url: str
    topics: list[str]
    secret: str
    created_on: str
    updated_on: str

    def view(self, *, with_secret: bool = False) -> dict[str, Any]:
        out = {"id": self.id, "endpointUrl": self.endpoint_url, "topics": list(self.topics),
               "createdOn": self.created_on, "updatedOn": self.updated_on}  # fmt: skip
        return out | {"secret": self.secret} if with_secret else out


@dataclass
class Store:
    clock: Callable[[], float] = time.time
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    inventory: dict[str, dict[str, Any]] = field(default_factory=dict)
    """variant id → {variantId, sku, descriptor, isUnlimited, quantity}."""
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Transaction documents (the Transactions API): one per order, an id of its own, `salesOrderId`."""
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    adjustments: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key → a digest of the body it came with."""
    next_number: int = 1001
    website_id: str = field(default_factory=new_id)

    def now(self) -> str:
        return stamp(self.clock())

    # -- catalogue -----------------------------------------------------------------------------------

    def add_product(
        self, name: str, skus: Iterable[str], *, price: str = "12.50", quantity: int = 10
    ) -> dict[str, Any]:
        product_id = new_id()
        variants = []
        for sku in skus:
            variant_id = new_id()
            variants.append({"id": variant_id, "sku": sku, "pricing": {"basePrice": money(price), "onSale": False,
                             "salePrice": money("0")}, "stock": {"quantity": quantity, "unlimited": False},
                             "attributes": {}})  # fmt: skip
            self.inventory[variant_id] = {"variantId": variant_id, "sku": sku, "descriptor": f"{name} [{sku}]",
                                          "isUnlimited": False, "quantity": quantity}  # fmt: skip
        now = self.now()
        product = {"id": product_id, "type": "PHYSICAL", "storePageId": "store", "name": name, "description": "",
                   "url": f"/store/p/{product_id}", "urlSlug": product_id, "tags": [], "isVisible": True,
                   "variants": variants, "images": [], "createdOn": now, "modifiedOn": now}  # fmt: skip
        self.products[product_id] = product
        return product

    def product_view(self, product: Mapping[str, Any]) -> dict[str, Any]:
        """A product with its variants' stock as the inventory holds it now."""
        variants = []
        for variant in product["variants"]:
            stock = self.inventory.get(variant["id"], {})
            variants.append(variant | {"stock": {"quantity": stock.get("quantity", 0),
                                                 "unlimited": bool(stock.get("isUnlimited"))}})  # fmt: skip
        return dict(product) | {"variants": variants}

    def variant(self, sku: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for product in self.products.values():
            for variant in product["variants"]:
                if variant["sku"].casefold() == sku.casefold():
                    return product, variant
        return None

    # -- orders --------------------------------------------------------------------------------------

    def place_order(
        self, rng: random.Random, *, email: str | None = None, skus: list[str] | None = None,
        promo: Mapping[str, Any] | None = None, tax_rate: Decimal = Decimal(21),
        payment: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A checkout: an order of one to three variants (`skus`, else random ones), paid, PENDING; the stock
        taken from the inventory; the customer's profile made or updated. Prices include tax at `tax_rate`
        (one rate, as a European site charges it); `promo` {"code", "percent"} takes that percentage off the
        subtotal as an order-level discount line. The payment (`payment` {"provider", "card"}, default Stripe, a
        Visa card) is a transaction document of its own."""  # fmt: skip
        chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for sku in skus or []:
            found = self.variant(sku)
            if found is None:
                raise invalid(f"no variant with SKU {sku}")
            chosen.append(found)
        if not chosen:
            pool = [(p, v) for p in self.products.values() for v in p["variants"]]
            if not pool:
                raise invalid("the store has no products: seed some first")
            chosen = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
        first = rng.choice(["Anna", "Bram", "Chloé", "Daan", "Eva"])
        last = rng.choice(["de Vries", "Jansen", "Bakker", "Visser", "Smit"])
        email = email or f"{first.lower().replace('é', 'e')}.{self.next_number}@example.com"
        address = {"firstName": first, "lastName": last, "address1": f"Dorpsstraat {rng.randint(1, 200)}",
                   "address2": None, "city": "Utrecht", "state": None, "countryCode": "NL",
                   "postalCode": "3511 AB", "phone": "+31 30 123 4567"}  # fmt: skip
        lines, subtotal = [], Decimal(0)
        for product, variant in chosen:
            quantity = rng.randint(1, 3)
            price = Decimal(variant["pricing"]["basePrice"]["value"])
            subtotal += price * quantity
            lines.append({"id": new_id(), "variantId": variant["id"], "sku": variant["sku"], "productId": product["id"],
                          "productName": product["name"], "quantity": quantity, "unitPricePaid": money(price),
                          "variantOptions": [], "customizations": None, "imageUrl": None,
                          "lineItemType": "PHYSICAL_PRODUCT"})  # fmt: skip
            stock = self.inventory.get(variant["id"])
            if stock is not None and not stock["isUnlimited"]:
                stock["quantity"] = max(0, stock["quantity"] - quantity)
        shipping = Decimal("4.95")
        discount, discount_lines = Decimal(0), []
        if promo:
            discount = (subtotal * Decimal(str(promo.get("percent", 10))) / 100).quantize(Decimal("0.01"))
            code = str(promo.get("code") or "PROMO")
            discount_lines.append({"description": f"{promo.get('percent', 10)}% off", "name": code,
                                   "amount": money(discount), "promoCode": code})  # fmt: skip
        grand = subtotal + shipping - discount
        tax = (grand * tax_rate / (100 + tax_rate)).quantize(Decimal("0.01"))
        now = self.now()
        order: dict[str, Any] = {
            "id": new_id(), "orderNumber": str(self.next_number), "createdOn": now, "modifiedOn": now,
            "channel": "web", "testmode": False, "customerEmail": email, "customerId": self._profile(email, address),
            "billingAddress": address, "shippingAddress": dict(address), "fulfillmentStatus": "PENDING",
            "lineItems": lines, "internalNotes": [], "shippingLines": [{"method": "PostNL", "amount": money(shipping)}],
            "discountLines": discount_lines, "formSubmission": None, "fulfillments": [], "subtotal": money(subtotal),
            "shippingTotal": money(shipping), "discountTotal": money(discount), "taxTotal": money(tax),
            "refundedTotal": money("0"), "grandTotal": money(grand), "channelName": "Squarespace",
            "externalOrderReference": None, "fulfilledOn": None, "priceTaxInterpretation": "INCLUSIVE",
        }  # fmt: skip
        self.next_number += 1
        self.orders[order["id"]] = order
        paid = {"provider": "STRIPE", "card": "VISA"} | dict(payment or {})
        document_id = new_id()
        self.transactions[document_id] = {
            "id": document_id, "createdOn": now, "modifiedOn": now, "customerEmail": email,
            "salesOrderId": order["id"], "voided": False, "totalSales": money(subtotal - discount),
            "totalNetSales": money(subtotal - discount), "totalNetShipping": money(shipping), "totalTaxes": money(tax),
            "total": money(grand), "totalNetPayment": money(grand), "salesLineItems": [], "discounts": [],
            "shippingLineItems": [], "paymentGatewayError": None,
            "payments": [{"id": new_id(), "amount": money(grand), "refundedAmount": money("0"),
                          "netAmount": money(grand), "creditCardType": paid.get("card"),
                          "provider": str(paid["provider"]).upper(), "refunds": [], "processingFees": [],
                          "giftCardId": None, "paidOn": now, "externalTransactionId": f"ch_{new_id()}",
                          "externalTransactionProperties": [], "externalCustomerId": None}],
        }  # fmt: skip
        return order

    def order(self, order_id: str) -> dict[str, Any]:
        found = self.orders.get(order_id)
        if found is None:
            raise not_found(f"order {order_id}")
        return found

    def fulfil(self, order_id: str, shipments: list[dict[str, Any]]) -> dict[str, Any]:
        order = self.order(order_id)
        if order["fulfillmentStatus"] == "CANCELED":
            raise invalid("a canceled order cannot be fulfilled")
        now = self.now()
        for shipment in shipments:
            for name in ("shipDate", "carrierName", "service", "trackingNumber"):
                if not isinstance(shipment.get(name), str) or not shipment[name]:
                    raise invalid(f"shipments[].{name} is required")
            order["fulfillments"].append({**shipment, "id": new_id()})
        order["fulfillmentStatus"] = "FULFILLED"
        order["fulfilledOn"] = order["fulfilledOn"] or now
        order["modifiedOn"] = now
        return order

    def touch(self, order_id: str, update: str) -> dict[str, Any]:
        """A change a person makes in the admin (`update`: FULFILLED, CANCELED, EMAIL_UPDATED, …)."""
        order = self.order(order_id)
        if update == "FULFILLED":
            return self.fulfil(order_id, [])
        if update == "CANCELED":
            order["fulfillmentStatus"] = "CANCELED"
        elif update == "MARKED_PENDING":
            order["fulfillmentStatus"] = "PENDING"
        order["modifiedOn"] = self.now()
        return order

    # -- profiles ------------------------------------------------------------------------------------

    def _profile(self, email: str, address: Mapping[str, Any]) -> str:
        for profile in self.profiles.values():
            if profile["email"].casefold() == email.casefold():
                profile["isCustomer"] = True
                return str(profile["id"])
        profile_id = new_id()
        self.profiles[profile_id] = {
            "id": profile_id, "firstName": address["firstName"], "lastName": address["lastName"], "email": email,
            "hasAccount": False, "isCustomer": True, "createdOn": self.now(), "address": dict(address),
            "acceptsMarketing": False, "transactionsSummary": None,
        }  # fmt: skip
        return profile_id

    # -- inventory -----------------------------------------------------------------------------------

    def adjust(self, key: str, digest: str, body: Mapping[str, Any]) -> bool:
        """Apply an adjustment once per Idempotency-Key; False when the key was used already."""
        if key in self.adjustments:
            if self.adjustments[key] != digest:
                raise invalid("the Idempotency-Key was used with another request body")
            return False
        operations: list[tuple[str, str, int | None]] = []
        for name, kind in (("incrementOperations", "inc"), ("decrementOperations", "dec"),
                           ("setFiniteOperations", "set")):  # fmt: skip
            for op in body.get(name) or []:
                variant = op.get("variantId") if isinstance(op, dict) else None
                quantity = op.get("quantity") if isinstance(op, dict) else None
                if not isinstance(variant, str) or isinstance(quantity, bool) or not isinstance(quantity, int):
                    raise invalid(f"{name}[] needs a variantId and an integer quantity")
                if quantity < 0:
                    raise invalid(f"{name}[].quantity must not be negative")
                operations.append((kind, variant, quantity))
        for variant in body.get("setUnlimitedOperations") or []:
            operations.append(("unlimited", str(variant), None))
        if not operations:
            raise invalid("the adjustment holds no operation")
        seen = [variant for _, variant, _ in operations]
        if len(seen) != len(set(seen)):
            raise SquarespaceError(409, "CONFLICT", "a variant appears in more than one operation")
        for _, variant, _ in operations:
            if variant not in self.inventory:
                raise not_found(f"variant {variant}")
        for kind, variant, quantity in operations:
            stock = self.inventory[variant]
            if kind == "unlimited":
                stock["isUnlimited"] = True
                continue
            assert quantity is not None
            current = 0 if stock["isUnlimited"] else stock["quantity"]
            stock["isUnlimited"] = False
            stock["quantity"] = {"inc": current + quantity, "dec": max(0, current - quantity), "set": quantity}[kind]
        self.adjustments[key] = digest
        return True

    # -- webhook subscriptions -------------------------------------------------------------------------

    def subscribe(self, endpoint_url: Any, topics: Any) -> Subscription:
        _check_subscription(endpoint_url, topics)
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise invalid(f"a site holds at most {MAX_SUBSCRIPTIONS} webhook subscriptions")
        now = self.now()
        sub = Subscription(new_id(), endpoint_url, list(topics), secrets.token_hex(32).upper(), now, now)
        self.subscriptions[sub.id] = sub
        return sub

    def subscription(self, subscription_id: str) -> Subscription:
        found = self.subscriptions.get(subscription_id)
        if found is None:
            raise not_found(f"webhook subscription {subscription_id}")
        return found

    def update_subscription(self, subscription_id: str, fields: Mapping[str, Any]) -> Subscription:
        sub = self.subscription(subscription_id)
        url = fields.get("endpointUrl", sub.endpoint_url)
        topics = fields.get("topics", sub.topics)
        _check_subscription(url, topics)
        sub.endpoint_url, sub.topics, sub.updated_on = url, list(topics), self.now()
        return sub

    def rotate(self, subscription_id: str) -> str:
        sub = self.subscription(subscription_id)
        sub.secret = secrets.token_hex(32).upper()
        sub.updated_on = self.now()
        return sub.secret

    def listeners(self, topic: str) -> list[Subscription]:
        return [s for s in self.subscriptions.values() if topic in s.topics]


def _check_subscription(endpoint_url: Any, topics: Any) -> None:
    if not isinstance(endpoint_url, str) or not endpoint_url:
        raise invalid("endpointUrl is required")
    loopback = endpoint_url.startswith(("http://127.0.0.1", "http://localhost"))
    if not endpoint_url.startswith("https://") and not loopback:
        raise invalid("endpointUrl must be an HTTPS URL")
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        raise invalid("topics must be a non-empty list")
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        raise invalid(f"unknown topic {unknown[0]}; known: {', '.join(TOPICS)}")


__all__ = ["TOPICS", "SquarespaceError", "Store", "Subscription", "invalid", "money", "new_id", "not_found", "stamp"]
