"""The Exact sandbox app: OAuth, the API routes (api.py), the control routes, and its command line."""

from __future__ import annotations

import argparse
import mimetypes
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.exactonline.sandbox.api import ODataAPI, exact_error, sandbox_error
from connectors.exactonline.sandbox.entities import PICTURE_PATH, SPECS, SandboxError
from connectors.exactonline.sandbox.state import ExactSandbox, SandboxConfig
from connectors.sandboxkit import Control, Pipeline, request_fields, sandbox_app

_RATE_FIELDS = {"per_minute": "per_minute", "per_day": "per_day", "enabled": "rate_limits"}


def control_routes(sb: ExactSandbox) -> Control:
    control = Control(sb, error=exact_error, errors={SandboxError: sandbox_error})

    async def fields(request: Request) -> tuple[dict[str, Any], int]:
        body = await request_fields(request)
        return body, int(body.get("division", sb.config.divisions[0]))

    async def calls(request: Request) -> Response:
        return JSONResponse(sb.call_stats())

    async def seed_items(request: Request) -> Response:
        body, division = await fields(request)
        skus = [str(s) for s in body.get("skus", [])]
        stock = body.get("stock", 100)  # null: service items, no stock items
        items = sb.store.seed_items(division, skus, stock=None if stock is None else float(stock))
        return JSONResponse({"items": items})

    async def seed(request: Request) -> Response:
        body, division = await fields(request)
        path = str(body.get("entity", ""))
        if path not in SPECS or not SPECS[path].writable:
            return exact_error(400, f"cannot seed {path!r}")
        created = [sb.store.create(division, path, r) for r in body.get("records", [])]
        return JSONResponse({"ids": [r[SPECS[path].key] for r in created]})

    async def stock(request: Request) -> Response:
        """A stock count in Exact: {"sku", "quantity"}; the item's stock position holds that now."""
        body, division = await fields(request)
        sku, quantity = body.get("sku"), body.get("quantity")
        if not isinstance(sku, str) or not isinstance(quantity, int | float) or isinstance(quantity, bool):
            return exact_error(400, "stock takes sku (text) and quantity (a number)")
        position = sb.store.count_stock(division, sku, float(quantity))
        return JSONResponse({"sku": sku, "CurrentStock": position["CurrentStock"], "FreeStock": position["FreeStock"]})

    async def update(request: Request) -> Response:
        """What a person does in Exact (e.g. deliver an order), without a token."""
        body, division = await fields(request)
        path, key = str(body.get("entity", "")), str(body.get("id", "")).lower()
        if path not in SPECS or not isinstance(body.get("fields"), dict):
            return exact_error(400, "update takes entity, id and fields")
        sb.store.update(division, path, key, body["fields"])
        return JSONResponse({"updated": key})

    async def ratelimit(request: Request) -> Response:
        body, _ = await fields(request)
        for given, attribute in _RATE_FIELDS.items():
            if given in body:
                setattr(sb.config, attribute, type(getattr(sb.config, attribute))(body[given]))
        return JSONResponse({k: getattr(sb.config, v) for k, v in _RATE_FIELDS.items()})

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": sb.expire_tokens()})

    async def webhooks(request: Request) -> Response:
        """GET: the subscriptions, their failures and the waiting retries. POST {"secret"}: the app's webhook
        secret, as the developer finds it with the app in Exact."""
        if request.method == "POST":
            body = await request_fields(request)
            if not isinstance(body.get("secret"), str) or not body["secret"]:
                return exact_error(400, "webhooks takes a non-empty secret")
            sb.config.webhook_secret = body["secret"]
        return JSONResponse(sb.webhooks.state())

    async def retry(request: Request) -> Response:
        return JSONResponse({"retried": sb.webhooks.retry_now()})

    control.route("/calls", calls, methods=["GET"])
    control.route("/seed/items", seed_items)
    control.route("/seed", seed)
    control.route("/update", update)
    control.route("/stock", stock)
    control.route("/ratelimit", ratelimit)
    control.route("/expire-tokens", expire_tokens)
    control.route("/webhooks", webhooks, methods=["GET", "POST"])
    control.route("/webhooks/retry", retry)
    control.deliveries(sb.webhooks.sender, subscription=str, topic=str, action=str, key=str, attempt=int)
    return control


def picture_route(sb: ExactSandbox) -> Route:
    """An item's picture, where its `PictureUrl` points (the bytes the connector sent, as an image)."""

    async def picture(request: Request) -> Response:
        found = sb.store.pictures.get((int(request.path_params["division"]), str(request.path_params["key"])))
        if found is None:
            return exact_error(404, "Picture not found")
        name, content = found
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(content, media_type=kind)

    return Route(f"{PICTURE_PATH}/{{division:int}}/{{key}}", picture, methods=["GET"])


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app. `overrides` set SandboxConfig fields (`per_minute=5`, `token_lifetime=2`, …)."""
    sandbox = ExactSandbox(replace(config or SandboxConfig(), **overrides), clock)
    return sandbox_app(sandbox, [
        Route("/api/oauth2/auth", sandbox.oauth.authorize, methods=["GET", "POST"]),
        Pipeline([sandbox.counters.step]).route("/api/oauth2/token", sandbox.oauth.token, methods=["POST"],
                                                name="oauth2/token"),
        *ODataAPI(sandbox).routes(),
        picture_route(sandbox),
        control_routes(sandbox).mount(),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m connectors.exactonline.sandbox",
        description="An in-memory Exact Online: OAuth2, the REST and Sync APIs the connector uses, rate limits, "
        "errors.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--per-minute", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=5000)
    parser.add_argument("--no-rate-limit", action="store_true", help="no limits and no rate-limit headers")
    parser.add_argument("--token-lifetime", type=int, default=600)
    parser.add_argument("--client-id", default=SandboxConfig.client_id)
    parser.add_argument("--client-secret", default=SandboxConfig.client_secret)
    parser.add_argument("--webhook-secret", default=SandboxConfig.webhook_secret, help="the HashCode's key")
    parser.add_argument("--consent-page", action="store_true", help="show a consent page instead of auto-approving")
    parser.add_argument("--seed-skus", default="", help="comma-separated item codes to create at start")
    args = parser.parse_args(argv)
    app = create_sandbox(
        per_minute=args.per_minute, per_day=args.per_day, rate_limits=not args.no_rate_limit,
        token_lifetime=args.token_lifetime, client_id=args.client_id, client_secret=args.client_secret,
        webhook_secret=args.webhook_secret, auto_approve=not args.consent_page,
    )  # fmt: skip
    skus = [s.strip() for s in args.seed_skus.split(",") if s.strip()]
    if skus:
        sandbox: ExactSandbox = app.state.sandbox
        sandbox.store.seed_items(sandbox.config.divisions[0], skus)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
