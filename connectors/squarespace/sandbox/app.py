"""The Squarespace sandbox app: the Commerce API routes, webhook notifications, control routes, command line."""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from connectors.sandboxkit import (
    ALL_METHODS,
    Control,
    Fault,
    Pipeline,
    Sandbox,
    WebhookSender,
    add_headers,
    decode_cursor,
    encode_cursor,
    hmac_signer,
    request_fields,
    sandbox_app,
    secret_equals,
)
from connectors.squarespace.sandbox.store import (
    ORDER_UPDATES,
    SquarespaceError,
    Store,
    Subscription,
    invalid,
    new_id,
    not_found,
)

SIGNATURE = "Squarespace-Signature"
JSON_TYPE = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class SandboxConfig:
    api_key: str = "sq_api_key"
    """A site's API key: the Commerce APIs, not webhook subscriptions."""
    oauth_token: str = "sq_oauth_token"  # noqa: S105 - the sandbox's own token
    """An OAuth access token: everything, webhook subscriptions included."""
    rate_limit: int = 300
    """Requests a minute before 429 (Squarespace: 300, then a minute's cool-down)."""
    page_size: int = 50
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Pauses before each retry of a failed notification (Squarespace retries for up to 48 hours)."""


class SquarespaceSandbox(Sandbox):
    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.config = config
        self.store = Store(clock)
        self.sender = WebhookSender(user_agent="Squarespace/1.0", name="squarespace-webhooks")
        self.calls: deque[float] = deque()
        self.cool_down_until = 0.0
        self.drop_next = 0
        """Notifications to lose (never sent): what a reconciliation poll must repair."""

    def state(self) -> dict[str, Any]:
        return super().state() | {"orders": len(self.store.orders), "products": len(self.store.products),
                                  "profiles": len(self.store.profiles),
                                  "subscriptions": [s.view() for s in self.store.subscriptions.values()]}  # fmt: skip

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        super().reset(options)
        self.store = Store(self.clock)
        self.sender.reset()
        self.calls.clear()
        self.cool_down_until = 0.0
        self.drop_next = 0

    async def aclose(self) -> None:
        await self.sender.aclose()

    # -- notifications -------------------------------------------------------------------------------

    def notification(self, sub: Subscription, topic: str, data: Mapping[str, Any] | None) -> bytes:
        body: dict[str, Any] = {"id": new_id(), "websiteId": self.store.website_id, "subscriptionId": sub.id,
                                "topic": topic, "createdOn": self.store.now()}  # fmt: skip
        if data is not None:
            body["data"] = dict(data)
        return json.dumps(body, separators=(",", ":")).encode()

    def notify(self, topic: str, data: Mapping[str, Any] | None = None) -> int:
        """Queue a notification of `topic` to every subscription of it; how many were queued."""
        queued = 0
        for sub in self.store.listeners(topic):
            if self.drop_next > 0:
                self.drop_next -= 1
                continue
            body = self.notification(sub, topic, data)
            self.sender.schedule(functools.partial(self._deliver, sub, body, 0))
            queued += 1
        return queued

    async def _deliver(self, sub: Subscription, body: bytes, attempt: int) -> None:
        """One delivery, signed with the subscription's secret as it is now; a failure retried later."""
        if sub.id not in self.store.subscriptions:
            return  # deleted meanwhile
        signer = hmac_signer(SIGNATURE, bytes.fromhex(sub.secret), encoding="hex")
        fields = {"subscription_id": sub.id, "attempt": attempt + 1}
        delivery = await self.sender.send(sub.endpoint_url, body, signer=signer, key=sub.id, headers=JSON_TYPE,
                                          on_result=lambda d: fields)  # fmt: skip
        if not delivery.success and attempt < len(self.config.retry_delays):
            loop = asyncio.get_running_loop()
            delay = self.config.retry_delays[attempt]
            loop.call_later(delay, self.sender.schedule, functools.partial(self._deliver, sub, body, attempt + 1))

    async def test_notification(self, sub: Subscription, topic: str) -> int:
        """Sent at once, never retried; the endpoint's status code (0 when it did not answer)."""
        data = {"orderId": new_id(), "update": "FULFILLED"} if topic.startswith("order.") else None
        body = self.notification(sub, topic, data)
        signer = hmac_signer(SIGNATURE, bytes.fromhex(sub.secret), encoding="hex")
        fields = {"subscription_id": sub.id, "attempt": 1, "test": True}
        delivery = await self.sender.send(sub.endpoint_url, body, signer=signer, headers=JSON_TYPE,
                                          on_result=lambda d: fields)  # fmt: skip
        return delivery.status or 0

    # -- pipeline steps --------------------------------------------------------------------------------

    async def rate_limit(self, request: Request) -> Response | None:
        now = self.clock()
        if now < self.cool_down_until:
            wait = int(self.cool_down_until - now) + 1
            add_headers(request, {"Retry-After": str(wait)})
            raise SquarespaceError(429, "RATE_LIMIT_ERROR", "too many requests; wait a minute")
        while self.calls and self.calls[0] <= now - 60:
            self.calls.popleft()
        if len(self.calls) >= self.config.rate_limit:
            self.cool_down_until = now + 60
            add_headers(request, {"Retry-After": "60"})
            raise SquarespaceError(429, "RATE_LIMIT_ERROR", "too many requests; wait a minute")
        self.calls.append(now)
        return None

    def authorise(self, request: Request, *, oauth_only: bool = False) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SquarespaceError(401, "AUTHORIZATION_ERROR", "missing Authorization: Bearer token")
        if secret_equals(token, self.config.oauth_token):
            return
        if secret_equals(token, self.config.api_key):
            if oauth_only:
                raise SquarespaceError(403, "AUTHORIZATION_ERROR", "webhook subscriptions need an OAuth token")
            return
        raise SquarespaceError(401, "AUTHORIZATION_ERROR", "the API key or token is not valid")


