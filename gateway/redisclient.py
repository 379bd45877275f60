"""Every Redis client Koppel makes, from one `REDIS_URL`: a single server, or a Redis Sentinel group.

    redis://[[user]:password@]host:6379/0        one server (also rediss://, unix://), as redis-py reads it
    redis+sentinel://[[user]:password@]sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster/0

The Sentinel form lists the sentinels (port 26379 when left out), then the name of the monitored master
(`sentinel monitor <name> ...` in their config) and the database number (0 when left out). The password
is the master's and the replicas' (`requirepass` / `masterauth`); the sentinels themselves are reached
without one. rq-dashboard (/ops/rq/) reads the same form.

Through Sentinel a client asks the sentinels for the current master before each new connection; when a
failover has moved the master, its dropped (or read-only) connection fails once, and the retry the caller
configured reconnects to the new master. `connect` / `connect_async` are the only places Koppel creates a
client for the configured Redis: the receiver (sync and asyncio), the workers and their inbox pump, the
console, the CLI commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
SENTINEL_TIMEOUT = 2.0
"""Seconds to reach one sentinel before asking the next (the sentinels answer from memory)."""
_PLAIN_SCHEMES = ("redis", "rediss", "unix")
EXAMPLE = f"{SENTINEL_SCHEME}://:password@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster/0"


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    """The master's name as the sentinels know it."""
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_target(url: str) -> SentinelTarget | None:
    """The sentinels, master name and database of a `redis+sentinel://` URL; None for any other scheme.
    Raises ValueError naming what is wrong with a Sentinel URL."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        return None
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_sentinel(host) for host in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"names no master: put the name the sentinels monitor after the hosts, e.g. {EXAMPLE}")
    if len(path) > 2:
        raise ValueError("has a path of more than /<master name>/<db>")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"database {path[1]!r} is not a number (the path is /<master name>/<db>)")
        db = int(path[1])
    if parts.query or parts.fragment:
        raise ValueError("takes no query or fragment (only /<master name>/<db> after the hosts)")
    return SentinelTarget(sentinels, unquote(path[0]), db, username, password)


def _sentinel(host: str) -> tuple[str, int]:
    if not host:
        raise ValueError(f"lists an empty sentinel address: give host:port pairs separated by commas, e.g. {EXAMPLE}")
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon:
        name, port = host, str(SENTINEL_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel {host!r} has no valid port")
    return name.strip("[]"), int(port)


def url_problem(url: str) -> str | None:
    """Why Koppel cannot use `url` as its REDIS_URL (one sentence, no password in it), or None."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in (*_PLAIN_SCHEMES, SENTINEL_SCHEME):
        return f"REDIS_URL must start with redis://, rediss://, unix:// or {SENTINEL_SCHEME}://"
    try:
        if sentinel_target(url) is None:
            redis.connection.parse_url(url)
    except ValueError as exc:
        return f"REDIS_URL {exc}"
    return None


def _sentinel_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Reaching a sentinel fails fast, whatever the client's own timeouts: the next one is asked."""
    timeout = min(options.get("socket_connect_timeout") or SENTINEL_TIMEOUT, SENTINEL_TIMEOUT)
    return {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": timeout}


def _auth(target: SentinelTarget) -> dict[str, Any]:
    return {"db": target.db, "username": target.username, "password": target.password}


def connect(url: str, **options: Any) -> redis.Redis:
    """A client of the configured Redis, with redis-py's `options` (timeouts, retry, health checks);
    through Sentinel a client of the current master, which follows a failover."""
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, **options)
    sentinel = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=_sentinel_kwargs(options))
    client: redis.Redis = sentinel.master_for(target.service, **_auth(target), **options)
    return client


def connect_async(url: str, **options: Any) -> redis.asyncio.Redis:
    """`connect` for the event loop (redis.asyncio)."""
    target = sentinel_target(url)
    if target is None:
        return redis.asyncio.Redis.from_url(url, **options)
    sentinel = redis.asyncio.sentinel.Sentinel(target.sentinels, sentinel_kwargs=_sentinel_kwargs(options))
    client: redis.asyncio.Redis = sentinel.master_for(target.service, **_auth(target), **options)
    return client


def close(client: redis.Redis) -> None:
    """Close a client of `connect`, and through Sentinel its connections to the sentinels."""
    client.close()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        sentinel.close()


async def aclose(client: redis.asyncio.Redis) -> None:
    """Close a client of `connect_async`, and through Sentinel its connections to the sentinels."""
    await client.aclose()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


__all__ = ["EXAMPLE", "SentinelTarget", "aclose", "close", "connect", "connect_async", "sentinel_target", "url_problem"]
