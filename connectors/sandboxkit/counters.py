"""Call counters: the API calls a sandbox answered, per method and route (`GET orders/{id}`), as the
platform would bill them — what tests and benchmarks hold a connector's call budget against."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from connectors.sandboxkit.routing import route_name


class CallCounter:
    """Counts per `"{METHOD} {route}"`; as a pipeline step (`step`) it counts the route the request took."""

    def __init__(self) -> None:
        self._calls: Counter[str] = Counter()

    def count(self, method: str, route: str) -> None:
        self._calls[f"{method} {route}"] += 1

    async def step(self, request: Request) -> Response | None:
        self.count(request.method, route_name(request))
        return None

    def __getitem__(self, endpoint: str) -> int:
        """The count of one `"{METHOD} {route}"`."""
        return self._calls[endpoint]

    @property
    def total(self) -> int:
        return sum(self._calls.values())

    def by_endpoint(self) -> dict[str, int]:
        return dict(sorted(self._calls.items()))

    def snapshot(self) -> dict[str, Any]:
        """`{"total", "by_endpoint"}`: what `GET /sandbox/counters` answers."""
        return {"total": self.total, "by_endpoint": self.by_endpoint()}

    def clear(self) -> None:
        self._calls.clear()