def _render(request: Request, exc: SquarespaceError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status)


def _paged(sb: SquarespaceSandbox, request: Request, rows: list[dict[str, Any]], key: str,
           filters: Mapping[str, Any]) -> Response:  # fmt: skip
    """A cursor page: the cursor holds the position and the first request's filters (a cursor request may
    carry no other parameter)."""
    query = request.query_params
    cursor = query.get("cursor")
    position = 0
    if cursor is not None:
        if len(query) > 1:
            raise invalid("cursor cannot be combined with other query parameters")
        try:
            state = decode_cursor(cursor)
            position, wanted = int(state["at"]), state["filters"]
        except (ValueError, KeyError, TypeError):
            raise invalid("cursor is not valid") from None
        if wanted != dict(filters):
            raise invalid("cursor is not valid")
    size = sb.config.page_size
    page = rows[position:position + size]
    more = position + size < len(rows)
    next_cursor = encode_cursor({"at": position + size, "filters": dict(filters)}) if more else None
    base = str(request.url.replace(query=""))
    pagination = {"hasNextPage": more, "nextPageCursor": next_cursor,
                  "nextPageUrl": f"{base}?cursor={next_cursor}" if next_cursor else None}  # fmt: skip
    return JSONResponse({key: page, "pagination": pagination})


def _cursor_filters(request: Request) -> dict[str, Any] | None:
    """The filters a cursor carries, when the request has one (None: read them from the query)."""
    cursor = request.query_params.get("cursor")
    if cursor is None:
        return None
    try:
        filters = decode_cursor(cursor)["filters"]
    except (ValueError, KeyError, TypeError):
        raise invalid("cursor is not valid") from None
    return dict(filters) if isinstance(filters, dict) else {}


