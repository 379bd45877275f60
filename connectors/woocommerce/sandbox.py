"""An in-memory WooCommerce: the REST API v3 the connector uses, and webhooks sent as WooCommerce sends them.

    python -m connectors.woocommerce.sandbox --port 8081 --consumer-key ck_x --consumer-secret cs_y

What it reproduces (PLATFORMS.md §1):

* `/wp-json/wc/v3/` orders (list, get, update), products (simple and variable; list, get, create, update,
  delete, batch), variations (same), customers (list, get, create, update) and webhooks (list, get,
  create, update, delete with `force=true`). JSON in WooCommerce's key order, encoded as PHP encodes it
  (`\\/`, `\\uXXXX`); money as strings, line `price` a float; `date_*` shop-local, `*_gmt` UTC.
* Auth: HTTP Basic with the consumer key and secret, or `?consumer_key=&consumer_secret=` — over plain
  HTTP too (real WooCommerce wants OAuth 1.0a there). Missing or unknown key → 401
  `woocommerce_rest_cannot_view` (`_create`, `_edit`, `_delete` by method); known key with a wrong secret
  → 401 `woocommerce_rest_authentication_error`; a read-only key asked to write → 401.
* Lists: `per_page` (default 10, 1-100, else 400 `rest_invalid_param`), `page`, `X-WP-Total`,
  `X-WP-TotalPages`, `Link` rel prev/next; filters `sku` (comma-separated; variations included),
  `email`, `role` (customers default to role "customer"), `status`, `after`/`before`,
  `modified_after`/`modified_before` with `dates_are_gmt`, `include`, `search`, `orderby`, `order`.
* Errors `{"code", "message", "data": {"status"}}` with WooCommerce's codes: `..._shop_order_invalid_id`,
  `..._product_invalid_id`, `product_invalid_sku` (duplicate SKU; SKUs and e-mails compare
  case-insensitively, as MySQL does), `registration-error-email-exists`, `rest_invalid_param`,
  `rest_no_route`, `woocommerce_rest_trash_not_supported` (501), batches over 100 → 413.
* Webhooks: see sandbox_webhooks.py. Checkout orders also fire `order.updated` (payment completion saves
  the order again) and `product.updated` for the stock they reduce [U: both as observed, not from code].

Sandbox-only control routes (no auth; bind to localhost): `POST /sandbox/orders {"count", "seed",
"status"}`, `POST /sandbox/products/seed`, `GET /sandbox/deliveries?webhook_id=&min=&timeout=` (waits
up to `timeout` s for `min` entries), `GET /sandbox/state`, `POST /sandbox/reset`, `POST /sandbox/fail
{"status": 503, "times": 1, "retry_after": 2}` (the next API requests fail so).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import json
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connectors.woocommerce import sandbox_seed
from connectors.woocommerce.sandbox_query import (
    common_filters,
    ids,
    page_of,
    sku_filter,
    sort_rows,
    status_filter,
    wc_response,
)
from connectors.woocommerce.sandbox_store import ORDER_STATUSES, Row, ShopSettings, Store, WCError, invalid_param
from connectors.woocommerce.sandbox_webhooks import Deliverer, state_of

Handler = Callable[["WooCommerceSandbox", Request, dict[str, str], Row], Awaitable[Response]]


@dataclass
class SandboxConfig:
    consumer_key: str = "ck_sandbox"
    consumer_secret: str = field(default="cs_sandbox", repr=False)
    permissions: str = "read_write"
    """"read", "write" or "read_write", as on a WooCommerce REST key."""
    site_url: str | None = None
    """Home URL with trailing slash (X-WC-Webhook-Source, `_links`); None: the URL the sandbox is reached on."""
    shop: ShopSettings = field(default_factory=ShopSettings)
    checkout_update: bool = True
    delivery_timeout: float = 60.0
    ping_timeout: float = 5.0
    queue_size: int = 10_000
    seed_products: bool = False


class WooCommerceSandbox:
    """State behind the routes; `app.state.sandbox` in tests."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.store = Store(config.shop, clock)
        if config.site_url:
            self.store.site_url = config.site_url.rstrip("/") + "/"
        agent = f"WooCommerce/{config.shop.wc_version} Hookshot (WordPress/{config.shop.wp_version})"
        self.deliverer = Deliverer(self.store, user_agent=agent, salt=secrets.token_bytes(32),
                                   timeout=config.delivery_timeout, ping_timeout=config.ping_timeout,
                                   queue_size=config.queue_size, clock=clock)  # fmt: skip
        self.faults: list[tuple[int, float | None]] = []
        self.requests = 0
        if config.seed_products:
            sandbox_seed.seed_products(self.store)

    def reset(self) -> None:
        self.deliverer.reset()
        self.store.reset()
        self.faults.clear()
        self.requests = 0


