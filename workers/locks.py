"""A Redis lock whose waiters wake when it is released, instead of polling every 100 ms.

`WakingLock` is redis-py's `Lock` (same SET NX PX token, same `reacquire`/`extend`, same
`LockError`/`LockNotOwnedError`), with two changes:

- release deletes the lock and pushes a token onto a per-lock wake list in one script; the list is
  trimmed to one token and expires soon, so it never grows;
- a blocked `acquire` tries SET NX and, when the lock is held, BLPOPs the wake list for at most
  min(the lock's remaining TTL, the remaining blocking time, `WAKE_CAP`) and tries again.

So a waiter wakes as soon as the holder releases; a lost wake-up costs at most `WAKE_CAP`, and a
dead holder's lock is taken once its TTL runs out. Connection errors raise through as before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import LockNotOwnedError

WAKE_CAP = 1.0  # s: the longest a waiter blocks between tries, whatever it waits for
WAKE_KEEP_MS = 5000  # an unclaimed wake token lives this long, so a waiter just about to block sees it

# KEYS: lock, wake list. ARGV: token, ttl ms (or ""). Returns -3 when acquired, else the lock's PTTL.
_TRY = """
local ok
if ARGV[2] ~= '' then
  ok = redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
else
  ok = redis.call('set', KEYS[1], ARGV[1], 'NX')
end
if ok then return -3 end
return redis.call('pttl', KEYS[1])
"""

# KEYS: lock, wake list. ARGV: token, wake keep ms. 1 when released, 0 when not ours.
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
redis.call('lpush', KEYS[2], '1')
redis.call('ltrim', KEYS[2], 0, 0)
redis.call('pexpire', KEYS[2], ARGV[2])
return 1
"""


class WakingLock(redis.lock.Lock):
    """redis-py's Lock, woken by the holder's release (see the module docstring)."""

    lua_try: Script | None = None
    lua_release_wake: Script | None = None

    def __init__(self, connection: redis.Redis, name: str, *, wake_name: str | None = None, **kwargs: Any) -> None:
        """`wake_name` is the wake list's key (default `{name}:wake`); kwargs are `Lock`'s."""
        super().__init__(connection, name, **kwargs)
        self.wake_name = wake_name or name + ":wake"
        cls = type(self)
        if cls.lua_try is None:
            cls.lua_try = connection.register_script(_TRY)
        if cls.lua_release_wake is None:
            cls.lua_release_wake = connection.register_script(_RELEASE)
        # BLPOP must return before the connection's own read timeout, if it has one.
        read_timeout = connection.connection_pool.connection_kwargs.get("socket_timeout")
        self.wake_cap = min(WAKE_CAP, read_timeout / 2) if read_timeout else WAKE_CAP

    def acquire(
        self,
        sleep: float | None = None,
        blocking: bool | None = None,
        blocking_timeout: float | None = None,
        token: str | bytes | None = None,
        also: Callable[[Pipeline], None] | None = None,
    ) -> bool:
        """As `Lock.acquire`, but a blocked waiter sleeps on the wake list, not for `sleep`. `also(pipe)`
        queues commands sent with the first try, in its round trip; their replies are `self.also`, and
        `self.also_held` says whether that try took the lock (the replies were then read under it)."""
        token_b = uuid.uuid4().hex.encode() if token is None else self.redis.get_encoder().encode(token)
        blocking = self.blocking if blocking is None else blocking
        blocking_timeout = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        stop_at = None if blocking_timeout is None else time.monotonic() + blocking_timeout
        ttl_ms = "" if not self.timeout else str(int(self.timeout * 1000))
        assert self.lua_try is not None
        self.also: list[Any] = []
        self.also_held = False
        while True:
            first_try = also is not None
            if also is not None:
                with self.redis.pipeline(transaction=False) as pipe:  # EVAL: a Script would ask SCRIPT EXISTS first
                    pipe.eval(_TRY, 2, self.name, self.wake_name, token_b, ttl_ms)
                    also(pipe)
                    first, *self.also = pipe.execute()
                pttl, also = int(first), None
            else:
                pttl = int(self.lua_try(keys=[self.name, self.wake_name], args=[token_b, ttl_ms], client=self.redis))
            if pttl == -3:
                self.local.token = token_b
                self.also_held = first_try
                return True
            if not blocking:
                return False
            wait = self.wake_cap
            if stop_at is not None:
                wait = min(wait, stop_at - time.monotonic())
                if wait <= 0:
                    return False
            if pttl >= 0:
                wait = min(wait, pttl / 1000)
            elif pttl == -2:  # gone meanwhile: try again at once
                continue
            if wait >= 0.001:  # BLPOP's 0 would mean "forever"
                self.redis.blpop([self.wake_name], timeout=wait)

    def try_in(self, pipe: Pipeline) -> bytes:
        """Queue one try to take the lock, not waiting, on `pipe` (sent with other commands); pass its reply and
        the token returned to `took`."""
        token = uuid.uuid4().hex.encode()
        pipe.eval(_TRY, 2, self.name, self.wake_name, token, "" if not self.timeout else str(int(self.timeout * 1000)))
        return token

    def took(self, reply: Any, token: bytes) -> bool:
        """Whether the try `try_in` queued took the lock (it is then this object's)."""
        if int(reply) != -3:
            return False
        self.local.token = token
        return True

    def release_in(self, pipe: Pipeline) -> None:
        """Queue the release on `pipe` (sent with the caller's other commands, after them); the lock is no
        longer this object's whether or not it was still held."""
        token = self.local.token
        if token is None:
            raise redis.exceptions.LockError("Cannot release an unlocked lock", lock_name=self.name)
        self.local.token = None
        pipe.eval(_RELEASE, 2, self.name, self.wake_name, token, WAKE_KEEP_MS)  # EVAL: no SCRIPT EXISTS first

    def do_release(self, expected_token: str) -> None:
        assert self.lua_release_wake is not None
        released = self.lua_release_wake(
            keys=[self.name, self.wake_name], args=[expected_token, WAKE_KEEP_MS], client=self.redis
        )
        if not released:
            raise LockNotOwnedError("Cannot release a lock that's no longer owned", lock_name=self.name)