class CommerceAPI:
    def __init__(self, sb: SquarespaceSandbox) -> None:
        self.sb = sb
        self.pipeline = Pipeline([sb.counters.step, self._auth, sb.rate_limit, sb.faults.step(self._fault)],
                                 {SquarespaceError: _render, ValueError: self._bad})  # fmt: skip

    async def _auth(self, request: Request) -> Response | None:
        self.sb.authorise(request, oauth_only=request.url.path.startswith("/1.0/webhook_subscriptions"))
        return None

    def _fault(self, fault: Fault) -> Response:
        status = fault.status or 500
        kind = "RATE_LIMIT_ERROR" if status == 429 else "INTERNAL_ERROR" if status >= 500 else "INVALID_REQUEST_ERROR"
        return JSONResponse(SquarespaceError(status, kind, "sandbox fault").body(), status_code=status)

    @staticmethod
    def _bad(request: Request, exc: Exception) -> Response:
        return _render(request, invalid(str(exc)))

    def routes(self) -> list[BaseRoute]:
        r = self.pipeline.route
        return [
            r("/1.0/commerce/orders", self.orders),
            r("/1.0/commerce/orders/{id}", self.order),
            r("/1.0/commerce/orders/{id}/fulfillments", self.fulfil, methods=["POST"]),
            r("/1.0/commerce/transactions", self.transactions),
            r("/v2/commerce/products", self.products),
            r("/v2/commerce/products/{ids}", self.products_by_id),
            r("/v2/commerce/products/{id}/variants/{variant}", self.update_variant, methods=["POST"]),
            r("/1.0/commerce/inventory", self.inventory),
            r("/1.0/commerce/inventory/adjustments", self.adjust, methods=["POST"]),
            r("/1.0/commerce/inventory/{ids}", self.inventory_by_id),
            r("/1.0/profiles", self.profiles),
            r("/1.0/profiles/{ids}", self.profiles_by_id),
            r("/1.0/webhook_subscriptions", self.subscriptions, methods=["GET", "POST"]),
            r("/1.0/webhook_subscriptions/{id}", self.subscription, methods=["GET", "POST", "DELETE"]),
            r("/1.0/webhook_subscriptions/{id}/actions/sendTestNotification", self.test, methods=["POST"]),
            r("/1.0/webhook_subscriptions/{id}/actions/rotateSecret", self.rotate, methods=["POST"]),
            r("/{path:path}", self.unknown, methods=list(ALL_METHODS)),
        ]

    async def unknown(self, request: Request) -> Response:
        raise SquarespaceError(404, "NOT_FOUND", f"no route {request.method} {request.url.path}")

    # -- orders ------------------------------------------------------------------------------------

    async def orders(self, request: Request) -> Response:
        filters = _cursor_filters(request)
        if filters is None:
            query = request.query_params
            after, before = query.get("modifiedAfter"), query.get("modifiedBefore")
            if (after is None) != (before is None):
                raise invalid("modifiedAfter and modifiedBefore must be given together")
            status = query.get("fulfillmentStatus")
            if status is not None and status not in ("PENDING", "FULFILLED", "CANCELED"):
                raise invalid("fulfillmentStatus must be PENDING, FULFILLED or CANCELED")
            filters = {"after": _time(after), "before": _time(before), "status": status}
        rows = [o for o in self.sb.store.orders.values()
                if (filters["after"] is None or filters["after"] < o["modifiedOn"] <= filters["before"])
                and (filters["status"] is None or o["fulfillmentStatus"] == filters["status"])]  # fmt: skip
        rows.sort(key=lambda o: (o["modifiedOn"], o["id"]))
        return _paged(self.sb, request, rows, "result", filters)

    async def order(self, request: Request) -> Response:
        return JSONResponse(self.sb.store.order(request.path_params["id"]))

    async def transactions(self, request: Request) -> Response:
        """Transaction documents modified in a window (both bounds optional), oldest first, cursor-paged."""
        filters = _cursor_filters(request)
        if filters is None:
            query = request.query_params
            filters = {"after": _time(query.get("modifiedAfter")), "before": _time(query.get("modifiedBefore"))}
        rows = [d for d in self.sb.store.transactions.values()
                if (filters["after"] is None or filters["after"] < d["modifiedOn"])
                and (filters["before"] is None or d["modifiedOn"] <= filters["before"])]  # fmt: skip
        rows.sort(key=lambda d: (d["modifiedOn"], d["id"]))
        return _paged(self.sb, request, rows, "documents", filters)

    async def fulfil(self, request: Request) -> Response:
        body = await request_fields(request)
        shipments = body.get("shipments") or []
        if not isinstance(shipments, list) or not all(isinstance(s, dict) for s in shipments):
            raise invalid("shipments must be a list of objects")
        order = self.sb.store.fulfil(request.path_params["id"], shipments)
        self.sb.notify("order.update", {"orderId": order["id"], "update": "FULFILLED"})
        return Response(status_code=204)

    # -- products ----------------------------------------------------------------------------------

    async def products(self, request: Request) -> Response:
        filters = _cursor_filters(request)
        if filters is None:
            filters = {"type": request.query_params.get("type")}
        rows = [self.sb.store.product_view(p) for p in self.sb.store.products.values()
                if filters["type"] is None or p["type"] in str(filters["type"]).split(",")]  # fmt: skip
        return _paged(self.sb, request, rows, "products", filters)

    async def products_by_id(self, request: Request) -> Response:
        ids = _ids(request.path_params["ids"])
        found = [self.sb.store.product_view(self.sb.store.products[i]) for i in ids if i in self.sb.store.products]
        return JSONResponse({"products": found})

    async def update_variant(self, request: Request) -> Response:
        """A variant's `sku`, `pricing` or `attributes` (stock goes through the inventory API)."""
        product = self.sb.store.products.get(request.path_params["id"])
        if product is None:
            raise not_found(f"product {request.path_params['id']}")
        variant = next((v for v in product["variants"] if v["id"] == request.path_params["variant"]), None)
        if variant is None:
            raise not_found(f"variant {request.path_params['variant']}")
        body = await request_fields(request)
        unknown = set(body) - {"sku", "pricing", "attributes"}
        if unknown:
            raise invalid(f"unknown or read-only field {sorted(unknown)[0]}")
        if "sku" in body:
            sku = body["sku"]
            if not isinstance(sku, str) or not sku:
                raise invalid("sku must be a non-empty string")
            variant["sku"] = self.sb.store.inventory[variant["id"]]["sku"] = sku
        variant.update({k: v for k, v in body.items() if k in ("pricing", "attributes") and isinstance(v, dict)})
        product["modifiedOn"] = self.sb.store.now()
        return JSONResponse(variant)

    # -- inventory ---------------------------------------------------------------------------------

    async def inventory(self, request: Request) -> Response:
        filters = _cursor_filters(request) or {}
        rows = [dict(item) for item in self.sb.store.inventory.values()]
        return _paged(self.sb, request, rows, "inventory", filters)

    async def inventory_by_id(self, request: Request) -> Response:
        ids = _ids(request.path_params["ids"])
        stock = self.sb.store.inventory
        return JSONResponse({"inventory": [dict(stock[i]) for i in ids if i in stock]})

    async def adjust(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > 64:
            raise invalid("an Idempotency-Key header of 1 to 64 characters is required")
        raw = await request.body()
        body = await request_fields(request)
        self.sb.store.adjust(key, hashlib.sha256(raw).hexdigest(), body)
        return Response(status_code=204)

    # -- profiles ----------------------------------------------------------------------------------

    async def profiles(self, request: Request) -> Response:
        filters = _cursor_filters(request)
        if filters is None:
            filters = {}
            for part in (request.query_params.get("filter") or "").split(";"):
                if not part:
                    continue
                name, _, value = part.partition(",")
                if name not in ("isCustomer", "hasAccount", "email"):
                    raise invalid(f"unknown filter {name}")
                filters[name] = value
        rows = [p for p in self.sb.store.profiles.values() if _profile_matches(p, filters)]
        return _paged(self.sb, request, rows, "profiles", filters)

    async def profiles_by_id(self, request: Request) -> Response:
        ids = _ids(request.path_params["ids"])
        return JSONResponse({"profiles": [self.sb.store.profiles[i] for i in ids if i in self.sb.store.profiles]})

    # -- webhook subscriptions ---------------------------------------------------------------------

    async def subscriptions(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"webhookSubscriptions": [s.view() for s in self.sb.store.subscriptions.values()]})
        body = await request_fields(request)
        sub = self.sb.store.subscribe(body.get("endpointUrl"), body.get("topics"))
        return JSONResponse(sub.view(with_secret=True), status_code=201)

    async def subscription(self, request: Request) -> Response:
        sub_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse(self.sb.store.subscription(sub_id).view())
        if request.method == "DELETE":
            self.sb.store.subscription(sub_id)
            del self.sb.store.subscriptions[sub_id]
            return Response(status_code=204)
        return JSONResponse(self.sb.store.update_subscription(sub_id, await request_fields(request)).view())

    async def test(self, request: Request) -> Response:
        sub = self.sb.store.subscription(request.path_params["id"])
        topic = (await request_fields(request)).get("topic")
        if topic not in sub.topics:
            raise invalid("topic must be one of the subscription's topics")
        return JSONResponse({"statusCode": await self.sb.test_notification(sub, str(topic))})

    async def rotate(self, request: Request) -> Response:
        return JSONResponse({"secret": self.sb.store.rotate(request.path_params["id"])})