def wc_error(error: WCError) -> Response:
    return wc_response(error.body(), error.status)


# -- auth ---------------------------------------------------------------------------------------------------

_DENIED = {
    "GET": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "POST": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "PUT": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "DELETE": ("woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource."),
}


def _credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        with contextlib.suppress(ValueError):
            key, sep, secret = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
            if sep:
                return key, secret
    query_key, query_secret = request.query_params.get("consumer_key"), request.query_params.get("consumer_secret")
    return (query_key, query_secret) if query_key and query_secret else None


def authenticate(sb: WooCommerceSandbox, request: Request, collection: bool) -> None:
    given = _credentials(request)
    cfg = sb.config
    if given is None or not hmac.compare_digest(given[0].encode(), cfg.consumer_key.encode()):
        method = "POST" if request.method == "POST" and collection else request.method
        code, message = _DENIED.get(method, _DENIED["PUT"])
        if method == "GET" and collection:
            message = "Sorry, you cannot list resources."
        raise WCError(401, code, message)
    if not hmac.compare_digest(given[1].encode(), cfg.consumer_secret.encode()):
        raise WCError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
    need = "read" if request.method in ("GET", "HEAD") else "write"
    if need not in cfg.permissions.split("_"):
        raise WCError(401, "woocommerce_rest_authentication_error",
                      f"The API key provided does not have {need} permissions.")  # fmt: skip


# -- resources -------------------------------------------------------------------------------------------------


