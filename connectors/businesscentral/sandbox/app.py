"""The Business Central sandbox app: Microsoft's token endpoint, the API v2.0 routes, the control routes.

What it reproduces is listed in the package docstring (`connectors/businesscentral/sandbox/__init__.py`).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.businesscentral.sandbox.store import (
    CARD_PRICES_INCLUDING_VAT,
    LINES,
    BCError,
    Record,
    Store,
    parse_filter,
    select,
)
from connectors.businesscentral.sandbox.webhooks import Notifier
from connectors.sandboxkit import ALL_METHODS, BearerTokens, Control, Fault, Pipeline, Sandbox, request_fields
from connectors.sandboxkit import sandbox_app as kit_app
from connectors.sandboxkit.auth import secret_equals
from connectors.sandboxkit.routing import ErrorRenderer

SCOPE = "https://api.businesscentral.dynamics.com/.default"
BATCH_LIMIT = 100
"""Operations one `$batch` takes (BC's operational limits)."""
_SEGMENT = re.compile(r"^([A-Za-z]+)(?:\(([^)]*)\))?$")


@dataclass
class SandboxConfig:
    tenant: str = "sandbox.onmicrosoft.com"
    client_id: str = "koppel-bc-sandbox"
    client_secret: str = field(default="bc-sandbox-secret", repr=False)
    environment: str = "production"
    companies: tuple[str, ...] = ("CRONUS NL",)
    page_size: int = 1000
    """Records per page before `@odata.nextLink` (BC online: 20 000)."""
    token_lifetime: int = 3599
    currencies: tuple[str, ...] = ("GBP", "USD")
    """Foreign currencies the companies know; their own (EUR) is an empty `currencyCode`, as in BC."""
    prices_including_vat: bool = False
    """The customer template's "Prices Including VAT": what a customer created through the API gets."""
    subscription_lifetime: float = 3 * 86400
    """Seconds a webhook subscription lives unless renewed (BC: three days)."""
    handshake_timeout: float = 5.0
    batch_seconds: float = 30.0
    """Seconds after a change before its batch of notifications is sent (0: only `POST /sandbox/notify`)."""
    collection_threshold: int = 1000
    """More changes than this of one subscription in a batch → one `collection` notification."""
    collection_field: str = "lastDateTimeModified"
    """The field a collection notification's `$filter` names (as BC's docs sample spells it)."""


class BusinessCentralSandbox(Sandbox):
    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        self.offset = 0.0
        """Seconds the sandbox clock runs ahead of (or behind) `clock` (`POST /sandbox/clock`)."""
        base = clock
        super().__init__(lambda: base() + self.offset)
        clock = self.clock
        self.config = config
        self.tokens = BearerTokens(clock)
        self.store = Store(clock, config.currencies, template_prices_including_vat=config.prices_including_vat)
        self.token_requests = 0
        for name in config.companies:
            self.store.add_company(name)
        self.notifier = Notifier(
            clock, lambda: list(self.store.companies), lifetime=config.subscription_lifetime,
            handshake_timeout=config.handshake_timeout, batch_seconds=config.batch_seconds,
            collection_threshold=config.collection_threshold, collection_field=config.collection_field,
        )  # fmt: skip
        self.store.on_change = self.notifier.on_change

    def company(self, name: str | None = None) -> str:
        """The id of the company named (default: the first)."""
        for record in self.store.companies.values():
            if name is None or record["name"] == name:
                return str(record["id"])
        raise BCError(400, "BadRequest", f"no company {name!r}")

    def state(self) -> dict[str, Any]:
        counts = {c["name"]: {e: len(t) for e, t in self.store.records[c["id"]].items()}
                  for c in self.store.companies.values()}  # fmt: skip
        return super().state() | {"companies": [dict(c) for c in self.store.companies.values()], "records": counts,
                                  "token_requests": self.token_requests, "live_tokens": self.tokens.live(),
                                  "subscriptions": len(self.notifier.listing()),
                                  "pending_notifications": len(self.notifier.pending)}  # fmt: skip

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        super().reset(options)
        self.tokens.clear()
        self.store = Store(
            self.clock, self.config.currencies, template_prices_including_vat=self.config.prices_including_vat
        )
        self.token_requests = 0
        for name in self.config.companies:
            self.store.add_company(name)
        self.notifier.reset()
        self.store.on_change = self.notifier.on_change

    async def aclose(self) -> None:
        await self.notifier.aclose()


def bc_error(request: Request, exc: Any) -> Response:
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)