def _ids(text: str) -> list[str]:
    ids = [i for i in text.split(",") if i]
    if not ids or len(ids) > 50:
        raise invalid("give 1 to 50 comma-separated ids")
    return ids


def _time(value: str | None) -> str | None:
    """A filter time as the store's timestamps compare (ISO 8601 UTC, milliseconds, `Z`)."""
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{value!r} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        raise invalid(f"{value!r} has no time zone")
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _profile_matches(profile: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    if "email" in filters and str(profile["email"]).casefold() != str(filters["email"]).casefold():
        return False
    for name in ("isCustomer", "hasAccount"):
        if name in filters and bool(profile.get(name)) != (str(filters[name]).lower() == "true"):
            return False
    return True


def control_routes(sb: SquarespaceSandbox) -> Control:
    control = Control(sb, errors={SquarespaceError: _render})
    control.deliveries(sb.sender, subscription_id=str)

    async def place_orders(request: Request) -> Response:
        """{"count", "seed", "email", "skus", "promo": {"code", "percent"}, "tax_rate", "payment": {"provider",
        "card"}}: checkouts, each notified (`order.create`)."""
        body = await request_fields(request)
        count = int(body.get("count", 1))
        if not 1 <= count <= 1000:
            raise invalid("count must be 1..1000")
        rng = random.Random(body.get("seed"))  # noqa: S311 - sample data, not secrets
        skus = body.get("skus")
        promo, payment = body.get("promo"), body.get("payment")
        if promo is not None and not isinstance(promo, dict):
            raise invalid("promo must be an object {code, percent}")
        if payment is not None and not (isinstance(payment, dict) and payment.get("provider")):
            raise invalid("payment must be an object {provider, card}")
        try:
            rate = Decimal(str(body.get("tax_rate", 21)))
        except ArithmeticError:
            raise invalid("tax_rate must be a number") from None
        placed = [sb.store.place_order(rng, email=body.get("email"), skus=list(skus) if skus else None, promo=promo,
                                       tax_rate=rate, payment=payment) for _ in range(count)]  # fmt: skip
        for order in placed:
            sb.notify("order.create", {"orderId": order["id"]})
        return JSONResponse({"orders": [o["id"] for o in placed], "numbers": [o["orderNumber"] for o in placed]})

    async def update_order(request: Request) -> Response:
        """{"update"}: a change made in the admin (FULFILLED, CANCELED, …), notified (`order.update`)."""
        body = await request_fields(request)
        update = str(body.get("update") or "")
        if update not in ORDER_UPDATES:
            raise invalid(f"update must be one of {', '.join(ORDER_UPDATES)}")
        order = sb.store.touch(request.path_params["id"], update)
        sb.notify("order.update", {"orderId": order["id"], "update": update})
        return JSONResponse(order)

    async def seed_products(request: Request) -> Response:
        """{"skus", "quantity", "price"}: one product per SKU (a variant each)."""
        body = await request_fields(request)
        skus = body.get("skus")
        if not isinstance(skus, list) or not skus:
            raise invalid("skus must be a non-empty list")
        quantity, price = int(body.get("quantity", 10)), str(body.get("price", "12.50"))
        made = [sb.store.add_product(f"Product {s}", [str(s)], price=price, quantity=quantity)["id"] for s in skus]
        return JSONResponse({"products": made})

    async def drop(request: Request) -> Response:
        """{"count"}: the next notifications are lost (never sent, never retried)."""
        sb.drop_next = int((await request_fields(request)).get("count", 1))
        return JSONResponse({"dropping": sb.drop_next})

    async def uninstall(request: Request) -> Response:
        """The site owner removes the extension: `extension.uninstall` to every subscription of it."""
        return JSONResponse({"queued": sb.notify("extension.uninstall", None)})

    async def secret(request: Request) -> Response:
        """GET: a subscription's current secret (Squarespace never shows it again). POST {"secret"}: set it
        (hex), as if the operator had configured the one Squarespace issued."""
        sub = sb.store.subscription(request.path_params["id"])
        if request.method == "POST":
            given = str((await request_fields(request)).get("secret") or "")
            bytes.fromhex(given)  # ValueError: 400
            sub.secret = given
        return JSONResponse({"secret": sub.secret})

    control.route("/orders", place_orders)
    control.route("/orders/{id}/update", update_order)
    control.route("/products/seed", seed_products)
    control.route("/notifications/drop", drop)
    control.route("/uninstall", uninstall)
    control.route("/subscriptions/{id}/secret", secret, methods=["GET", "POST"])
    return control


def create_sandbox(config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time,
                   **overrides: Any) -> Starlette:  # fmt: skip
    """The sandbox app. `overrides` set SandboxConfig fields (`api_key=…`, `rate_limit=…`)."""
    sandbox = SquarespaceSandbox(replace(config or SandboxConfig(), **overrides), clock)
    return sandbox_app(sandbox, [control_routes(sandbox).mount(), *CommerceAPI(sandbox).routes()])


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m connectors.squarespace.sandbox",
                                     description="An in-memory Squarespace: the Commerce APIs and webhook "
                                                 "notifications the connector uses.")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--api-key", default=SandboxConfig.api_key)
    parser.add_argument("--oauth-token", default=SandboxConfig.oauth_token)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run(create_sandbox(api_key=args.api_key, oauth_token=args.oauth_token), host=args.host, port=args.port,
                log_level=args.log_level)  # fmt: skip
