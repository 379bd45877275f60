"""The REST API v3 routes of the WooCommerce sandbox: orders, products, variations, customers, webhooks.

Each route counts the request, checks the consumer key (HTTP Basic or `?consumer_key=&consumer_secret=`),
then takes an injected fault, if one is due; an unknown route or method answers 404 `rest_no_route`
(counted too). Errors are WooCommerce's `{"code", "message", "data": {"status"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from connectors.sandboxkit import ALL_METHODS, Fault, Pipeline, basic_credentials, secret_equals
from connectors.sandboxkit.routing import ErrorRenderer
from connectors.woocommerce.sandbox.orders import create_order
from connectors.woocommerce.sandbox.query import (
    common_filters,
    ids,
    page_of,
    sku_filter,
    sort_rows,
    status_filter,
    wc_response,
)
from connectors.woocommerce.sandbox.state import WooCommerceSandbox
from connectors.woocommerce.sandbox.store import ORDER_STATUSES, Row, Store, WCError, invalid_param

PREFIX = "/wp-json/wc/v3"
_WRITE = ("POST", "PUT", "PATCH")
_DENIED = {
    "GET": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "POST": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "PUT": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "DELETE": ("woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource."),
}


def wc_error(request: Request, error: WCError) -> Response:
    return wc_response(error.body(), error.status)


def fault_response(fault: Fault) -> Response:
    """An injected failure as WordPress answers it: maintenance mode's HTML page for 503, JSON otherwise."""
    if fault.status == 503:
        return HTMLResponse("<!DOCTYPE html><html><body><p>Briefly unavailable for scheduled maintenance. "
                            "Check back in a minute.</p></body></html>", 503)  # fmt: skip
    if fault.status == 429:
        return wc_response({"code": "rest_too_many_requests", "message": "Too many requests.",
                            "data": {"status": 429}}, 429)  # fmt: skip
    critical = "<p>There has been a critical error on this website.</p>"
    body = {"code": "internal_server_error", "message": critical, "data": {"status": fault.status},
            "additional_errors": []}  # fmt: skip
    return wc_response(body, fault.status or 500)


async def read_body(request: Request) -> Row:
    """A request body as WordPress reads it: JSON (an object; anything else counts as empty) or form fields."""
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


def _forced(request: Request) -> bool:
    return request.query_params.get("force", "").lower() in ("1", "true")


def _id(request: Request, name: str = "id") -> int:
    return int(request.path_params[name])