async def list_orders(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    rows = list(sb.store.orders.values())
    statuses = status_filter(request, (*ORDER_STATUSES, "trash"), "any")
    rows = [r for r in rows if (r["status"] in statuses if statuses else r["status"] != "trash")]
    if (customer := request.query_params.get("customer")) is not None:
        rows = [r for r in rows if str(r["customer_id"]) == customer.strip()]
    if search := request.query_params.get("search", "").casefold():
        rows = [r for r in rows if search in " ".join(map(str, r["billing"].values())).casefold()]
    rows = sort_rows(request, common_filters(request, rows, sb.store.tz), "date", "desc")
    return page_of(request, rows, sb.store.order_json, sb.store.site_url)


def _product_rows(sb: WooCommerceSandbox, request: Request, rows: list[Row]) -> list[Row]:
    statuses = status_filter(request, ("draft", "pending", "private", "publish", "trash"), "any")
    rows = [r for r in rows if (r["status"] in statuses if statuses else r["status"] != "trash")]
    if (skus := sku_filter(request)) is not None:
        rows = [r for r in rows if r["sku"] and r["sku"].casefold() in skus]
    for name in ("type", "stock_status", "tax_class"):
        if (value := request.query_params.get(name)) is not None:
            rows = [r for r in rows if str(r[name]) == value]
    if search := request.query_params.get("search", "").casefold():
        rows = [r for r in rows if search in r["name"].casefold()]
    return common_filters(request, rows, sb.store.tz)


async def list_products(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    with_variations = sku_filter(request) is not None  # WooCommerce searches variations too when `sku` is given
    rows = [r for r in sb.store.products.values() if with_variations or r["type"] != "variation"]
    if parents := ids(request, "parent"):
        rows = [r for r in rows if r["parent_id"] in parents]
    rows = sort_rows(request, _product_rows(sb, request, rows), "date", "desc")
    return page_of(request, rows, sb.store.product_json, sb.store.site_url)


async def list_variations(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    parent = sb.store.product(int(p["pid"]), variation_ok=False)
    rows = _product_rows(sb, request, sb.store.children(parent["id"]))
    return page_of(request, sort_rows(request, rows, "menu_order", "asc"), sb.store.variation_json, sb.store.site_url)


async def list_customers(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    rows = list(sb.store.customers.values())
    role = request.query_params.get("role", "customer")
    if role != "all":
        rows = [r for r in rows if r["role"] == role]
    if email := request.query_params.get("email", "").strip().casefold():
        rows = [r for r in rows if r["email"].casefold() == email]
    if search := request.query_params.get("search", "").casefold():
        rows = [r for r in rows if search in f"{r['email']} {r['first_name']} {r['last_name']}".casefold()]
    rows = sort_rows(request, common_filters(request, rows, sb.store.tz), "name", "asc")
    return page_of(request, rows, sb.store.customer_json, sb.store.site_url)


async def list_webhooks(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    statuses = status_filter(request, ("active", "paused", "disabled"), "all")
    rows = [r for r in sb.store.webhooks.values() if statuses is None or r["status"] in statuses]
    if search := request.query_params.get("search", "").casefold():
        rows = [r for r in rows if search in r["name"].casefold()]
    rows = sort_rows(request, common_filters(request, rows, sb.store.tz), "date", "desc")
    return page_of(request, rows, sb.store.webhook_json, sb.store.site_url)


def _created(sb: WooCommerceSandbox, data: Row, path: str) -> Response:
    return wc_response(data, 201, {"Location": f"{sb.store.site_url}wp-json/wc/v3/{path}/{data['id']}"})


def _forced(request: Request) -> bool:
    return request.query_params.get("force", "").lower() in ("1", "true")


async def get_order(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.order_json(sb.store.order(int(p["id"]))))


async def update_order(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.order_json(sb.store.update_order(int(p["id"]), body)))


async def get_product(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.product_json(sb.store.product(int(p["id"]))))


async def create_product(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return _created(sb, sb.store.product_json(sb.store.create_product(body)), "products")


async def update_product(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.product_json(sb.store.update_product(int(p["id"]), body)))


async def delete_product(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    before = sb.store.product_json(sb.store.product(int(p["id"])))
    row = sb.store.delete_product(int(p["id"]), force=_forced(request))
    return wc_response(before if _forced(request) else sb.store.product_json(row))


async def get_variation(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.variation_json(sb.store.variation(int(p["pid"]), int(p["id"]))))


async def create_variation(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    row = sb.store.create_variation(int(p["pid"]), body)
    return _created(sb, sb.store.variation_json(row), f"products/{p['pid']}/variations")


async def update_variation(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.variation_json(sb.store.update_variation(int(p["pid"]), int(p["id"]), body)))


async def delete_variation(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    before = sb.store.variation_json(sb.store.variation(int(p["pid"]), int(p["id"])))
    sb.store.delete_product(int(p["id"]), force=True, variation_of=int(p["pid"]))
    return wc_response(before)


async def batch(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    """`POST products/batch` and `products/{id}/variations/batch`: per-item results, per-item errors."""
    store, pid = sb.store, int(p["pid"]) if "pid" in p else None
    parts = {k: body.get(k) or [] for k in ("create", "update", "delete")}
    if not all(isinstance(v, list) for v in parts.values()):
        raise invalid_param({k: f"{k} is not of type array." for k, v in parts.items() if not isinstance(v, list)})
    if sum(map(len, parts.values())) > 100:
        raise WCError(413, "woocommerce_rest_request_entity_too_large",
                      "Unable to accept more than 100 items for this request.")  # fmt: skip
    render = store.variation_json if pid is not None else store.product_json
    out: dict[str, list[Row]] = {}
    actions: dict[str, Callable[[Any], Row]] = {
        "create": lambda item: store.create_variation(pid, item) if pid is not None else store.create_product(item),
        "update": lambda item: (store.update_variation(pid, int(item.get("id", 0)), item) if pid is not None
                                else store.update_product(int(item.get("id", 0)), item)),
        "delete": lambda item: store.delete_product(int(item), force=True, variation_of=pid),
    }  # fmt: skip
    for name, items in parts.items():
        results = out.setdefault(name, [])
        for item in items:
            try:
                if name != "delete" and not isinstance(item, dict):
                    raise invalid_param({name: f"{name}[0] is not of type object."})
                results.append(render(actions[name](item)))
            except (WCError, ValueError, TypeError) as exc:
                error = exc if isinstance(exc, WCError) else WCError(400, "rest_invalid_param", str(exc))
                ident = item if name == "delete" else (item.get("id", 0) if isinstance(item, dict) else 0)
                results.append({"id": ident, "error": error.body()})
    return wc_response({k: v for k, v in out.items() if parts[k]})


async def get_customer(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.customer_json(sb.store.customer(int(p["id"]))))


async def create_customer(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return _created(sb, sb.store.customer_json(sb.store.create_customer(body)), "customers")


async def update_customer(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.customer_json(sb.store.update_customer(int(p["id"]), body)))


async def get_webhook(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    return wc_response(sb.store.webhook_json(sb.store.webhook(int(p["id"]))))


async def create_webhook(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    row = sb.store.create_webhook(body)
    await sb.deliverer.ping(row)  # WooCommerce pings before answering, and answers 201 whatever the ping got
    return _created(sb, sb.store.webhook_json(row), "webhooks")


async def update_webhook(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    row = sb.store.update_webhook(int(p["id"]), body)
    if row["status"] == "active" and row["pending_delivery"]:
        await sb.deliverer.ping(row)
    return wc_response(sb.store.webhook_json(row))


async def delete_webhook(sb: WooCommerceSandbox, request: Request, p: dict[str, str], body: Row) -> Response:
    row = sb.store.webhook(int(p["id"]))
    if not _forced(request):
        raise WCError(501, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.")
    del sb.store.webhooks[row["id"]]
    return wc_response(sb.store.webhook_json(row))


_ITEM = r"(?P<id>\d+)"
_WRITE = ("POST", "PUT", "PATCH")
ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], Handler, bool]] = [
    (methods, re.compile(f"wc/v3/{pattern}"), handler, collection)
    for methods, pattern, handler, collection in [
        (("GET",), "orders", list_orders, True),
        (("GET",), f"orders/{_ITEM}", get_order, False),
        (_WRITE, f"orders/{_ITEM}", update_order, False),
        (("GET",), "products", list_products, True),
        (("POST",), "products", create_product, True),
        (("POST",), "products/batch", batch, True),
        (("GET",), f"products/{_ITEM}", get_product, False),
        (_WRITE, f"products/{_ITEM}", update_product, False),
        (("DELETE",), f"products/{_ITEM}", delete_product, False),
        (("GET",), r"products/(?P<pid>\d+)/variations", list_variations, True),
        (("POST",), r"products/(?P<pid>\d+)/variations", create_variation, True),
        (("POST",), r"products/(?P<pid>\d+)/variations/batch", batch, True),
        (("GET",), rf"products/(?P<pid>\d+)/variations/{_ITEM}", get_variation, False),
        (_WRITE, rf"products/(?P<pid>\d+)/variations/{_ITEM}", update_variation, False),
        (("DELETE",), rf"products/(?P<pid>\d+)/variations/{_ITEM}", delete_variation, False),
        (("GET",), "customers", list_customers, True),
        (("POST",), "customers", create_customer, True),
        (("GET",), f"customers/{_ITEM}", get_customer, False),
        (_WRITE, f"customers/{_ITEM}", update_customer, False),
        (("GET",), "webhooks", list_webhooks, True),
        (("POST",), "webhooks", create_webhook, True),
        (("GET",), f"webhooks/{_ITEM}", get_webhook, False),
        (_WRITE, f"webhooks/{_ITEM}", update_webhook, False),
        (("DELETE",), f"webhooks/{_ITEM}", delete_webhook, False),
    ]
]


async def _body(request: Request) -> Row:
    raw = await request.body()
    if not raw.strip():
        return {}
    if raw.lstrip()[:1] in (b"{", b"["):
        try:
            data = json.loads(raw)
        except ValueError:
            raise WCError(400, "rest_invalid_json", "Invalid JSON body passed.") from None
        return data if isinstance(data, dict) else {}
    return dict(parse_qsl(raw.decode("utf-8", "replace")))


def _fault(sb: WooCommerceSandbox) -> Response | None:
    if not sb.faults:
        return None
    status, retry_after = sb.faults.pop(0)
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
    if status == 503:  # WordPress in maintenance mode answers HTML
        return HTMLResponse("<!DOCTYPE html><html><body><p>Briefly unavailable for scheduled maintenance. "
                            "Check back in a minute.</p></body></html>", 503, headers)  # fmt: skip
    if status == 429:
        return wc_response({"code": "rest_too_many_requests", "message": "Too many requests.",
                            "data": {"status": 429}}, 429, headers)  # fmt: skip
    critical = "<p>There has been a critical error on this website.</p>"
    body = {"code": "internal_server_error", "message": critical, "data": {"status": status}, "additional_errors": []}
    return wc_response(body, status, headers)


async def _api(request: Request) -> Response:
    sb: WooCommerceSandbox = request.app.state.sandbox
    if sb.config.site_url is None:
        sb.store.site_url = str(request.base_url)
    sb.requests += 1
    path = request.path_params["path"].strip("/")
    method = "PUT" if request.method == "PATCH" else request.method
    try:
        for methods, pattern, handler, collection in ROUTES:
            match = pattern.fullmatch(path)
            if match and request.method in methods:
                authenticate(sb, request, collection and method != "PUT")
                if (fault := _fault(sb)) is not None:
                    return fault
                return await handler(sb, request, match.groupdict(), await _body(request))
        raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")
    except WCError as exc:
        return wc_error(exc)


# -- sandbox control ---------------------------------------------------------------------------------------------


async def _control(request: Request) -> Response:
    sb: WooCommerceSandbox = request.app.state.sandbox
    if sb.config.site_url is None:
        sb.store.site_url = str(request.base_url)
    action = request.path_params["action"].strip("/")
    try:
        body = await _body(request) if request.method == "POST" else {}
    except WCError as exc:
        return wc_error(exc)
    if action == "deliveries" and request.method == "GET":
        try:
            hook = request.query_params.get("webhook_id")
            webhook_id = int(hook) if hook else None
            wanted = int(request.query_params.get("min") or 0)
            timeout = min(float(request.query_params.get("timeout") or 0), 30.0)
        except ValueError:
            return JSONResponse({"error": "webhook_id and min are integers, timeout a number of seconds"}, 400)
        await sb.deliverer.wait(lambda: len(sb.deliverer.entries(webhook_id)) >= wanted, timeout)
        return JSONResponse({"deliveries": sb.deliverer.entries(webhook_id), "queued": sb.deliverer.queued})
    if action == "state" and request.method == "GET":
        store = sb.store
        return JSONResponse({"site_url": store.site_url, "products": len(store.products), "orders": len(store.orders),
                             "customers": len(store.customers), "requests": sb.requests,
                             "webhooks": [state_of(h) for h in store.webhooks.values()],
                             "deliveries": sb.deliverer.sent, "queued": sb.deliverer.queued})  # fmt: skip
    if request.method != "POST":
        return JSONResponse({"error": f"{request.method} /sandbox/{action} is not a sandbox route"}, 404)
    if action == "reset":
        sb.reset()
        return JSONResponse({"reset": True})
    if action == "products/seed":
        return JSONResponse({"products": sandbox_seed.seed_products(sb.store)})
    if action == "orders":
        count, status = int(body.get("count", 1)), str(body.get("status", "processing"))
        if not 1 <= count <= 1000 or status not in ORDER_STATUSES:
            return JSONResponse({"error": "count must be 1..1000 and status a WooCommerce order status"}, 400)
        rng = random.Random(body.get("seed"))  # noqa: S311 - sample data, not secrets
        placed = [sandbox_seed.place_order(sb.store, rng, status=status, checkout_update=sb.config.checkout_update)
                  for _ in range(count)]  # fmt: skip
        return JSONResponse({"orders": [o["id"] for o in placed]})
    if action == "fail":
        retry_after = body.get("retry_after")
        fault = (int(body.get("status", 503)), None if retry_after is None else float(retry_after))
        sb.faults.extend([fault] * int(body.get("times", 1)))
        return JSONResponse({"pending_faults": len(sb.faults)})
    return JSONResponse({"error": f"unknown sandbox route /sandbox/{action}"}, 404)


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app. `overrides` set SandboxConfig fields (`consumer_key=…`, `site_url=…`, …)."""
    cfg = replace(config or SandboxConfig(), **overrides)
    sandbox = WooCommerceSandbox(cfg, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sandbox.deliverer.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        routes=[Route("/wp-json/{path:path}", _api, methods=methods), Route("/sandbox/{action:path}", _control,
                                                                            methods=["GET", "POST"])],
        lifespan=lifespan,
    )  # fmt: skip
    app.state.sandbox = sandbox
    return app


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m connectors.woocommerce.sandbox",
                                     description=(__doc__ or "").split("\n")[0])  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--consumer-key", default=SandboxConfig.consumer_key)
    parser.add_argument("--consumer-secret", default="cs_sandbox")
    parser.add_argument("--permissions", choices=["read", "write", "read_write"], default="read_write")
    parser.add_argument("--site-url", default=None, help="home URL for X-WC-Webhook-Source and _links")
    parser.add_argument("--timezone", default=ShopSettings.timezone)
    parser.add_argument("--seed-products", action="store_true", help="create the sample catalogue at start")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    app = create_sandbox(consumer_key=args.consumer_key, consumer_secret=args.consumer_secret,
                         permissions=args.permissions, site_url=args.site_url,
                         shop=ShopSettings(timezone=args.timezone), seed_products=args.seed_products)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["SandboxConfig", "WooCommerceSandbox", "create_sandbox", "wc_response"]