def fault_response(fault: Fault) -> Response:
    code, message = {
        429: ("Application_TooManyRequests", "Too many requests reached. Actual (6001). Maximum (6000)."),
        503: ("Application_ServiceUnavailable", "The service is temporarily unavailable."),
    }.get(fault.status or 503, ("InternalServerError", "Something went wrong."))
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=fault.status or 503)


def aad_error(status: int, error: str, code: int, description: str) -> Response:
    body = {"error": error, "error_description": f"AADSTS{code}: {description} Trace ID: 0 Correlation ID: 0",
            "error_codes": [code], "timestamp": "", "trace_id": "0", "correlation_id": "0"}  # fmt: skip
    return JSONResponse(body, status_code=status)


class API:
    def __init__(self, sandbox: BusinessCentralSandbox) -> None:
        self.sb = sandbox

    # -- Microsoft Entra ID's token endpoint ---------------------------------------------------------

    async def token(self, request: Request) -> Response:
        sb, cfg = self.sb, self.sb.config
        sb.token_requests += 1
        form = await request_fields(request)
        tenant = request.path_params["tenant"]
        if tenant != cfg.tenant:
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != cfg.client_id:
            found = f"Application with identifier '{form.get('client_id')}' was not found in the directory."
            return aad_error(400, "unauthorized_client", 700016, found)
        if not form.get("client_secret"):
            return aad_error(401, "invalid_client", 7000218, "The request body must contain client_assertion or "
                                                             "client_secret.")  # fmt: skip
        if not secret_equals(str(form["client_secret"]), cfg.client_secret):
            return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if form.get("scope") != SCOPE:
            return aad_error(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is "
                                                            "not valid.")  # fmt: skip
        token = sb.tokens.issue(cfg.token_lifetime)
        return JSONResponse({"token_type": "Bearer", "expires_in": cfg.token_lifetime, "ext_expires_in":
                             cfg.token_lifetime, "access_token": token})  # fmt: skip

    # -- the API --------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Response | None:
        if not self.sb.tokens.valid(request):
            return JSONResponse({"error": {"code": "Authentication_InvalidCredentials",
                                           "message": "The server has rejected the client credentials."}},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        if request.path_params["environment"] != self.sb.config.environment:
            raise BCError(404, "NoEnvironment", f"Environment '{request.path_params['environment']}' not found.")
        return None

    async def dispatch(self, request: Request) -> Response:
        if request.path_params["rest"] == "$batch":
            if request.method != "POST":
                raise BCError(405, "BadRequest_MethodNotAllowed", f"'{request.method}' requests for '$batch' are not "
                                                                  "allowed.")  # fmt: skip
            return await self.batch(request)
        segments = [s for s in request.path_params["rest"].split("/") if s]
        parsed = []
        for segment in segments:
            match = _SEGMENT.match(segment)
            if match is None:
                raise BCError(400, "BadRequest_InvalidRequestUrl", f"The request URI is not valid: {segment}")
            parsed.append((match[1], _key(match[2])))
        method = request.method
        if len(parsed) == 1 and parsed[0][0] == "subscriptions":
            return await self.subscriptions(request, parsed[0][1])
        if len(parsed) == 1 and parsed[0] == ("companies", None) and method == "GET":
            return self.listing(request, list(self.sb.store.companies.values()))
        if not parsed or parsed[0][0] != "companies" or parsed[0][1] is None:
            raise BCError(404, "BadRequest_NotFound", "Resource not found for the segment.")
        company = parsed[0][1].lower()
        store = self.sb.store
        if len(parsed) == 1:
            if company not in store.companies:
                raise BCError(404, "BadRequest_NotFound", "The company does not exist.")
            return JSONResponse(store.companies[company])
        (entity, key), rest = parsed[1], parsed[2:]
        if key is None and not rest:
            if method == "GET":
                return self.listing(request, list(store.table(company, entity).values()), company)
            if method == "POST":
                created = store.create(company, entity, await _body(request))
                return JSONResponse(self.shaped(company, created, request), status_code=201)
        elif key is not None and not rest:
            if method == "GET":
                return JSONResponse(self.shaped(company, store.get(company, entity, key), request))
            if method == "PATCH":
                fields = await _body(request)
                updated = store.update(company, entity, key, fields, request.headers.get("if-match"))
                return JSONResponse(self.shaped(company, updated, request))
            if method == "DELETE":
                store.delete(company, entity, key, request.headers.get("if-match"))
                return Response(status_code=204)
        elif key is not None and len(rest) == 1 and entity in LINES and rest[0] == (LINES[entity], None):
            if method == "GET":
                return self.listing(request, list(store.get(company, entity, key).get(LINES[entity]) or []))
            if method == "POST":
                line = store.add_line(company, entity, key, await _body(request))
                return JSONResponse(line, status_code=201)
        elif key is not None and entity == "items" and rest and rest[0][0] == "picture":
            if len(rest) == 1 and method == "GET":
                return JSONResponse(store.picture(company, key))
            if rest[1:] == [("pictureContent", None)]:
                if method == "GET":
                    content, kind = store.pictures.get((company, store.get(company, "items", key)["id"]), (b"", ""))
                    return Response(content, media_type=kind or "application/octet-stream")
                if method in ("PATCH", "PUT"):
                    kind = request.headers.get("content-type", "application/octet-stream")
                    store.set_picture(company, key, await request.body(), kind, request.headers.get("if-match"))
                    return Response(status_code=204)
        raise BCError(405 if method not in ALL_METHODS else 400, "BadRequest_MethodNotAllowed",
                      f"'{method}' requests for '{request.path_params['rest']}' are not allowed.")  # fmt: skip

    async def batch(self, request: Request) -> Response:
        """`POST $batch` in OData's JSON format: each request run as if sent alone (its own status and body, an
        error of one not stopping the others: no `Isolation: snapshot`), answered by its `id`; over
        `BATCH_LIMIT` requests is refused whole."""
        if "application/json" not in request.headers.get("accept", ""):
            raise BCError(400, "BadRequest", "Only JSON batch answers are served: send Accept: application/json.")
        requests = (await _body(request)).get("requests")
        if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
            raise BCError(400, "BadRequest", "The batch request body must hold a `requests` array of objects.")
        if len(requests) > BATCH_LIMIT:
            raise BCError(400, "BadRequest", f"The batch holds {len(requests)} operations; at most {BATCH_LIMIT} are "
                                             "allowed.")  # fmt: skip
        ids = [str(r.get("id", "")) for r in requests]
        if "" in ids or len(set(ids)) != len(ids):
            raise BCError(400, "BadRequest", "Every request of a batch needs an `id` of its own.")
        return JSONResponse({"responses": [await self._inner(request, r) for r in requests]})

    async def _inner(self, outer: Request, inner: dict[str, Any]) -> dict[str, Any]:
        url = str(inner.get("url") or "").lstrip("/")
        path, _, query = url.partition("?")
        body = json.dumps(inner["body"]).encode() if "body" in inner else b""
        headers = {str(k).lower(): str(v) for k, v in (inner.get("headers") or {}).items()}
        headers.setdefault("authorization", outer.headers.get("authorization", ""))
        scope = {**outer.scope, "method": str(inner.get("method") or "GET").upper(), "query_string": query.encode(),
                 "path": f"/v2.0/{outer.path_params['environment']}/api/v2.0/{path}",
                 "path_params": {"environment": outer.path_params["environment"], "rest": path},
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except BCError as exc:
            response = bc_error(request, exc)
        answer: dict[str, Any] = {"id": str(inner["id"]), "status": response.status_code,
                                  "headers": {"content-type": response.headers.get("content-type", "")}}  # fmt: skip
        if response.body:
            answer["body"] = json.loads(bytes(response.body))
            if isinstance(answer["body"], dict) and answer["body"].get("@odata.etag"):
                answer["headers"]["etag"] = answer["body"]["@odata.etag"]
        return answer

    async def subscriptions(self, request: Request, key: str | None) -> Response:
        notifier, method = self.sb.notifier, request.method
        if key is None and method == "GET":
            return JSONResponse({"@odata.context": f"{request.base_url}$metadata#subscriptions",
                                 "value": notifier.listing()})  # fmt: skip
        if key is None and method == "POST":
            return JSONResponse(await notifier.create(await _body(request)), status_code=201)
        if key is not None and method == "GET":
            return JSONResponse(notifier.public(notifier.get(key)))
        if key is not None and method == "PATCH":
            body = await _body(request)
            return JSONResponse(await notifier.update(key, body, request.headers.get("if-match")))
        if key is not None and method == "DELETE":
            notifier.delete(key, request.headers.get("if-match"))
            return Response(status_code=204)
        raise BCError(405, "BadRequest_MethodNotAllowed", f"'{method}' requests for 'subscriptions' are not allowed.")

    def shaped(self, company: str, record: Record, request: Request) -> Record:
        """A record as the query's `$select` and `$expand` ask (lines and the customer embedded)."""
        query = request.query_params
        out = select(record, _fields(query.get("$select")))
        for nav, options in _expands(query.get("$expand")).items():
            if nav in LINES.values():
                lines = record.get(nav) or []
                out[nav] = [select(line, _fields(options.get("$select"))) for line in lines]
            elif nav == "customer" and record.get("customerId"):
                try:
                    out[nav] = select(self.sb.store.get(company, "customers", record["customerId"]),
                                      _fields(options.get("$select")))  # fmt: skip
                except BCError:
                    out[nav] = None
            elif nav == "picture" and "number" in record:
                out[nav] = self.sb.store.picture(company, record["id"])
            else:
                raise BCError(400, "BadRequest", f"Could not find a property named '{nav}' to expand.")
        expanded = _expands(query.get("$expand"))
        for nav in LINES.values():
            if nav not in expanded:
                out.pop(nav, None)  # lines travel only when expanded, as in BC
        return out

    def listing(self, request: Request, records: list[Record], company: str | None = None) -> Response:
        query = request.query_params
        found = records
        if query.get("$filter"):
            test = parse_filter(query["$filter"])
            found = [r for r in found if test(r)]
        if query.get("$orderby"):
            name, _, direction = query["$orderby"].strip().partition(" ")
            found = sorted(found, key=lambda r: (str(r.get(name) or ""), str(r.get("id"))),
                           reverse=direction.strip().lower() == "desc")  # fmt: skip
        top = int(query["$top"]) if query.get("$top", "").isdigit() else None
        skip = int(query.get("$skiptoken") or 0)
        limit = self.sb.config.page_size if top is None else min(top - skip, self.sb.config.page_size)
        page = found[skip : skip + max(limit, 0)]
        shaped = [
            self.shaped(company, r, request) if company else select(r, _fields(query.get("$select"))) for r in page
        ]
        body: dict[str, Any] = {"@odata.context": f"{request.base_url}$metadata", "value": shaped}
        end = skip + len(page)
        if end < len(found) and (top is None or end < top):
            params = {k: v for k, v in query.items() if k != "$skiptoken"} | {"$skiptoken": str(end)}
            body["@odata.nextLink"] = f"{request.url.replace(query='')}?{urlencode(params)}"
        return JSONResponse(body)


def _key(raw: str | None) -> str | None:
    if raw is None:
        return None
    raw = raw.strip()
    return raw[1:-1] if raw.startswith("'") and raw.endswith("'") else raw


def _fields(text: str | None) -> list[str] | None:
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


def _expands(text: str | None) -> dict[str, dict[str, str]]:
    """`salesOrderLines($select=id),customer` → {"salesOrderLines": {"$select": "id"}, "customer": {}}."""
    out: dict[str, dict[str, str]] = {}
    for match in re.finditer(r"([A-Za-z]+)(?:\(([^)]*)\))?", text or ""):
        options = dict(part.split("=", 1) for part in (match[2] or "").split(";") if "=" in part)
        out[match[1]] = options
    return out


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BCError(400, "BadRequest", "Invalid JSON in the request body.") from None
    if not isinstance(data, dict):
        raise BCError(400, "BadRequest", "The request body must be a JSON object.")
    return data


def control_routes(sb: BusinessCentralSandbox) -> Control:
    control = Control(sb, errors={BCError: bc_error})

    async def seed(request: Request) -> Response:
        """{"entity", "records": [fields…], "company"?}: records created as a user would; their ids by number.
        A customer's record may hold the card's `pricesIncludingVat`; a document's its `pricesIncludeTax`
        (else its customer's, as the API gives it) and its lines (`salesOrderLines`…), added after its header
        as BC's UI does."""
        body = await request_fields(request)
        company = sb.company(body.get("company"))
        entity = str(body.get("entity") or "")
        created = []
        for given in body.get("records") or []:
            fields = dict(given)
            lines = fields.pop(LINES[entity], []) if entity in LINES else []
            users = {k: fields.pop(k) for k in (CARD_PRICES_INCLUDING_VAT, "pricesIncludeTax") if k in fields}
            record = sb.store.create(company, entity, fields)
            if users:  # what the UI lets a user set and the API does not
                record = sb.store.change(company, entity, record["id"], users)
            for line in lines:
                sb.store.add_line(company, entity, record["id"], dict(line))
            created.append(record)
        return JSONResponse({"ids": {str(r.get("number") or r.get("code") or r["id"]): r["id"] for r in created}})

    async def records(request: Request) -> Response:
        """GET ?entity=items[&company=…]: every record of an entity, as stored (what a user sees in BC); a
        customer with its card's `pricesIncludingVat`."""
        company = sb.company(request.query_params.get("company"))
        entity = request.query_params.get("entity", "")
        listed = list(sb.store.table(company, entity).values())
        if entity == "customers":
            listed = [r | {CARD_PRICES_INCLUDING_VAT: sb.store.prices_including_vat.get((company, r["id"]), False)}
                      for r in listed]  # fmt: skip
        return Response(json.dumps({"records": listed}, default=str), media_type="application/json")

    async def seed_items(request: Request) -> Response:
        """{"skus": [...]}: inventory items with these numbers."""
        body = await request_fields(request)
        company = sb.company(body.get("company"))
        ids = {sku: sb.store.create(company, "items", {"number": sku, "displayName": sku, "unitPrice": 10})["id"]
               for sku in body.get("skus") or []}  # fmt: skip
        return JSONResponse({"items": ids})

    async def change(request: Request) -> Response:
        """{"entity", "id", "fields"}: a user's change in BC (`lastModifiedDateTime` moves; an `inventory`
        posting alone does not, as in BC). A customer's fields may hold the card's `pricesIncludingVat`."""
        body = await request_fields(request)
        company = sb.company(body.get("company"))
        record = sb.store.change(company, str(body["entity"]), str(body["id"]), dict(body.get("fields") or {}))
        return JSONResponse(record)

    async def subscriptions(request: Request) -> Response:
        """GET: every live subscription (clientState left out) and those deleted after a failed delivery.
        POST {notificationUrl, entity, clientState, company?}: one held already (no handshake)."""
        if request.method == "POST":
            body = await request_fields(request)
            resource = f"/api/v2.0/companies({sb.company(body.get('company'))})/{body.get('entity')}"
            fields = {"notificationUrl": body.get("notificationUrl"), "resource": resource,
                      "clientState": body.get("clientState", "")}  # fmt: skip
            return JSONResponse(await sb.notifier.create(fields, handshake=False), status_code=201)
        return JSONResponse({"subscriptions": sb.notifier.listing(), "deleted": sb.notifier.deleted,
                             "pending": len(sb.notifier.pending)})  # fmt: skip

    async def drop(request: Request) -> Response:
        """{"id"}: BC deletes the subscription (as it does after a failed delivery)."""
        body = await request_fields(request)
        return JSONResponse({"deleted": sb.notifier.drop(str(body.get("id") or ""))})

    async def notify(request: Request) -> Response:
        """Send the pending batch now (without waiting `batch_seconds`); how each POST went."""
        return JSONResponse({"deliveries": await sb.notifier.notify()})

    async def clock(request: Request) -> Response:
        """{"offset": seconds}: the sandbox clock moved (subscriptions' expiry, records' times)."""
        body = await request_fields(request)
        sb.offset = float(body.get("offset") or 0)
        return JSONResponse({"now": sb.clock()})

    control.route("/subscriptions", subscriptions, methods=("GET", "POST"))
    control.route("/subscriptions/drop", drop)
    control.route("/notify", notify)
    control.route("/clock", clock)
    control.deliveries(sb.notifier.sender)
    control.route("/seed", seed)
    control.route("/records", records, methods=("GET",))
    control.route("/seed/items", seed_items)
    control.route("/change", change)
    return control


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app. `overrides` set SandboxConfig fields (`page_size=…`, `client_secret=…`, …)."""
    sandbox = BusinessCentralSandbox(replace(config or SandboxConfig(), **overrides), clock)
    api = API(sandbox)
    errors: dict[type[Exception], ErrorRenderer] = {BCError: bc_error}
    pipeline = Pipeline([sandbox.counters.step, api.authenticate, sandbox.faults.step(fault_response)], errors)
    routes = [
        Route("/{tenant}/oauth2/v2.0/token", api.token, methods=["POST"]),
        pipeline.route("/v2.0/{environment}/api/v2.0/{rest:path}", api.dispatch, methods=ALL_METHODS, name=_route_name),
        control_routes(sandbox).mount(),
    ]
    return kit_app(sandbox, routes)


def _route_name(request: Request) -> str:
    """`GET customers({id})`: the counter's name for a request, ids folded out."""
    rest = re.sub(r"\([^)]*\)", "({id})", request.path_params.get("rest", ""))
    return rest.removeprefix("companies({id})/")


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m connectors.businesscentral.sandbox",
                                     description="An in-memory Business Central API v2.0 with Microsoft's token "
                                                 "endpoint (client credentials).")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--tenant", default=SandboxConfig.tenant)
    parser.add_argument("--client-id", default=SandboxConfig.client_id)
    parser.add_argument("--client-secret", default="bc-sandbox-secret")
    parser.add_argument("--environment", default=SandboxConfig.environment)
    parser.add_argument("--company", action="append", help="a company's name (repeatable)")
    parser.add_argument("--page-size", type=int, default=SandboxConfig.page_size)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    app = create_sandbox(tenant=args.tenant, client_id=args.client_id, client_secret=args.client_secret,
                         environment=args.environment, companies=tuple(args.company or SandboxConfig.companies),
                         page_size=args.page_size)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
