"""The REST and Sync API routes of the Exact sandbox: `/api/v1/{division}/…` and `/api/v1/current/Me`.

Each route checks the bearer token (401), counts the call under its endpoint (`GET crm/Accounts`, the key
left out), spends the division's rate budget (429 with Exact's headers), takes an injected fault, if one is
due, and refuses a division the user has no access to (403). Unknown endpoints answer 404, known ones
asked with an unsupported method 405 — both Exact-shaped, after the same checks. The webhook subscriptions
(`webhooks/WebhookSubscriptions`, webhooks.py) go through the same steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.exactonline.sandbox.entities import SPECS, SYNC_VIEWS, Record, SandboxError, Spec, sync_fields
from connectors.exactonline.sandbox.query import QueryError, compile_filter, parse_select
from connectors.exactonline.sandbox.shapes import render, visible
from connectors.exactonline.sandbox.state import USER, ExactSandbox
from connectors.exactonline.sandbox.webhooks import SUBSCRIPTIONS
from connectors.sandboxkit import Fault, Pipeline, add_headers, cursor_page
from connectors.sandboxkit.routing import ErrorRenderer, Handler

PREFIX = "/api/v1"
_KEYED = re.compile(r"^(?P<path>[A-Za-z]+/[A-Za-z]+)\((?:guid)?'(?P<key>[^']*)'\)$")
_KEY_FORMS = ("(guid'{key}')", "('{key}')")
_SYNC = (*SYNC_VIEWS, "sync/Deleted")
_METHODS = ("GET", "POST", "PUT", "DELETE")
"""What the API answers at all; PATCH is Starlette's plain 405."""


def exact_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": "", "message": {"lang": "", "value": message}}}
    return JSONResponse(body, status_code=status, headers=headers)


def sandbox_error(request: Request, exc: SandboxError) -> Response:
    return exact_error(exc.status, exc.message)


def _query_error(request: Request, exc: QueryError) -> Response:
    return exact_error(400, str(exc))


def _fault_response(fault: Fault) -> Response:
    return exact_error(fault.status or 500, "Service unavailable (injected by the sandbox)")


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _unrouted_endpoint(request: Request) -> tuple[str, bool]:
    """An unrouted path's endpoint (the key left out) and whether it named a key."""
    matched = _KEYED.match(request.path_params["rest"])
    return (matched.group("path"), True) if matched else (request.path_params["rest"], False)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise SandboxError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SandboxError(400, "Request body must be a JSON object")
    return body


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


