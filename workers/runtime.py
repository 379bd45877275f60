"""What a worker process holds for its jobs: the config and the Redis connection, set up once.

`koppel worker` installs it before the work loop starts; RQ job functions read it through
`current()`. Keeping it per process is what lets jobs reuse one HTTP client and one connection.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from gateway.config import Config


@dataclass
class Runtime:
    config: Config
    connection: redis.Redis


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the worker runtime is not installed; start jobs with `koppel worker`")
    return _runtime
