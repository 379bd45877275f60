"""An in-memory Exact Online: OAuth2, the REST and Sync APIs the connector uses, rate limits, errors.

    python -m connectors.exactonline.sandbox --port 8082          # then point base_url at it

What it reproduces (see PLATFORMS.md §4):

* OAuth2 code flow: `/api/oauth2/auth` redirects back with `code` and `state` (auto-approve, or a
  consent page); `/api/oauth2/token` answers `expires_in` as a string ("600"); codes are single use
  (3 min); refresh tokens rotate — only the newest works, any older one answers 400 invalid_grant;
  refreshing while the access token has more than `refresh_window` s left answers 401 "Access token
  not expired". Token lifetime is configurable so tests can expire tokens quickly.
* `/api/v1/{division}/…` with bearer auth (401 when missing, unknown or expired), the entities in
  sandbox_store.py with GUID keys `(guid'…')`, OData envelopes, `$filter` (sandbox_query.py subset;
  anything else is a 400), `$select`, `$top`, `$expand` of order/invoice lines, `__next` paging by 60
  (standard) and 1 000 (sync) with `$skiptoken`, `/Date(ms)/` dates, `current/Me`.
* Sync API: `sync/CRM/Accounts`, `sync/Logistics/Items`, `sync/SalesOrder/SalesOrderHeaders`,
  `…/SalesOrderLines`, `sync/Inventory/StockPositions`, `sync/Deleted`, by `Timestamp gt {n}L`.
* Rate limits per division, fixed windows on the clock: minutely and daily counts, all six
  `X-RateLimit-*` headers (resets in epoch ms) on every call, only the minutely ones on a 429 for
  an exhausted minute. Configurable, switchable off (then no headers).
* Exact-shaped errors `{"error": {"code": "", "message": {"lang": "", "value": "…"}}}`.

Sandbox-only control routes (no auth; bind to localhost): `GET /sandbox/state` (its `oauth` part
counts refreshes and refused token requests by error, e.g. `{"invalid_grant": 1}`), `POST
/sandbox/reset`, `POST /sandbox/seed/items {"skus": [...]}`, `POST /sandbox/seed {"entity", "records"}`,
`POST /sandbox/update {"entity", "id", "fields"}` (a change a person makes in Exact, e.g. an order delivered),
`POST /sandbox/ratelimit {"per_minute", "per_day", "enabled"}`, `GET /sandbox/calls`, `POST
/sandbox/expire-tokens`, `POST /sandbox/fail {"status": 503, "times": 1, "retry_after": 2}` (the next API
requests fail so; `retry_after` adds a `Retry-After` header).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from connectors.exactonline.odata import format_date
from connectors.exactonline.sandbox_query import QueryError, compile_filter, parse_select
from connectors.exactonline.sandbox_store import SPECS, SYNC_VIEWS, Record, SandboxError, Spec, Store, sync_fields

_KEYED = re.compile(r"^(?P<path>[A-Za-z]+/[A-Za-z]+)\((?:guid)?'(?P<key>[^']*)'\)$")


@dataclass
class SandboxConfig:
    client_id: str = "koppel-sandbox"
    client_secret: str = field(default="sandbox-secret", repr=False)
    redirect_uris: tuple[str, ...] = ()
    """Allowed redirect URIs; empty allows any."""
    auto_approve: bool = True
    token_lifetime: int = 600
    refresh_window: int = 30
    """A refresh is refused while the access token has more than this many seconds left; 0 disables."""
    code_lifetime: int = 180
    divisions: tuple[int, ...] = (1234567,)
    per_minute: int = 60
    per_day: int = 5000
    rate_limits: bool = True
    page_size: int = 60
    sync_page_size: int = 1000
    timestamps_as_strings: bool = False


@dataclass
class _Grant:
    refresh_token: str
    access_token: str
    expires_at: float


@dataclass
class _Window:
    division: int
    start_ms: int
    received: int = 0
    accepted: int = 0
    throttled: int = 0


def exact_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": "", "message": {"lang": "", "value": message}}}
    return JSONResponse(body, status_code=status, headers=headers)


def _oauth_error(status: int, error: str, description: str = "") -> JSONResponse:
    body = {"error": error, **({"error_description": description} if description else {})}
    return JSONResponse(body, status_code=status)


class ExactSandbox:
    """State and behaviour behind the Starlette routes; `app.state.sandbox` in tests."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.initial = replace(config)
        self.clock = clock
        self.store = Store(config.divisions, clock)
        self.codes: dict[str, tuple[str, float]] = {}
        self.grants: dict[str, _Grant] = {}
        self.spent_refresh_tokens: set[str] = set()
        self.access: dict[str, float] = {}
        self.refreshes = 0
        self.token_requests = 0
        self.token_errors: Counter[str] = Counter()
        """Refused token requests by OAuth error (`invalid_grant` for a spent refresh token, …)."""
        self.calls: Counter[str] = Counter()
        self.windows: dict[tuple[int, int], _Window] = {}
        self.day_used: Counter[tuple[int, int]] = Counter()
        self.faults: list[tuple[int, int | None]] = []
        """Injected failures of the next API requests: (status, Retry-After seconds or None)."""

    # -- OAuth ------------------------------------------------------------------------------------

    def issue_code(self, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = (redirect_uri, self.clock())
        return code

    def _issue(self, grant_id: str | None = None) -> dict[str, str]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = self.clock() + self.config.token_lifetime
        self.grants[grant_id or secrets.token_hex(8)] = _Grant(refresh, access, expires_at)
        self.access[access] = expires_at
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": str(self.config.token_lifetime),
            "refresh_token": refresh,
        }

    def token(self, form: dict[str, str]) -> JSONResponse:
        self.token_requests += 1
        self.calls["POST oauth2/token"] += 1
        response = self._grant(form)
        if response.status_code >= 400:
            error = json.loads(bytes(response.body)).get("error")
            self.token_errors["not_expired" if response.status_code == 401 else str(error)] += 1
        return response

    def _grant(self, form: dict[str, str]) -> JSONResponse:
        if form.get("client_id") != self.config.client_id or form.get("client_secret") != self.config.client_secret:
            return _oauth_error(400, "invalid_client")
        grant_type = form.get("grant_type")
        now = self.clock()
        if grant_type == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or now - issued[1] > self.config.code_lifetime:
                return _oauth_error(400, "invalid_grant", "authorization code unknown, used or expired")
            if form.get("redirect_uri") != issued[0]:
                return _oauth_error(400, "invalid_grant", "redirect_uri does not match")
            return JSONResponse(self._issue())
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            grant_id = next((g for g, grant in self.grants.items() if grant.refresh_token == token), None)
            if grant_id is None:
                return _oauth_error(400, "invalid_grant", "refresh token unknown or already used")
            grant = self.grants[grant_id]
            left = self.access.get(grant.access_token, 0) - now
            if self.config.refresh_window and left > self.config.refresh_window:
                return JSONResponse(
                    {"error": "invalid_request", "error_description": "Access token not expired"}, status_code=401
                )
            self.spent_refresh_tokens.add(token)
            self.refreshes += 1
            return JSONResponse(self._issue(grant_id))
        return _oauth_error(400, "unsupported_grant_type")

    def authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires_at = self.access.get(token.strip()) if scheme.lower() == "bearer" else None
        return expires_at is not None and expires_at > self.clock()

    def expire_tokens(self) -> int:
        now = self.clock()
        for token in self.access:
            self.access[token] = min(self.access[token], now)
        return len(self.access)

    # -- rate limits --------------------------------------------------------------------------------

    def rate(self, division: int) -> tuple[bool, dict[str, str]]:
        cfg = self.config
        if not cfg.rate_limits:
            return True, {}
        now_ms = int(self.clock() * 1000)
        minute, day = now_ms // 60_000, now_ms // 86_400_000
        window = self.windows.setdefault((division, minute), _Window(division, minute * 60_000))
        window.received += 1
        minutely = {
            "X-RateLimit-Minutely-Limit": str(cfg.per_minute),
            "X-RateLimit-Minutely-Reset": str((minute + 1) * 60_000),
        }
        daily = {"X-RateLimit-Limit": str(cfg.per_day), "X-RateLimit-Reset": str((day + 1) * 86_400_000)}
        if cfg.per_minute and window.accepted >= cfg.per_minute:
            window.throttled += 1
            return False, {**minutely, "X-RateLimit-Minutely-Remaining": "0"}
        if cfg.per_day and self.day_used[(division, day)] >= cfg.per_day:
            window.throttled += 1
            return False, {
                **minutely,
                "X-RateLimit-Minutely-Remaining": str(cfg.per_minute - window.accepted),
                **daily,
                "X-RateLimit-Remaining": "0",
            }
        window.accepted += 1
        self.day_used[(division, day)] += 1
        return True, {
            **minutely,
            "X-RateLimit-Minutely-Remaining": str(max(0, cfg.per_minute - window.accepted)),
            **daily,
            "X-RateLimit-Remaining": str(max(0, cfg.per_day - self.day_used[(division, day)])),
        }

    # -- rendering ----------------------------------------------------------------------------------

    def _value(self, name: str, value: Any) -> Any:
        if isinstance(value, datetime):
            return format_date(value)
        if name == "Timestamp" and self.config.timestamps_as_strings:
            return str(value)
        return value

    def render(
        self, base: str, division: int, spec: Spec | None, record: Record, names: list[str], expand: bool = False
    ) -> Record:
        out: Record = {}
        if spec is not None and spec.key in record:
            uri = f"{base}/api/v1/{division}/{spec.path}(guid'{record[spec.key]}')"
            out["__metadata"] = {"uri": uri, "type": spec.type_name}
        for name in names:
            if spec is not None and name == spec.lines:
                if expand:
                    lines = self.store.lines_of(division, spec, record[spec.key])
                    line_spec = SPECS[spec.line_path or ""]
                    out[name] = {
                        "results": [self.render(base, division, line_spec, line, _visible(line_spec)) for line in lines]
                    }
                else:
                    out[name] = {
                        "__deferred": {"uri": f"{base}/api/v1/{division}/{spec.path}(guid'{record[spec.key]}')/{name}"}
                    }
            else:
                out[name] = self._value(name, record.get(name))
        return out

    def dump(self) -> dict[str, Any]:
        entities = {
            str(division): {
                path: [self.render("", division, SPECS[path], r, sorted(r)) for r in rows.values()]
                for path, rows in tables.items()
            }
            for division, tables in self.store.tables.items()
        }
        return {
            "divisions": list(self.config.divisions),
            "timestamp": self.store.timestamp,
            "entities": entities,
            "deleted": {
                str(d): [self.render("", d, None, r, sorted(r)) for r in rows] for d, rows in self.store.deleted.items()
            },
            "oauth": {
                "refreshes": self.refreshes,
                "token_requests": self.token_requests,
                "refused": dict(self.token_errors),
                "live_access_tokens": sum(1 for t in self.access.values() if t > self.clock()),
                "pending_codes": len(self.codes),
            },
            "config": {k: v for k, v in asdict(self.config).items() if k != "client_secret"},
            "calls": self.call_stats(),
        }

    def call_stats(self) -> dict[str, Any]:
        return {
            "total": sum(self.calls.values()),
            "by_endpoint": dict(sorted(self.calls.items())),
            "windows": [asdict(w) for w in sorted(self.windows.values(), key=lambda w: (w.division, w.start_ms))],
        }

    def reset(self, *, oauth: bool = False) -> None:
        self.config = replace(self.initial)
        self.store = Store(self.config.divisions, self.clock)
        self.calls.clear()
        self.windows.clear()
        self.day_used.clear()
        self.faults.clear()
        if oauth:
            self.codes.clear()
            self.grants.clear()
            self.access.clear()
            self.spent_refresh_tokens.clear()
            self.token_errors.clear()
            self.refreshes = self.token_requests = 0


