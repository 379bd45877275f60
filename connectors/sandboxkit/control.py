"""The `/sandbox/...` control routes: sandbox-only, without auth (bind a sandbox to localhost).

Every sandbox has
    GET  /sandbox/state        what the sandbox holds (`Sandbox.state()`)
    POST /sandbox/reset        empty it (`Sandbox.reset(fields)`), faults and counters included
    POST /sandbox/fail         queue a fault: {"status", "times", "seconds", "retry_after", "delay", "drop"}
    GET  /sandbox/faults       the faults waiting; DELETE: drop them
    GET  /sandbox/counters     the API calls answered, per method and route
and, with a webhook sender, `GET /sandbox/deliveries?min=&timeout=&<filter>=` (waits up to `timeout` s,
at most 30, for `min` entries) and `GET|POST /sandbox/deliveries/concurrency {"concurrency": N}` (how many
deliveries the sender keeps in flight at once, 1-64; 1, one at a time, unless the sandbox was made otherwise;
a reset leaves it as it is). A sandbox adds its own (`Control.route`): seeding, changes a person
makes in the platform's UI. Bad fields answer 400 and unknown routes 404 (405 for a wrong method), in
the error shape the sandbox gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route

from connectors.sandboxkit.app import Sandbox
from connectors.sandboxkit.routing import ALL_METHODS, ErrorRenderer, Handler, Pipeline, request_fields
from connectors.sandboxkit.webhooks import WebhookSender

ControlError = Callable[[int, str], Response]
DELIVERY_WAIT_LIMIT = 30.0


def json_error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


class Control:
    """The control routes of one sandbox; `mount()` them at `/sandbox`."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        error: ControlError = json_error,
        errors: Mapping[type[Exception], ErrorRenderer] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.error = error

        def bad_request(request: Request, exc: Exception) -> Response:
            return error(400, f"bad sandbox request: {exc}")

        self.pipeline = Pipeline(errors={**(errors or {}), ValueError: bad_request, TypeError: bad_request})
        self.routes: list[BaseRoute] = []
        self.route("/state", self._state, methods=["GET"])
        self.route("/reset", self._reset)
        self.route("/fail", self._fail)
        self.route("/faults", self._faults, methods=["GET", "DELETE"])
        self.route("/counters", self._counters, methods=["GET"])

    def route(self, path: str, handler: Handler, *, methods: Sequence[str] = ("POST",)) -> None:
        self.routes.append(self.pipeline.route(path, handler, methods=methods))

    def deliveries(self, sender: WebhookSender, **filters: Callable[[str], Any]) -> None:
        """`GET /sandbox/deliveries`: the sender's log, filtered on the fields named (`webhook_id=int`)."""

        async def listing(request: Request) -> Response:
            query = request.query_params
            try:
                match = {name: convert(query[name]) for name, convert in filters.items() if query.get(name)}
                wanted = int(query.get("min") or 0)
                timeout = min(float(query.get("timeout") or 0), DELIVERY_WAIT_LIMIT)
            except ValueError:
                names = [*filters, "min"]
                listed = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
                return self.error(400, f"{listed} are integers, timeout a number of seconds")
            await sender.log.wait(lambda: len(sender.log.entries(**match)) >= wanted, timeout)
            return JSONResponse({"deliveries": sender.log.entries(**match), "queued": sender.queued})

        async def concurrency(request: Request) -> Response:
            if request.method == "POST":
                value: Any = (await request_fields(request)).get("concurrency")
                if isinstance(value, str) and value.strip().isdigit():  # a form field
                    value = int(value)
                try:
                    sender.concurrency = value  # checked by the setter
                except ValueError as exc:
                    return self.error(400, str(exc))
            return JSONResponse({"concurrency": sender.concurrency})

        self.route("/deliveries", listing, methods=["GET"])
        self.route("/deliveries/concurrency", concurrency, methods=["GET", "POST"])

    def mount(self) -> Mount:
        return Mount("/sandbox", routes=[*self.routes, Route("/{rest:path}", self._unknown, methods=ALL_METHODS)])

    async def _state(self, request: Request) -> Response:
        return JSONResponse(self.sandbox.state())

    async def _reset(self, request: Request) -> Response:
        self.sandbox.reset(await request_fields(request))
        return JSONResponse({"reset": True})

    async def _fail(self, request: Request) -> Response:
        return JSONResponse({"pending_faults": self.sandbox.faults.add_fields(await request_fields(request))})

    async def _faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.sandbox.faults.clear()
        return JSONResponse({"pending_faults": self.sandbox.faults.pending, "faults": self.sandbox.faults.listing()})

    async def _counters(self, request: Request) -> Response:
        return JSONResponse(self.sandbox.counters.snapshot())

    async def _unknown(self, request: Request) -> Response:
        path = f"/sandbox/{request.path_params['rest']}"
        if any(route.matches(request.scope)[0] is Match.PARTIAL for route in self.routes):
            return self.error(405, f"{request.method} {path} is not a sandbox route")
        return self.error(404, f"unknown sandbox route {path}")
