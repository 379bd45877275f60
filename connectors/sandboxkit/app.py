"""The state behind a sandbox app (`Sandbox`) and the app itself (`sandbox_app`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from connectors.sandboxkit.counters import CallCounter
from connectors.sandboxkit.faults import Faults


class Sandbox:
    """What every sandbox holds: its clock, the faults waiting for the next requests, its call counters.

    A platform's sandbox subclasses it with its store and says what `state()` shows and what `reset()`
    empties (calling this one's, which drops the faults and the counts). `aclose()` runs at shutdown.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.faults = Faults(clock)
        self.counters = CallCounter()

    def state(self) -> dict[str, Any]:
        return {"calls": self.counters.snapshot(), "pending_faults": self.faults.pending}

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        self.faults.clear()
        self.counters.clear()

    async def aclose(self) -> None:
        return None


def sandbox_app(sandbox: Sandbox, routes: Sequence[BaseRoute], *, middleware: Sequence[Middleware] = ()) -> Starlette:
    """A Starlette app of `routes` with `sandbox` as `app.state.sandbox`, closed when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sandbox.aclose()

    app = Starlette(routes=list(routes), middleware=list(middleware), lifespan=lifespan)
    app.state.sandbox = sandbox
    return app
