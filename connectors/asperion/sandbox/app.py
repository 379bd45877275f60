"""The Asperion sandbox app: identity server (`/connect/authorize`, `/connect/token`), the API under `/v1`,
control routes under `/sandbox`, and a command line. One server plays both hosts (identity and API).

Every API call needs a live bearer token (401 otherwise, `WWW-Authenticate: Bearer`) and the tenant header
(`X-TenantId`, `X-Tenant-Id` accepted too): without it 400, for an administration the user may not use 403.
Lists page by `page`/`pageSize` (at most 100; more is a 400), filter on `modifiedSince` (inclusive),
`ActiveState` (articles: Active, the default, Inactive or All) and `code`/`email`/`reference`, and sort by
`orderBy=modifiedDate`. Errors are problem details. `currentStock` and other read-only fields are ignored
on writes. The shapes are the connector's assumptions [U] (connectors/asperion/client.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.asperion.sandbox.store import RESOURCES, AsperionStore, Problem, invalid
from connectors.sandboxkit import (
    ALL_METHODS,
    BearerTokens,
    Control,
    Fault,
    OAuthServer,
    Pipeline,
    RegisteredApp,
    Sandbox,
    request_fields,
    sandbox_app,
)
from connectors.sandboxkit.routing import ErrorRenderer

__all__ = ["AsperionSandbox", "SandboxConfig", "create_sandbox", "main"]

PATHS = {"articles": "articles", "relations": "relations", "SalesOrderWithLines": "salesorders",
         "salesinvoices": "salesinvoices", "financialmutations": "financialmutations"}  # fmt: skip
"""URL segment under /v1 → resource (matched case-insensitively, as ASP.NET routes are)."""
MAX_PAGE_SIZE = 100
TENANT_HEADERS = ("x-tenantid", "x-tenant-id")
ACTIVE_STATES = ("Active", "Inactive", "All")


@dataclass
class SandboxConfig:
    client_id: str = "koppel-sandbox"
    client_secret: str = "asperion-sandbox-secret"  # noqa: S105 - the sandbox's own app secret
    redirect_uris: tuple[str, ...] = ()
    auto_approve: bool = True
    token_lifetime: int = 3600
    refresh_window: int = 0
    code_lifetime: int = 300
    tenants: tuple[str, ...] = ("1001",)
    zone: str = "Europe/Amsterdam"


class AsperionSandbox(Sandbox):
    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.config = config
        self.tokens = BearerTokens(clock)
        self.oauth = OAuthServer(RegisteredApp(config.client_id, config.client_secret, config.redirect_uris,
                                               config.auto_approve, config.token_lifetime, config.refresh_window,
                                               config.code_lifetime), self.tokens, token_type="Bearer",  # noqa: S106
                                 title="Asperion")  # fmt: skip
        self.store = AsperionStore(clock, tenants=config.tenants, zone=config.zone)

    def state(self) -> dict[str, Any]:
        counts = {t: {r: len(rows) for r, rows in tables.items()} for t, tables in self.store.records.items()}
        return super().state() | {"records": counts, "oauth": self.oauth.state()}

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        super().reset(options)
        self.store = AsperionStore(self.clock, tenants=self.config.tenants, zone=self.config.zone)
        if (options or {}).get("tokens"):
            self.oauth.reset()


def problem(request: Request, exc: Problem) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers,
                        media_type="application/problem+json")  # fmt: skip


def fault_response(fault: Fault) -> Response:
    title = "Too Many Requests" if fault.status == 429 else "An unexpected error occurred."
    status = fault.status or 503
    return JSONResponse({"title": title, "status": status}, status_code=status, media_type="application/problem+json")


class Api:
    def __init__(self, sandbox: AsperionSandbox) -> None:
        self.sandbox = sandbox

    @property
    def store(self) -> AsperionStore:
        return self.sandbox.store

    async def bearer(self, request: Request) -> Response | None:
        if not self.sandbox.tokens.valid(request):
            raise Problem(401, "Unauthorized", "The access token is missing, invalid or expired.",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
        return None

    async def tenant_check(self, request: Request) -> Response | None:
        tenant = self._tenant(request)
        if tenant not in self.store.tenants:
            raise Problem(403, "Forbidden", f"You have no access to administration {tenant[:20]}.")
        return None

    def _tenant(self, request: Request) -> str:
        tenant = next((request.headers[h] for h in TENANT_HEADERS if request.headers.get(h)), "").strip()
        if not tenant:
            raise Problem(400, "Bad Request", "The X-TenantId header is required: it names the administration.")
        return tenant

    def _resource(self, request: Request) -> str:
        segment = str(request.path_params["resource"]).lower()
        found = next((r for s, r in PATHS.items() if s.lower() == segment), None)
        if found is None:
            raise Problem(404, "Not Found", f"No resource /v1/{segment[:40]}.")
        return found

    def routes(self) -> list[Route]:
        sb = self.sandbox
        errors: dict[type[Exception], ErrorRenderer] = {Problem: problem}
        steps = [sb.counters.step, self.bearer, self.tenant_check, sb.faults.step(fault_response)]
        api = Pipeline(steps, errors, prefix="/v1")
        unrouted = Pipeline([sb.counters.step], errors)
        return [
            Route("/connect/authorize", sb.oauth.authorize, methods=["GET", "POST"]),
            Route("/connect/token", sb.oauth.token, methods=["POST"]),
            api.route("/{resource}", self.listing, name=self._name),
            api.route("/{resource}", self.create, methods=["POST"], name=self._name),
            api.route("/{resource}/{id}", self.one, name=self._name_id),
            api.route("/{resource}/{id}", self.replace, methods=["PUT"], name=self._name_id),
            unrouted.route("/{path:path}", self.unknown, methods=ALL_METHODS, name="unknown"),
        ]

    @staticmethod
    def _name(request: Request) -> str:
        return str(request.path_params.get("resource", "")).lower()

    @staticmethod
    def _name_id(request: Request) -> str:
        return f"{str(request.path_params.get('resource', '')).lower()}/{{id}}"

    def _int(self, request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.strip().isdigit() or not low <= int(raw) <= high:
            raise invalid({name: [f"The field {name} must be between {low} and {high}."]})
        return int(raw)

    async def listing(self, request: Request) -> Response:
        resource, tenant, query = self._resource(request), self._tenant(request), request.query_params
        page = self._int(request, "page", 1, 1, 1_000_000)
        size = self._int(request, "pageSize", 25, 1, MAX_PAGE_SIZE)
        active = query.get("ActiveState") or query.get("activeState") or "Active"
        if active not in ACTIVE_STATES:
            raise invalid({"ActiveState": [f"ActiveState must be one of {', '.join(ACTIVE_STATES)}."]})
        order = query.get("orderBy")
        if order not in (None, "modifiedDate", "id"):
            raise invalid({"orderBy": ["orderBy must be modifiedDate or id."]})
        since = self.store.parse_since(query["modifiedSince"]) if query.get("modifiedSince") else None
        equal = {name: query[name] for name in ("code", "email", "reference") if query.get(name)}
        rows = self.store.listing(tenant, resource, since=since, active=active, equal=equal,
                                  by_modified=order == "modifiedDate")  # fmt: skip
        chunk = rows[(page - 1) * size : page * size]
        return JSONResponse({"data": chunk, "page": page, "pageSize": size, "totalCount": len(rows)})

    async def one(self, request: Request) -> Response:
        found = self.store.find(self._tenant(request), self._resource(request), str(request.path_params["id"]))
        return JSONResponse(found)

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            return await request_fields(request)
        except ValueError as exc:
            raise Problem(400, "Bad Request", f"The request body is not valid JSON: {exc}") from None

    async def create(self, request: Request) -> Response:
        resource, tenant = self._resource(request), self._tenant(request)
        record = self.store.create(tenant, resource, await self._body(request))
        return JSONResponse(record, status_code=201)

    async def replace(self, request: Request) -> Response:
        resource, tenant = self._resource(request), self._tenant(request)
        record = self.store.replace(tenant, resource, str(request.path_params["id"]), await self._body(request))
        return JSONResponse(record)

    async def unknown(self, request: Request) -> Response:
        raise Problem(404, "Not Found", f"No route {request.method} {request.url.path[:80]}.")


def control_routes(sb: AsperionSandbox) -> Control:
    def refuse(status: int, message: str) -> Response:
        return JSONResponse({"title": message, "status": status}, status_code=status)

    control = Control(sb, error=refuse, errors={Problem: problem})

    def tenant_of(body: Mapping[str, Any]) -> str:
        tenant = str(body.get("tenant") or sb.config.tenants[0])
        if tenant not in sb.store.tenants:
            raise Problem(404, "Not Found", f"no administration {tenant[:20]}")
        return tenant

    async def seed_articles(request: Request) -> Response:
        """{"skus": [...]} or {"articles": [{code, description, salesPrice, currentStock, isActive, …}]}."""
        body = await request_fields(request)
        given = body.get("articles") or [{"code": s, "description": f"Article {s}", "salesPrice": 10,
                                          "currentStock": 5} for s in body.get("skus") or []]  # fmt: skip
        if not isinstance(given, list) or not all(isinstance(a, dict) for a in given):
            raise ValueError("articles must be a list of objects (or skus a list of codes)")
        done = sb.store.seed_articles(tenant_of(body), given)
        return JSONResponse({"articles": {str(a["code"]): a["id"] for a in done}})

    async def seed(request: Request) -> Response:
        """{"resource": "relations" | "salesorders" | …, "records": [...]}: created as a user does in Asperion."""
        body = await request_fields(request)
        resource, records = str(body.get("resource") or ""), body.get("records")
        if resource not in RESOURCES or not isinstance(records, list):
            raise ValueError(f"seed takes resource (one of {', '.join(RESOURCES)}) and records (a list)")
        tenant = tenant_of(body)
        return JSONResponse({"ids": [sb.store.create(tenant, resource, r)["id"] for r in records]})

    async def update(request: Request) -> Response:
        """{"resource", "id", "fields"}: an edit in Asperion's UI; its modification date moves."""
        body = await request_fields(request)
        if str(body.get("resource")) not in RESOURCES or not isinstance(body.get("fields"), dict):
            raise ValueError("update takes resource, id and fields")
        found = sb.store.find(tenant_of(body), str(body["resource"]), str(body.get("id")))
        return JSONResponse(sb.store.touch(found, body["fields"]))

    async def stock(request: Request) -> Response:
        """{"code", "quantity"}: a stock mutation in Asperion; the article's currentStock and modification date."""
        body = await request_fields(request)
        if not isinstance(body.get("code"), str):
            raise ValueError("stock takes code (text) and quantity (a number)")
        return JSONResponse(sb.store.set_stock(tenant_of(body), body["code"], body.get("quantity")))

    async def records(request: Request) -> Response:
        """GET ?resource=…: every record of a resource (inactive articles included), without a token."""
        resource = request.query_params.get("resource", "")
        if resource not in RESOURCES:
            raise ValueError(f"resource must be one of {', '.join(RESOURCES)}")
        tenant = tenant_of(dict(request.query_params))
        return JSONResponse({"records": sb.store.listing(tenant, resource, active="All")})

    async def clock(request: Request) -> Response:
        body = await request_fields(request)
        return JSONResponse({"now": sb.store.advance(float(body.get("advance", 0))).isoformat()})

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": sb.tokens.expire_all()})

    control.route("/seed/articles", seed_articles)
    control.route("/seed", seed)
    control.route("/update", update)
    control.route("/stock", stock)
    control.route("/records", records, methods=["GET"])
    control.route("/clock", clock)
    control.route("/expire-tokens", expire_tokens)
    return control


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app; `overrides` set SandboxConfig fields (`redirect_uris=(…,)`, `tenants=(…,)`)."""
    sandbox = AsperionSandbox(replace(config or SandboxConfig(), **overrides), clock)
    return sandbox_app(sandbox, [control_routes(sandbox).mount(), *Api(sandbox).routes()])


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m connectors.asperion.sandbox",
                                     description="An in-memory Asperion: identity server and REST API.")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run(create_sandbox(), host=args.host, port=args.port, log_level=args.log_level)
