"""A sandbox's API routes: Starlette's own `Route` templates (`/orders/{id:int}`), each run through a `Pipeline`.

A pipeline holds what a real API does before it looks at the resource — count the call, check the
credentials, spend the rate budget, fail on purpose — as *steps*, `async (request) -> Response | None`:
a step that returns a response answers in place of the handler. Steps and handlers raise the
platform's own errors; the pipeline renders them with the renderers it was given (first match wins),
and every response it returns carries the headers the steps added with `add_headers` (a rate
limit's, a fault's `Retry-After`).

Unknown paths and wrong methods are the platform's business too: register a catch-all route last
(`/{path:path}`, `ALL_METHODS`), which Starlette prefers over a route whose path matched but whose
methods did not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]
Step = Callable[[Request], Awaitable[Response | None]]
ErrorRenderer = Callable[[Request, Any], Response]
"""Renders one platform error (the exception) as the platform answers it."""
RouteName = str | Callable[[Request], str]
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

_ROUTE = "sandboxkit.route"
_HEADERS = "sandboxkit.headers"


def template_name(path: str) -> str:
    """`/orders/{id:int}` → `orders/{id}`: a route's name in the call counters."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", r"{\1}", path).strip("/")


def route_name(request: Request) -> str:
    """The name the pipeline gave the route this request took (its template without the prefix)."""
    return str(request.scope.get(_ROUTE, request.url.path))


def add_headers(request: Request, headers: Mapping[str, str]) -> None:
    """Headers for whatever response this request gets from the pipeline (the handler's, an error's, a step's)."""
    request.scope.setdefault(_HEADERS, {}).update(headers)


class Pipeline:
    """The steps every route of one kind runs before its handler, in order, and how errors answer.

    `prefix` is put before every path (`/wp-json/wc/v3`); route names leave it out.
    """

    def __init__(
        self,
        steps: Sequence[Step] = (),
        errors: Mapping[type[Exception], ErrorRenderer] | None = None,
        *,
        prefix: str = "",
    ) -> None:
        self.steps = list(steps)
        self.errors = dict(errors or {})
        self.prefix = prefix.rstrip("/")

    def route(
        self, path: str, handler: Handler, *, methods: Sequence[str] = ("GET",), name: RouteName | None = None
    ) -> Route:
        label: RouteName = template_name(path) if name is None else name

        async def endpoint(request: Request) -> Response:
            request.scope[_ROUTE] = label(request) if callable(label) else label
            return await self.run(request, handler)

        return Route(self.prefix + path, endpoint, methods=list(methods))

    async def run(self, request: Request, handler: Handler) -> Response:
        try:
            response = None
            for step in self.steps:
                if (response := await step(request)) is not None:
                    break
            if response is None:
                response = await handler(request)
        except Exception as exc:
            render = next((r for kind, r in self.errors.items() if isinstance(exc, kind)), None)
            if render is None:
                raise
            response = render(request, exc)
        response.headers.update(request.scope.get(_HEADERS, {}))
        return response


async def request_fields(request: Request) -> dict[str, Any]:
    """A request body as fields: a JSON object, or form fields; `{}` when empty. ValueError for anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    if raw.lstrip()[:1] not in (b"{", b"["):
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data
