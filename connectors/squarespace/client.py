"""SquarespaceClient: the Commerce APIs of one site (orders, products, inventory, profiles) and its
webhook subscriptions, on the shared HTTP kit (connectors/http.py).

Squarespace quirks (PLATFORMS.md §2 [D] unless marked; [U] where the public docs are followed without
Koppel having seen the real API answer so):

* Base `https://api.squarespace.com`, each resource with its own version in the path: orders, inventory,
  profiles and webhook subscriptions `1.0`, products `v2` [U: the v2 shapes as the docs show them].
* Every call is `Authorization: Bearer <API key or OAuth token>` and needs its own `User-Agent`
  (curl's may be throttled harder). The Webhook Subscriptions API takes an OAuth token only.
* Lists page by an opaque cursor: `{"<items>": [...], "pagination": {"hasNextPage", "nextPageCursor",
  "nextPageUrl"}}`, 50 to a page. A request with `cursor` may carry no other filter (400 otherwise):
  the filters of the first page stick to the cursor.
* `GET /commerce/orders` filters on `modifiedAfter` and `modifiedBefore` (ISO 8601 UTC), only both together.
* Errors are `{"type", "subtype", "message", "details", "contextId"}`; 429 after 300 requests a minute,
  then a minute's cool-down (Retry-After honoured when sent [U]).
* Inventory adjustments carry an `Idempotency-Key` (≤ 64 characters, honoured ≥ 48 h): a replayed
  adjustment is applied once, so a POST here may be retried by the job safely.
* A webhook subscription's `secret` (64 hex characters) is returned only when it is created or its
  secret rotated; rotating invalidates the old one at once on Squarespace's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from connectors.http import ApiClient, Retry
from connectors.readers import iso_time
from connectors.squarespace.errors import (
    SquarespaceAuthError,
    SquarespaceNotFound,
    SquarespaceRateLimited,
    SquarespaceRequestError,
    SquarespaceResponseError,
    SquarespaceUnavailable,
)

API_ROOT = "https://api.squarespace.com"
USER_AGENT = "Koppel/1.0 (integration gateway)"
PAGE_SIZE = 50
MAX_IDS = 50
"""Ids a by-id read takes at once (inventory, profiles, products)."""
IDEMPOTENCY_KEY_MAX = 64
ORDERS = "1.0/commerce/orders"
TRANSACTIONS = "1.0/commerce/transactions"
PRODUCTS = "v2/commerce/products"
INVENTORY = "1.0/commerce/inventory"
PROFILES = "1.0/profiles"
HOOKS = "1.0/webhook_subscriptions"

Record = dict[str, Any]
Pages = Iterator[tuple[list[Record], str | None]]


def iso(moment: datetime) -> str:
    """A moment as Squarespace's filters take it: ISO 8601 UTC with milliseconds and `Z`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    """A Squarespace timestamp ("2026-03-14T13:02:11.123Z", or without seconds as in webhook examples)."""
    if not isinstance(value, str) or not value:
        return None
    return iso_time(value)