def _visible(spec: Spec) -> list[str]:
    return sorted(spec.fields)


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _page(
    rows: list[Record], key: Callable[[Record], Any], skip: Any, size: int, top: int | None
) -> tuple[list[Record], bool]:
    rows = sorted(rows, key=key)
    if skip is not None:
        rows = [r for r in rows if key(r) > skip]
    limit = size if top is None else min(size, top)
    return rows[:limit], len(rows) > limit and (top is None or top > limit)


async def _api(request: Request) -> Response:
    sandbox: ExactSandbox = request.app.state.sandbox
    rest: str = request.path_params["rest"]
    if not sandbox.authorised(request):
        return exact_error(401, "Unauthorized: access token missing, invalid or expired")
    if rest == "current/Me":
        division, path = sandbox.config.divisions[0], "current/Me"
    else:
        head, _, path = rest.partition("/")
        if not head.isdigit():
            return exact_error(404, f"Unknown endpoint: {rest}")
        division = int(head)
    matched = _KEYED.match(path)
    endpoint, key = (matched.group("path"), matched.group("key")) if matched else (path, None)
    sandbox.calls[f"{request.method} {endpoint}"] += 1
    allowed, headers = sandbox.rate(division)
    if not allowed:
        return exact_error(429, "API rate limit exceeded", headers)
    if sandbox.faults:
        status, retry_after = sandbox.faults.pop(0)
        if retry_after is not None:
            headers = {**headers, "Retry-After": str(retry_after)}
        return exact_error(status, "Service unavailable (injected by the sandbox)", headers)
    try:
        response = await _dispatch(request, sandbox, division, endpoint, key)
    except SandboxError as exc:
        return exact_error(exc.status, exc.message, headers)
    except QueryError as exc:
        return exact_error(400, str(exc), headers)
    response.headers.update(headers)
    return response


