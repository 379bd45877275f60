"""What a worker process holds for its jobs: the config and the Redis connection, set up once.

`koppel worker` installs it before the work loop starts; RQ job functions read it through
`current()`. Keeping it per process is what lets jobs reuse one HTTP client and one connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import redis

from gateway.config import Config

T = TypeVar("T")


@dataclass
class Runtime:
    config: Config
    connection: redis.Redis
    # Per-process objects jobs reuse: API clients, compiled mappings (a new httpx client costs ~35 ms).
    cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def cached(self, key: str, build: Callable[[], T]) -> T:
        """The process's object under `key`, built once even when threads ask together."""
        with self._lock:
            if key not in self.cache:
                self.cache[key] = build()
            return self.cache[key]  # type: ignore[no-any-return]

    def http(self) -> httpx.Client:
        return self.cached("http", lambda: httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)))

    def close(self) -> None:
        client = self.cache.pop("http", None)
        if client is not None:
            client.close()


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the worker runtime is not installed; start jobs with `koppel worker`")
    return _runtime