class SquarespaceClient(ApiClient):
    system = "Squarespace"
    unavailable_error = SquarespaceUnavailable
    rate_limited_error = SquarespaceRateLimited
    rejected_error = SquarespaceRequestError
    not_found_error = SquarespaceNotFound
    auth_error = SquarespaceAuthError
    bad_response_error = SquarespaceResponseError
    auth_statuses: ClassVar[frozenset[int]] = frozenset({401, 403})
    auth_advice = "check the site's API key or OAuth token (credentials.api_key) and its permissions"

    def __init__(self, http: httpx.Client, *, token: str, api_root: str = API_ROOT, retry: Retry | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(http, api_root=api_root, retry=retry, **kwargs)
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body = response.json()
        except ValueError:
            return "", ""
        if not isinstance(body, dict):
            return "", ""
        code = body.get("type") or ""
        message = body.get("message") or ""
        return str(code), str(message)

    def call(self, method: str, url: str, *, params: Mapping[str, object] | None = None, json: object = None,
             headers: Mapping[str, str] | None = None) -> Any:  # fmt: skip
        """`request` with the site's credentials and User-Agent."""
        return self.request(method, url, params=params, json=json, headers={**self._headers, **(headers or {})})

    def _object(self, method: str, url: str, **kwargs: Any) -> Record:
        body = self.call(method, url, **kwargs)
        if not isinstance(body, dict):
            raise SquarespaceResponseError(f"{self.where(method, url)}: the answer is not a JSON object")
        return body

    def pages(self, url: str, key: str, params: Mapping[str, object] | None = None) -> Pages:
        """Pages of a cursor-paged list: (the items under `key`, the cursor of the next page or None).
        The first request carries `params`; the next ones the cursor alone (Squarespace refuses both)."""
        query: Mapping[str, object] | None = params
        while True:
            body = self._object("GET", url, params=query)
            items = body.get(key)
            if items is None:
                items = []  # an empty list may come as null
            if not isinstance(items, list):
                raise SquarespaceResponseError(f"GET {self.label(self.resolve(url))}: `{key}` is not a list")
            found = body.get("pagination")
            pagination: dict[str, Any] = found if isinstance(found, dict) else {}
            cursor = pagination.get("nextPageCursor") if pagination.get("hasNextPage") else None
            yield [item for item in items if isinstance(item, dict)], str(cursor) if cursor else None
            if not cursor:
                return
            query = {"cursor": cursor}

    def iterate(self, url: str, key: str, params: Mapping[str, object] | None = None) -> Iterator[Record]:
        for items, _ in self.pages(url, key, params):
            yield from items

    # -- orders ------------------------------------------------------------------------------------

    def get_order(self, order_id: str) -> Record:
        return self._object("GET", f"{ORDERS}/{_id(order_id)}")

    def orders(self, *, modified_after: datetime | None = None, modified_before: datetime | None = None,
               fulfillment_status: str | None = None, cursor: str | None = None) -> Pages:  # fmt: skip
        """Pages of orders. `modified_after` and `modified_before` go together (the second defaults to now);
        `cursor` continues a listing (and then takes no filter)."""
        if cursor:
            return self.pages(ORDERS, "result", {"cursor": cursor})
        params: dict[str, object] = {}
        if modified_after is not None or modified_before is not None:
            params["modifiedAfter"] = iso(modified_after or datetime(1970, 1, 1, tzinfo=UTC))
            params["modifiedBefore"] = iso(modified_before or datetime.now(UTC))
        if fulfillment_status:
            params["fulfillmentStatus"] = fulfillment_status.upper()
        return self.pages(ORDERS, "result", params)

    def transactions(self, *, modified_after: datetime, modified_before: datetime | None = None) -> Pages:
        """Pages of transaction documents (payments and refunds, one document per order, its own id; the order's
        is `salesOrderId`) modified in the window."""
        params = {"modifiedAfter": iso(modified_after), "modifiedBefore": iso(modified_before or datetime.now(UTC))}
        return self.pages(TRANSACTIONS, "documents", params)

    def fulfil_order(self, order_id: str, *, shipments: Iterable[Mapping[str, Any]] = (),
                     notify: bool = False) -> None:  # fmt: skip
        """`POST /orders/{id}/fulfillments`: the order is FULFILLED (shipments optional: shipDate, carrierName,
        service, trackingNumber, trackingUrl); `notify` e-mails the customer."""
        self.send("POST", f"{ORDERS}/{_id(order_id)}/fulfillments", headers=self._headers,
                  json={"shouldSendNotification": notify, "shipments": [dict(s) for s in shipments]})  # fmt: skip

    # -- products and variants ---------------------------------------------------------------------

    def products(self, *, product_type: str | None = None) -> Iterator[Record]:
        return self.iterate(PRODUCTS, "products", {"type": product_type} if product_type else None)

    def get_products(self, product_ids: Iterable[str]) -> list[Record]:
        """The products with these ids (≤ 50 a call); unknown ids are left out [U]."""
        found: list[Record] = []
        ids = [_id(i) for i in product_ids]
        for start in range(0, len(ids), MAX_IDS):
            body = self._object("GET", f"{PRODUCTS}/{','.join(ids[start:start + MAX_IDS])}")
            found += [p for p in body.get("products") or [] if isinstance(p, dict)]
        return found

    def update_variant(self, product_id: str, variant_id: str, fields: Mapping[str, Any]) -> Record:
        return self._object("POST", f"{PRODUCTS}/{_id(product_id)}/variants/{_id(variant_id)}", json=dict(fields))

    # -- inventory ---------------------------------------------------------------------------------

    def inventory(self) -> Iterator[Record]:
        """Every variant's stock: `{variantId, sku, descriptor, isUnlimited, quantity}`."""
        return self.iterate(INVENTORY, "inventory")

    def get_inventory(self, variant_ids: Iterable[str]) -> list[Record]:
        found: list[Record] = []
        ids = [_id(i) for i in variant_ids]
        for start in range(0, len(ids), MAX_IDS):
            body = self._object("GET", f"{INVENTORY}/{','.join(ids[start:start + MAX_IDS])}")
            found += [item for item in body.get("inventory") or [] if isinstance(item, dict)]
        return found

    def adjust_inventory(self, idempotency_key: str, *, increment: Mapping[str, int] | None = None,
                         decrement: Mapping[str, int] | None = None, set_finite: Mapping[str, int] | None = None,
                         set_unlimited: Iterable[str] = ()) -> None:  # fmt: skip
        """`POST /inventory/adjustments`; maps are variant id → quantity. The key makes a replay a no-op."""
        if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise ValueError(f"an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_MAX} characters")

        def ops(values: Mapping[str, int] | None) -> list[dict[str, Any]]:
            return [{"variantId": v, "quantity": int(q)} for v, q in (values or {}).items()]

        body = {"incrementOperations": ops(increment), "decrementOperations": ops(decrement),
                "setFiniteOperations": ops(set_finite), "setUnlimitedOperations": list(set_unlimited)}  # fmt: skip
        self.send("POST", f"{INVENTORY}/adjustments", json=body,
                  headers={**self._headers, "Idempotency-Key": idempotency_key})  # fmt: skip

    # -- profiles (customers) ----------------------------------------------------------------------

    def profiles(self, *, email: str | None = None, customers_only: bool = True) -> Iterator[Record]:
        """Profiles, `filter=isCustomer,true;email,<address>` [U: the filter syntax as the docs show it]."""
        parts = ["isCustomer,true"] if customers_only else []
        if email:
            parts.append(f"email,{email}")
        return self.iterate(PROFILES, "profiles", {"filter": ";".join(parts)} if parts else None)

    def get_profiles(self, profile_ids: Iterable[str]) -> list[Record]:
        found: list[Record] = []
        ids = [_id(i) for i in profile_ids]
        for start in range(0, len(ids), MAX_IDS):
            body = self._object("GET", f"{PROFILES}/{','.join(ids[start:start + MAX_IDS])}")
            found += [item for item in body.get("profiles") or [] if isinstance(item, dict)]
        return found

    # -- webhook subscriptions (OAuth token only) --------------------------------------------------

    def subscriptions(self) -> list[Record]:
        body = self._object("GET", HOOKS)
        return [s for s in body.get("webhookSubscriptions") or [] if isinstance(s, dict)]

    def create_subscription(self, endpoint_url: str, topics: Iterable[str]) -> Record:
        """A new subscription; its `secret` is in this answer only."""
        made = self._object("POST", HOOKS, json={"endpointUrl": endpoint_url, "topics": list(topics)})
        if not made.get("id") or not isinstance(made.get("secret"), str):
            raise SquarespaceResponseError("POST webhook_subscriptions: no subscription id or secret returned")
        return made

    def update_subscription(self, subscription_id: str, *, endpoint_url: str | None = None,
                            topics: Iterable[str] | None = None) -> Record:  # fmt: skip
        body: dict[str, Any] = {}
        if endpoint_url is not None:
            body["endpointUrl"] = endpoint_url
        if topics is not None:
            body["topics"] = list(topics)
        return self._object("POST", f"{HOOKS}/{_id(subscription_id)}", json=body)

    def delete_subscription(self, subscription_id: str) -> None:
        self.send("DELETE", f"{HOOKS}/{_id(subscription_id)}", headers=self._headers)

    def test_notification(self, subscription_id: str, topic: str) -> int:
        """Squarespace sends one test notification of `topic`; the status code the endpoint answered."""
        body = self._object("POST", f"{HOOKS}/{_id(subscription_id)}/actions/sendTestNotification",
                            json={"topic": topic})  # fmt: skip
        status = body.get("statusCode")
        if isinstance(status, bool) or not isinstance(status, int):
            raise SquarespaceResponseError("sendTestNotification: no statusCode returned")
        return status

    def rotate_secret(self, subscription_id: str) -> str:
        """A new secret for the subscription (the old one stops signing at once)."""
        body = self._object("POST", f"{HOOKS}/{_id(subscription_id)}/actions/rotateSecret")
        secret = body.get("secret")
        if not isinstance(secret, str) or not secret:
            raise SquarespaceResponseError("rotateSecret: no secret returned")
        return secret


def _id(value: str) -> str:
    """An id as a path segment: Squarespace ids are hex/UUID-like; anything that could leave the path is refused."""
    text = str(value).strip()
    if not text or any(c in text for c in "/?#%\\ "):
        raise ValueError(f"not a Squarespace id: {text[:40]!r}")
    return text


__all__ = ["API_ROOT", "PAGE_SIZE", "SquarespaceClient", "iso", "parse_time"]