async def _dispatch(request: Request, sandbox: ExactSandbox, division: int, endpoint: str, key: str | None) -> Response:
    store, cfg, base, query = sandbox.store, sandbox.config, _base(request), request.query_params
    store.table(division, "crm/Accounts")  # 403 for a division we do not hold
    if endpoint == "current/Me":
        me = {
            "CurrentDivision": division,
            "FullName": "Sandbox User",
            "UserName": "sandbox@example.com",
            "UserID": "0e5f3a38-0000-4000-8000-000000000001",
        }
        names = parse_select(query.get("$select"), set(me)) or sorted(me)
        return JSONResponse({"d": {"results": [{n: me[n] for n in names}]}})
    if endpoint in SYNC_VIEWS or endpoint == "sync/Deleted":
        if request.method != "GET" or key is not None:
            raise SandboxError(405, "The Sync API is read-only")
        return _list(
            request,
            sandbox,
            division,
            endpoint,
            None,
            store.sync_rows(division, endpoint),
            sync_fields(endpoint),
            lambda r: r["Timestamp"],
            cfg.sync_page_size,
        )
    spec = SPECS.get(endpoint)
    if spec is None or not spec.exposed:
        raise SandboxError(404, f"Unknown endpoint: {endpoint}")
    if request.method == "GET":
        if key is not None:
            record = store.get(division, endpoint, key)
            names = parse_select(query.get("$select"), spec.fields) or _visible(spec)
            expand = query.get("$expand") == spec.lines
            return JSONResponse({"d": sandbox.render(base, division, spec, record, names, expand)})
        return _list(
            request,
            sandbox,
            division,
            endpoint,
            spec,
            store.rows(division, endpoint),
            spec.fields,
            lambda r: r[spec.key],
            cfg.page_size,
        )
    if request.method == "POST" and key is None:
        record = store.create(division, endpoint, await _json(request))
        names = _visible(spec)
        return JSONResponse({"d": sandbox.render(base, division, spec, record, names, expand=True)}, status_code=201)
    if request.method == "PUT" and key is not None:
        store.update(division, endpoint, key, await _json(request))
        return Response(status_code=204)
    if request.method == "DELETE" and key is not None:
        store.delete(division, endpoint, key)
        return Response(status_code=204)
    raise SandboxError(405, f"{request.method} is not supported on {endpoint}{'(…)' if key else ''}")


