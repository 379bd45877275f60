"""What a worker process holds for its jobs: the config and the Redis connection, set up once.

`koppel worker` installs it before the work loop starts; RQ job functions read it through
`current()`. Keeping it per process is what lets jobs reuse one HTTP client and one connection.

A live reload (gateway/live.py) swaps its config between jobs, never during one (`job()` / `swap`), and
drops the cached objects built from what changed (their keys name the endpoint, system or integration).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import redis

from connectors import registry
from connectors.contract import Context, Source, Target
from gateway import snapshots
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.live import Changes
from transforms.registry import add_default

T = TypeVar("T")


@dataclass
class Runtime:
    config: Config
    connection: redis.Redis
    snapshot_ttl: int = snapshots.DEFAULT_TTL
    """How long a job's payload snapshot is kept (seconds): the payload retention."""
    # Per-process objects jobs reuse: API clients, compiled mappings (an httpx client is costly to create).
    cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _job: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def job(self) -> Iterator[None]:
        """Held while a job runs: the config is not swapped under it."""
        with self._job:
            yield

    def swap(self, config: Config, changes: Changes) -> None:
        """Run the next jobs with `config` (waits for the running job to end). Cached objects whose key names
        a changed or removed endpoint, system or integration (or an endpoint linked to such a system) are
        dropped, to be built again from the new config."""
        stale = changes.stale()
        stale |= {e.id for e in self.config.endpoints if e.system in stale}
        with self._job, self._lock:
            self.config = config
            for key in [k for k in self.cache if stale & set(k.split(":")[1:])]:
                del self.cache[key]

    def cached(self, key: str, build: Callable[[], T]) -> T:
        """The process's object under `key`, built once even when threads ask together."""
        with self._lock:
            if key not in self.cache:
                self.cache[key] = build()
            return self.cache[key]  # type: ignore[no-any-return]

    def http(self) -> httpx.Client:
        return self.cached("http", lambda: httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)))

    def context(self) -> Context:
        """What connectors get from this process: its HTTP client, Redis connection and cache."""
        return self.cached("context", lambda: Context(http=self.http(), redis=self.connection, cached=self.cached))

    def source(self, name: str) -> Source:
        """The process's `Source` for an integration source (an endpoint or a system)."""

        def build() -> Source:
            kind = self.config.source_kind(name)
            connector = registry.get(kind or "")
            if connector.source is None:
                raise PermanentError(f"{connector.title} ({name}) cannot be a source")
            return connector.source(self.config.api_system(name), self.context())

        return self.cached(f"source:{name}", build)

    def target(self, system_id: str) -> Target:
        """The process's `Target` for a configured system."""

        def build() -> Target:
            system = self.config.system(system_id)
            if system is None:
                raise PermanentError(f"no system {system_id!r} in the config")
            connector = registry.get(system.kind)
            if connector.target is None:
                raise PermanentError(f"{connector.title} ({system_id}) cannot be a target")
            for name, text in connector.mappings.items():
                flow, _, document = name.partition("/")
                add_default(flow, system.kind, document, text)
            return connector.target(system, self.context())

        return self.cached(f"target:{system_id}", build)

    def close(self) -> None:
        client = self.cache.pop("http", None)
        if client is not None:
            client.close()


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def running_job() -> AbstractContextManager[None]:
    """Held by the worker while a job runs (`Runtime.job`); nothing without an installed runtime."""
    return _runtime.job() if _runtime is not None else nullcontext()


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the worker runtime is not installed; start jobs with `koppel worker`")
    return _runtime