class RestAPI:
    """The handlers of `/wp-json/wc/v3/…`, over one sandbox's store."""

    def __init__(self, sandbox: WooCommerceSandbox) -> None:
        self.sandbox = sandbox

    @property
    def store(self) -> Store:
        return self.sandbox.store

    def routes(self) -> list[Route]:
        sb = self.sandbox
        errors: dict[type[Exception], ErrorRenderer] = {WCError: wc_error}
        api = Pipeline([sb.counters.step, self.authenticate, sb.faults.step(fault_response)], errors, prefix=PREFIX)
        unrouted = Pipeline([sb.counters.step], errors)
        item, variation = "{id:int}", "{pid:int}/variations"
        return [
            api.route("/orders", self.list_orders),
            api.route("/orders", self.create_order, methods=["POST"]),
            api.route(f"/orders/{item}", self.get_order),
            api.route(f"/orders/{item}", self.update_order, methods=_WRITE),
            api.route("/products", self.list_products),
            api.route("/products", self.create_product, methods=["POST"]),
            api.route("/products/batch", self.batch, methods=["POST"]),
            api.route(f"/products/{item}", self.get_product),
            api.route(f"/products/{item}", self.update_product, methods=_WRITE),
            api.route(f"/products/{item}", self.delete_product, methods=["DELETE"]),
            api.route(f"/products/{variation}", self.list_variations),
            api.route(f"/products/{variation}", self.create_variation, methods=["POST"]),
            api.route(f"/products/{variation}/batch", self.batch, methods=["POST"]),
            api.route(f"/products/{variation}/{item}", self.get_variation),
            api.route(f"/products/{variation}/{item}", self.update_variation, methods=_WRITE),
            api.route(f"/products/{variation}/{item}", self.delete_variation, methods=["DELETE"]),
            api.route("/customers", self.list_customers),
            api.route("/customers", self.create_customer, methods=["POST"]),
            api.route(f"/customers/{item}", self.get_customer),
            api.route(f"/customers/{item}", self.update_customer, methods=_WRITE),
            api.route("/webhooks", self.list_webhooks),
            api.route("/webhooks", self.create_webhook, methods=["POST"]),
            api.route(f"/webhooks/{item}", self.get_webhook),
            api.route(f"/webhooks/{item}", self.update_webhook, methods=_WRITE),
            api.route(f"/webhooks/{item}", self.delete_webhook, methods=["DELETE"]),
            unrouted.route("/wp-json/{path:path}", self.no_route, methods=ALL_METHODS, name="*"),
        ]

    # -- auth -----------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> None:
        """A step: the consumer key and secret, and the key's permission for the method."""
        collection = "id" not in request.path_params
        query = request.query_params
        given = basic_credentials(request)
        if given is None and query.get("consumer_key") and query.get("consumer_secret"):
            given = (query["consumer_key"], query["consumer_secret"])
        cfg = self.sandbox.config
        if given is None or not secret_equals(given[0], cfg.consumer_key):
            method = "POST" if request.method == "POST" and collection else request.method
            code, message = _DENIED.get(method, _DENIED["PUT"])
            if method == "GET" and collection:
                message = "Sorry, you cannot list resources."
            raise WCError(401, code, message)
        if not secret_equals(given[1], cfg.consumer_secret):
            raise WCError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
        need = "read" if request.method in ("GET", "HEAD") else "write"
        if need not in cfg.permissions.split("_"):
            raise WCError(401, "woocommerce_rest_authentication_error",
                          f"The API key provided does not have {need} permissions.")  # fmt: skip

    async def no_route(self, request: Request) -> Response:
        raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")

    # -- lists ----------------------------------------------------------------------------------------

    async def list_orders(self, request: Request) -> Response:
        rows = list(self.store.orders.values())
        statuses = status_filter(request, (*ORDER_STATUSES, "trash"), "any")
        rows = [r for r in rows if (r["status"] in statuses if statuses else r["status"] != "trash")]
        if (customer := request.query_params.get("customer")) is not None:
            rows = [r for r in rows if str(r["customer_id"]) == customer.strip()]
        if search := request.query_params.get("search", "").casefold():
            rows = [r for r in rows if search in " ".join(map(str, r["billing"].values())).casefold()]
        rows = sort_rows(request, common_filters(request, rows, self.store.tz), "date", "desc")
        return page_of(request, rows, self.store.order_json, self.store.site_url)

    def _product_rows(self, request: Request, rows: list[Row]) -> list[Row]:
        statuses = status_filter(request, ("draft", "pending", "private", "publish", "trash"), "any")
        rows = [r for r in rows if (r["status"] in statuses if statuses else r["status"] != "trash")]
        if (skus := sku_filter(request)) is not None:
            rows = [r for r in rows if r["sku"] and r["sku"].casefold() in skus]
        for name in ("type", "stock_status", "tax_class"):
            if (value := request.query_params.get(name)) is not None:
                rows = [r for r in rows if str(r[name]) == value]
        if search := request.query_params.get("search", "").casefold():
            rows = [r for r in rows if search in r["name"].casefold()]
        return common_filters(request, rows, self.store.tz)

    async def list_products(self, request: Request) -> Response:
        with_variations = sku_filter(request) is not None  # WooCommerce searches variations too when `sku` is given
        rows = [r for r in self.store.products.values() if with_variations or r["type"] != "variation"]
        if parents := ids(request, "parent"):
            rows = [r for r in rows if r["parent_id"] in parents]
        rows = sort_rows(request, self._product_rows(request, rows), "date", "desc")
        return page_of(request, rows, self.store.product_json, self.store.site_url)

    async def list_variations(self, request: Request) -> Response:
        parent = self.store.product(_id(request, "pid"), variation_ok=False)
        rows = sort_rows(request, self._product_rows(request, self.store.children(parent["id"])), "menu_order", "asc")
        return page_of(request, rows, self.store.variation_json, self.store.site_url)

    async def list_customers(self, request: Request) -> Response:
        rows = list(self.store.customers.values())
        role = request.query_params.get("role", "customer")
        if role != "all":
            rows = [r for r in rows if r["role"] == role]
        if email := request.query_params.get("email", "").strip().casefold():
            rows = [r for r in rows if r["email"].casefold() == email]
        if search := request.query_params.get("search", "").casefold():
            rows = [r for r in rows if search in f"{r['email']} {r['first_name']} {r['last_name']}".casefold()]
        # REST v3 registers no date filters for customers: `modified_after` and the like are ignored.
        rows = sort_rows(request, common_filters(request, rows, self.store.tz, dates=False), "name", "asc")
        return page_of(request, rows, self.store.customer_json, self.store.site_url)

    async def list_webhooks(self, request: Request) -> Response:
        statuses = status_filter(request, ("active", "paused", "disabled"), "all")
        rows = [r for r in self.store.webhooks.values() if statuses is None or r["status"] in statuses]
        if search := request.query_params.get("search", "").casefold():
            rows = [r for r in rows if search in r["name"].casefold()]
        rows = sort_rows(request, common_filters(request, rows, self.store.tz), "date", "desc")
        return page_of(request, rows, self.store.webhook_json, self.store.site_url)

    # -- orders ---------------------------------------------------------------------------------------

    def _created(self, data: Row, path: str) -> Response:
        return wc_response(data, 201, {"Location": f"{self.store.site_url}wp-json/wc/v3/{path}/{data['id']}"})

    async def create_order(self, request: Request) -> Response:
        return self._created(self.store.order_json(create_order(self.store, await read_body(request))), "orders")

    async def get_order(self, request: Request) -> Response:
        return wc_response(self.store.order_json(self.store.order(_id(request))))

    async def update_order(self, request: Request) -> Response:
        return wc_response(self.store.order_json(self.store.update_order(_id(request), await read_body(request))))

    # -- products and variations ----------------------------------------------------------------------

    async def get_product(self, request: Request) -> Response:
        return wc_response(self.store.product_json(self.store.product(_id(request))))

    async def create_product(self, request: Request) -> Response:
        return self._created(self.store.product_json(self.store.create_product(await read_body(request))), "products")

    async def update_product(self, request: Request) -> Response:
        return wc_response(self.store.product_json(self.store.update_product(_id(request), await read_body(request))))

    async def delete_product(self, request: Request) -> Response:
        before = self.store.product_json(self.store.product(_id(request)))
        row = self.store.delete_product(_id(request), force=_forced(request))
        return wc_response(before if _forced(request) else self.store.product_json(row))

    async def get_variation(self, request: Request) -> Response:
        return wc_response(self.store.variation_json(self.store.variation(_id(request, "pid"), _id(request))))

    async def create_variation(self, request: Request) -> Response:
        row = self.store.create_variation(_id(request, "pid"), await read_body(request))
        return self._created(self.store.variation_json(row), f"products/{_id(request, 'pid')}/variations")

    async def update_variation(self, request: Request) -> Response:
        row = self.store.update_variation(_id(request, "pid"), _id(request), await read_body(request))
        return wc_response(self.store.variation_json(row))

    async def delete_variation(self, request: Request) -> Response:
        before = self.store.variation_json(self.store.variation(_id(request, "pid"), _id(request)))
        self.store.delete_product(_id(request), force=True, variation_of=_id(request, "pid"))
        return wc_response(before)

    async def batch(self, request: Request) -> Response:
        """`POST products/batch` and `products/{id}/variations/batch`: per-item results, per-item errors."""
        store, pid = self.store, _id(request, "pid") if "pid" in request.path_params else None
        body = await read_body(request)
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

    # -- customers ------------------------------------------------------------------------------------

    async def get_customer(self, request: Request) -> Response:
        return wc_response(self.store.customer_json(self.store.customer(_id(request))))

    async def create_customer(self, request: Request) -> Response:
        created = self.store.create_customer(await read_body(request))
        return self._created(self.store.customer_json(created), "customers")

    async def update_customer(self, request: Request) -> Response:
        updated = self.store.update_customer(_id(request), await read_body(request))
        return wc_response(self.store.customer_json(updated))

    # -- webhooks -------------------------------------------------------------------------------------

    async def get_webhook(self, request: Request) -> Response:
        return wc_response(self.store.webhook_json(self.store.webhook(_id(request))))

    async def create_webhook(self, request: Request) -> Response:
        row = self.store.create_webhook(await read_body(request))
        await self.sandbox.deliverer.ping(row)  # WooCommerce pings before answering, and answers 201 whatever it got
        return self._created(self.store.webhook_json(row), "webhooks")

    async def update_webhook(self, request: Request) -> Response:
        row = self.store.update_webhook(_id(request), await read_body(request))
        if row["status"] == "active" and row["pending_delivery"]:
            await self.sandbox.deliverer.ping(row)
        return wc_response(self.store.webhook_json(row))

    async def delete_webhook(self, request: Request) -> Response:
        row = self.store.webhook(_id(request))
        if not _forced(request):
            raise WCError(501, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.")
        del self.store.webhooks[row["id"]]
        return wc_response(self.store.webhook_json(row))