def _list(
    request: Request,
    sandbox: ExactSandbox,
    division: int,
    endpoint: str,
    spec: Spec | None,
    rows: list[Record],
    known: frozenset[str],
    key: Callable[[Record], Any],
    size: int,
) -> Response:
    query = request.query_params
    names = parse_select(query.get("$select"), known) or sorted(known)
    if "$filter" in query:
        predicate = compile_filter(query["$filter"], known)
        rows = [r for r in rows if predicate(r)]
    top = None
    if "$top" in query:
        if not query["$top"].isdigit():
            raise QueryError("$top must be a non-negative integer")
        top = int(query["$top"])
    skip = _skiptoken(query.get("$skiptoken"), timestamp=spec is None)
    page, more = _page(rows, key, skip, size, top)
    expand = spec is not None and query.get("$expand") == spec.lines
    base = _base(request)
    body: Record = {"results": [sandbox.render(base, division, spec, r, names, expand) for r in page]}
    if more and page:
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        last = key(page[-1])
        params["$skiptoken"] = f"{last}L" if spec is None else f"guid'{last}'"
        if top is not None:
            params["$top"] = str(top - len(page))
        body["__next"] = f"{base}/api/v1/{division}/{endpoint}?{urlencode(params, quote_via=quote, safe=',$')}"
    return JSONResponse({"d": body})