class ODataAPI:
    """The handlers of `/api/v1/…`, over one sandbox."""

    def __init__(self, sandbox: ExactSandbox) -> None:
        self.sandbox = sandbox

    def _division(self, request: Request) -> int:
        return int(request.path_params.get("division", self.sandbox.config.divisions[0]))

    def routes(self) -> list[Route]:
        sb = self.sandbox
        errors: dict[type[Exception], ErrorRenderer] = {SandboxError: sandbox_error, QueryError: _query_error}
        steps = [self.authorise, sb.counters.step, self.meter, sb.faults.step(_fault_response), self.check_division]
        api = Pipeline(steps, errors, prefix=PREFIX)
        routes = [api.route("/current/Me", self.me, name="current/Me")]
        for spec in SPECS.values():
            if not spec.exposed:
                continue
            path = f"/{{division:int}}/{spec.path}"
            routes += [
                api.route(path, self.lister(spec), name=spec.path),
                api.route(path, self.creator(spec), methods=["POST"], name=spec.path),
            ]
            for form in _KEY_FORMS:
                keyed = path + form
                routes += [
                    api.route(keyed, self.getter(spec), name=spec.path),
                    api.route(keyed, self.updater(spec), methods=["PUT"], name=spec.path),
                    api.route(keyed, self.deleter(spec), methods=["DELETE"], name=spec.path),
                ]
        routes += [api.route(f"/{{division:int}}/{view}", self.sync_lister(view), name=view) for view in _SYNC]
        hooks = f"/{{division:int}}/{SUBSCRIPTIONS.path}"
        routes += [
            api.route(hooks, self.list_subscriptions, name=SUBSCRIPTIONS.path),
            api.route(hooks, self.subscribe, methods=["POST"], name=SUBSCRIPTIONS.path),
        ]
        for form in _KEY_FORMS:
            routes += [
                api.route(hooks + form, self.get_subscription, name=SUBSCRIPTIONS.path),
                api.route(hooks + form, self.unsubscribe, methods=["DELETE"], name=SUBSCRIPTIONS.path),
            ]
        routes.append(api.route("/{division:int}/{rest:path}", self.unrouted, methods=_METHODS,
                                name=lambda request: _unrouted_endpoint(request)[0]))  # fmt: skip
        unknown = Pipeline([self.authorise], errors, prefix=PREFIX)
        routes.append(unknown.route("/{rest:path}", self.unknown, methods=_METHODS))
        return routes

    # -- steps ----------------------------------------------------------------------------------------

    async def authorise(self, request: Request) -> Response | None:
        if self.sandbox.tokens.valid(request):
            return None
        return exact_error(401, "Unauthorized: access token missing, invalid or expired")

    async def meter(self, request: Request) -> Response | None:
        """The division's rate budget: its headers on every answer, or the 429."""
        allowed, headers = self.sandbox.rate_limits.check(self._division(request), self.sandbox.config)
        if not allowed:
            return exact_error(429, "API rate limit exceeded", headers)
        add_headers(request, headers)
        return None

    async def check_division(self, request: Request) -> None:
        self.sandbox.store.table(self._division(request), "crm/Accounts")  # 403 for a division we do not hold

    # -- handlers -------------------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        me = {"CurrentDivision": self._division(request), **USER}
        names = parse_select(request.query_params.get("$select"), set(me)) or sorted(me)
        return JSONResponse({"d": {"results": [{n: me[n] for n in names}]}})

    def _render(self, request: Request, spec: Spec | None, record: Record, names: list[str], expand: bool) -> Record:
        return render(self.sandbox.store, _base(request), self._division(request), spec, record, names, expand=expand,
                      timestamps_as_strings=self.sandbox.config.timestamps_as_strings)  # fmt: skip

    def sync_lister(self, view: str) -> Handler:
        async def sync_list(request: Request) -> Response:
            rows = self.sandbox.store.sync_rows(self._division(request), view)
            return self._list(request, view, None, rows, sync_fields(view), lambda r: r["Timestamp"],
                              self.sandbox.config.sync_page_size)  # fmt: skip

        return sync_list

    def lister(self, spec: Spec) -> Handler:
        async def entity_list(request: Request) -> Response:
            rows = self.sandbox.store.rows(self._division(request), spec.path)
            return self._list(request, spec.path, spec, rows, spec.fields, lambda r: r[spec.key],
                              self.sandbox.config.page_size)  # fmt: skip

        return entity_list

    def getter(self, spec: Spec) -> Handler:
        async def get(request: Request) -> Response:
            record = self.sandbox.store.get(self._division(request), spec.path, request.path_params["key"])
            query = request.query_params
            names = parse_select(query.get("$select"), spec.fields) or visible(spec)
            return JSONResponse({"d": self._render(request, spec, record, names, query.get("$expand") == spec.lines)})

        return get

    def creator(self, spec: Spec) -> Handler:
        async def create(request: Request) -> Response:
            record = self.sandbox.store.create(self._division(request), spec.path, await _json(request))
            return JSONResponse({"d": self._render(request, spec, record, visible(spec), True)}, status_code=201)

        return create

    def updater(self, spec: Spec) -> Handler:
        async def update(request: Request) -> Response:
            self.sandbox.store.update(self._division(request), spec.path, request.path_params["key"],
                                      await _json(request))  # fmt: skip
            return Response(status_code=204)

        return update

    def deleter(self, spec: Spec) -> Handler:
        async def delete(request: Request) -> Response:
            self.sandbox.store.delete(self._division(request), spec.path, request.path_params["key"])
            return Response(status_code=204)

        return delete

    async def unrouted(self, request: Request) -> Response:
        endpoint, keyed = _unrouted_endpoint(request)
        if endpoint in _SYNC:
            raise SandboxError(405, "The Sync API is read-only")
        spec = SUBSCRIPTIONS if endpoint == SUBSCRIPTIONS.path else SPECS.get(endpoint)
        if spec is None or not spec.exposed:
            raise SandboxError(404, f"Unknown endpoint: {endpoint}")
        raise SandboxError(405, f"{request.method} is not supported on {endpoint}{'(…)' if keyed else ''}")

    # -- webhook subscriptions ------------------------------------------------------------------------

    async def list_subscriptions(self, request: Request) -> Response:
        rows = self.sandbox.webhooks.listing(self._division(request))
        return self._list(request, SUBSCRIPTIONS.path, SUBSCRIPTIONS, rows, SUBSCRIPTIONS.fields, lambda r: r["ID"],
                          self.sandbox.config.page_size)  # fmt: skip

    async def subscribe(self, request: Request) -> Response:
        """Exact POSTs the empty validation request to the CallbackURL before it answers."""
        created = await self.sandbox.webhooks.subscribe(self._division(request), await _json(request), _base(request))
        return JSONResponse({"d": self._render(request, SUBSCRIPTIONS, created, visible(SUBSCRIPTIONS), False)},
                            status_code=201)  # fmt: skip

    async def get_subscription(self, request: Request) -> Response:
        found = self.sandbox.webhooks.get(self._division(request), request.path_params["key"])
        names = parse_select(request.query_params.get("$select"), SUBSCRIPTIONS.fields) or visible(SUBSCRIPTIONS)
        return JSONResponse({"d": self._render(request, SUBSCRIPTIONS, found, names, False)})

    async def unsubscribe(self, request: Request) -> Response:
        self.sandbox.webhooks.delete(self._division(request), request.path_params["key"])
        return Response(status_code=204)

    async def unknown(self, request: Request) -> Response:
        return exact_error(404, f"Unknown endpoint: {request.path_params['rest']}")

    # -- lists ----------------------------------------------------------------------------------------

    def _list(
        self,
        request: Request,
        endpoint: str,
        spec: Spec | None,
        rows: list[Record],
        known: frozenset[str],
        key: Callable[[Record], Any],
        size: int,
    ) -> Response:
        """A list in Exact's envelope, `$filter`ed, `$select`ed, paged by `size` with `__next` and `$skiptoken`."""
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
        after = _skiptoken(query.get("$skiptoken"), timestamp=spec is None)
        page = cursor_page(rows, key=key, after=after, size=size, top=top)
        expand = spec is not None and query.get("$expand") == spec.lines
        body: Record = {"results": [self._render(request, spec, r, names, expand) for r in page.items]}
        if page.after is not None:
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = f"{page.after}L" if spec is None else f"guid'{page.after}'"
            if top is not None:
                params["$top"] = str(top - len(page.items))
            url = f"{_base(request)}/api/v1/{self._division(request)}/{endpoint}"
            body["__next"] = f"{url}?{urlencode(params, quote_via=quote, safe=',$')}"
        return JSONResponse({"d": body})
