"""The WooCommerce sandbox app: the REST routes (api.py), the control routes, and its command line."""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.sandboxkit import Control, request_fields, sandbox_app
from connectors.woocommerce.sandbox import seed
from connectors.woocommerce.sandbox.api import RestAPI, wc_error
from connectors.woocommerce.sandbox.state import SandboxConfig, WooCommerceSandbox
from connectors.woocommerce.sandbox.store import ORDER_STATUSES, ShopSettings, WCError


class WordPressPaths:
    """What WordPress does before routing: `/wp-json/…/` is `/wp-json/…` (untrailingslashit), and without a
    configured site URL the shop is where it is reached."""

    def __init__(self, app: ASGIApp, sandbox: WooCommerceSandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.sandbox.learn_site_url(str(Request(scope).base_url))
            path: str = scope["path"]
            if path.startswith("/wp-json/") and path.endswith("/"):
                scope = {**scope, "path": path.rstrip("/")}
        await self.app(scope, receive, send)


def control_routes(sb: WooCommerceSandbox) -> Control:
    control = Control(sb, errors={WCError: wc_error})
    control.deliveries(sb.deliverer.sender, webhook_id=int)

    async def place_orders(request: Request) -> Response:
        body = await request_fields(request)
        count, status = int(body.get("count", 1)), str(body.get("status", "processing"))
        if not 1 <= count <= 1000 or status not in ORDER_STATUSES:
            return JSONResponse({"error": "count must be 1..1000 and status a WooCommerce order status"}, 400)
        coupon = body.get("coupon")
        if coupon is not None and coupon not in {code for code, _, _ in seed.COUPONS}:
            known = ", ".join(code for code, _, _ in seed.COUPONS)
            return JSONResponse({"error": f"coupon must be one of {known}"}, 400)
        rng = random.Random(body.get("seed"))  # noqa: S311 - sample data, not secrets
        placed = [seed.place_order(sb.store, rng, status=status, checkout_update=sb.config.checkout_update,
                                   coupon_code=coupon) for _ in range(count)]  # fmt: skip
        return JSONResponse({"orders": [o["id"] for o in placed]})

    async def seed_products(request: Request) -> Response:
        return JSONResponse({"products": seed.seed_products(sb.store)})

    async def upload(request: Request) -> Response:
        """{"name", "content" (base64), "content_type"}: a file in the media library; its URL (for `images`)."""
        body = await request_fields(request)
        try:
            content = base64.b64decode(str(body.get("content", "")), validate=True)
        except ValueError:
            return JSONResponse({"error": "content must be base64"}, 400)
        name = str(body.get("name") or "image.png")
        src = sb.store.upload(name, content, str(body.get("content_type") or "image/png"))
        return JSONResponse({"src": src})

    control.route("/orders", place_orders)
    control.route("/products/seed", seed_products)
    control.route("/media", upload)
    return control


def media_route(sb: WooCommerceSandbox) -> Route:
    """`wp-content/uploads/…`: the media library's files, with an ETag and conditional GETs, as a web server
    serves them."""

    async def media(request: Request) -> Response:
        found = sb.store.media.get(request.path_params["path"])
        if found is None:
            return Response("Not Found", status_code=404, media_type="text/html")
        kind, content = found
        etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(content, media_type=kind, headers={"ETag": etag})

    return Route("/wp-content/uploads/{path:path}", media, methods=["GET"])


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app. `overrides` set SandboxConfig fields (`consumer_key=…`, `site_url=…`, …)."""
    sandbox = WooCommerceSandbox(replace(config or SandboxConfig(), **overrides), clock)
    routes = [media_route(sandbox), *RestAPI(sandbox).routes(), control_routes(sandbox).mount()]
    return sandbox_app(sandbox, routes, middleware=[Middleware(WordPressPaths, sandbox=sandbox)])


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m connectors.woocommerce.sandbox",
                                     description="An in-memory WooCommerce: the REST API v3 the connector uses, "
                                                 "and webhooks sent as WooCommerce sends them.")  # fmt: skip
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