def _skiptoken(value: str | None, *, timestamp: bool) -> Any:
    if value is None:
        return None
    if timestamp:
        text = value.removesuffix("L")
        if not text.isdigit():
            raise QueryError("$skiptoken is not valid")
        return int(text)
    matched = re.fullmatch(r"guid'([0-9a-fA-F-]{36})'", value)
    if matched is None:
        raise QueryError("$skiptoken is not valid")
    return matched.group(1).lower()


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise SandboxError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SandboxError(400, "Request body must be a JSON object")
    return body


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))


async def _auth(request: Request) -> Response:
    sandbox: ExactSandbox = request.app.state.sandbox
    params = dict(request.query_params) if request.method == "GET" else await _form(request)
    cfg = sandbox.config
    redirect_uri, state = params.get("redirect_uri", ""), params.get("state", "")
    if params.get("client_id") != cfg.client_id:
        return HTMLResponse("<h1>Unknown client_id</h1>", status_code=400)
    if not redirect_uri or (cfg.redirect_uris and redirect_uri not in cfg.redirect_uris):
        return HTMLResponse("<h1>redirect_uri not registered for this app</h1>", status_code=400)
    if params.get("response_type", "code") != "code":
        return HTMLResponse("<h1>Only response_type=code is supported</h1>", status_code=400)
    separator = "&" if "?" in redirect_uri else "?"
    if request.method == "POST":
        if params.get("decision") != "approve":
            return RedirectResponse(
                f"{redirect_uri}{separator}{urlencode({'error': 'access_denied', 'state': state})}", status_code=302
            )
    elif not cfg.auto_approve:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        return HTMLResponse(
            "<h1>Exact Online sandbox</h1><p>Allow this app to access your administration?</p>"
            f'<form method="post">{hidden}<button name="decision" value="approve">Approve</button>'
            '<button name="decision" value="deny">Deny</button></form>'
        )
    code = sandbox.issue_code(redirect_uri)
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}", status_code=302)


async def _token(request: Request) -> Response:
    return request.app.state.sandbox.token(await _form(request))


async def _control(request: Request) -> Response:
    sandbox: ExactSandbox = request.app.state.sandbox
    action = request.path_params["action"]
    try:
        body = await _json(request) if request.method == "POST" and (await request.body()).strip() else {}
        division = int(body.get("division", sandbox.config.divisions[0]))
        if action == "state":
            return JSONResponse(sandbox.dump())
        if action == "calls":
            return JSONResponse(sandbox.call_stats())
        if request.method != "POST":
            return exact_error(405, f"POST /sandbox/{action}")
        if action == "reset":
            sandbox.reset(oauth=bool(body.get("oauth")))
            return JSONResponse({"reset": True})
        if action == "seed/items":
            items = sandbox.store.seed_items(
                division, [str(s) for s in body.get("skus", [])], stock=float(body.get("stock", 100))
            )
            return JSONResponse({"items": items})
        if action == "seed":
            path = str(body.get("entity", ""))
            if path not in SPECS or not SPECS[path].writable:
                return exact_error(400, f"cannot seed {path!r}")
            created = [sandbox.store.create(division, path, r) for r in body.get("records", [])]
            return JSONResponse({"ids": [r[SPECS[path].key] for r in created]})
        if action == "update":  # what a person does in Exact (e.g. deliver an order), without a token
            path, key = str(body.get("entity", "")), str(body.get("id", "")).lower()
            if path not in SPECS or not isinstance(body.get("fields"), dict):
                return exact_error(400, "update takes entity, id and fields")
            sandbox.store.update(division, path, key, body["fields"])
            return JSONResponse({"updated": key})
        if action == "ratelimit":
            names = {"per_minute": "per_minute", "per_day": "per_day", "enabled": "rate_limits"}
            for given, attribute in names.items():
                if given in body:
                    setattr(sandbox.config, attribute, type(getattr(sandbox.config, attribute))(body[given]))
            return JSONResponse({k: getattr(sandbox.config, v) for k, v in names.items()})
        if action == "expire-tokens":
            return JSONResponse({"expired": sandbox.expire_tokens()})
        if action == "fail":
            retry_after = None if body.get("retry_after") is None else int(body["retry_after"])
            sandbox.faults.extend([(int(body.get("status", 503)), retry_after)] * int(body.get("times", 1)))
            return JSONResponse({"pending_faults": len(sandbox.faults)})
    except SandboxError as exc:
        return exact_error(exc.status, exc.message)
    except (TypeError, ValueError) as exc:
        return exact_error(400, f"bad sandbox request: {exc}")
    return exact_error(404, f"Unknown sandbox action: {action}")


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app. `overrides` set SandboxConfig fields (`per_minute=5`, `token_lifetime=2`, …)."""
    cfg = replace(config or SandboxConfig(), **overrides)
    app = Starlette(routes=[
        Route("/api/oauth2/auth", _auth, methods=["GET", "POST"]),
        Route("/api/oauth2/token", _token, methods=["POST"]),
        Route("/api/v1/{rest:path}", _api, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/sandbox/{action:path}", _control, methods=["GET", "POST"]),
    ])  # fmt: skip
    app.state.sandbox = ExactSandbox(cfg, clock)
    return app


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m connectors.exactonline.sandbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--per-minute", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=5000)
    parser.add_argument("--no-rate-limit", action="store_true", help="no limits and no rate-limit headers")
    parser.add_argument("--token-lifetime", type=int, default=600)
    parser.add_argument("--client-id", default=SandboxConfig.client_id)
    parser.add_argument("--client-secret", default=SandboxConfig.client_secret)
    parser.add_argument("--consent-page", action="store_true", help="show a consent page instead of auto-approving")
    parser.add_argument("--seed-skus", default="", help="comma-separated item codes to create at start")
    args = parser.parse_args(argv)
    app = create_sandbox(
        per_minute=args.per_minute, per_day=args.per_day, rate_limits=not args.no_rate_limit,
        token_lifetime=args.token_lifetime, client_id=args.client_id, client_secret=args.client_secret,
        auto_approve=not args.consent_page,
    )  # fmt: skip
    skus = [s.strip() for s in args.seed_skus.split(",") if s.strip()]
    if skus:
        sandbox: ExactSandbox = app.state.sandbox
        sandbox.store.seed_items(sandbox.config.divisions[0], skus)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["ExactSandbox", "SandboxConfig", "create_sandbox", "exact_error"]
