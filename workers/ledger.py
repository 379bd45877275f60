"""The ledger: what Koppel wrote to a target, per (integration, flow, stable key), and what is in flight.

Every flow that creates something in a target guards the write with it:

    lookup(key)        → (target id, in flight)      one round trip
                       (`lookup_mark`: the lookup and the mark below in one script, the mark made only when
                       the key is neither done nor in flight, with cache reads in the same round trip)
    done?              skip: the target has it (no target call at all)
    in flight?         a previous attempt may have reached the target (a worker killed between its
                       write and the ledger entry): ask the target by the stable key before writing
    mark(key)          before the write                (with `also`: cache reads in the same round trip;
                       `mark_many` for the keys of one batch write)
    unmark(key)        the attempt failed before its write could reach the target
    record(key, id)    after it: the ledger entry, and the in-flight marker dropped, atomically (with `pipe`:
                       queued on the pipeline sent with the resource lock's release, `Work.finish`)
    landed(key, found) the lookup found what the earlier attempt wrote: recorded, and the run reports it
                       "created" (`EARLIER_ATTEMPT`): that attempt died before it could say so

So a crash anywhere costs at most one lookup, never a second record in the target, and the activity log
says "created" once for what Koppel created. A flow that keeps no ledger (`keep=False`: customers and
products, found in the target by e-mail or SKU anyway) uses the in-flight marker alone, to know that
what the target holds is what its own earlier attempt created.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from gateway import keys

# KEYS: ledger, in-flight marks. ARGV: key, target id, "1" to keep the id. The entry and the mark's end at once.
_RECORD = """
if ARGV[3] == '1' then redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('hdel', KEYS[2], ARGV[1])
return 1
"""

# KEYS: ledger, in-flight marks. ARGV: key, the mark's value ("": no mark). The target id and the mark found;
# the mark is set only when neither is there (an earlier attempt's mark keeps its time: its lookup's `since`).
_LOOKUP_MARK = """
local done = redis.call('hget', KEYS[1], ARGV[1])
local mark = redis.call('hget', KEYS[2], ARGV[1])
if ARGV[2] ~= '' and not done and not mark then redis.call('hset', KEYS[2], ARGV[1], ARGV[2]) end
return {done, mark}
"""

EARLIER_ATTEMPT = "created by an earlier attempt that stopped before noting it"
"""The reason of a "created" found by the in-flight lookup (`Ledger.landed`)."""


def email_key(email: str) -> str:
    """A customer's key in the customers flow's in-flight marks: a digest of the (normalised) e-mail
    address, never the address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class Ledger:
    """The ledger of one integration's flow."""

    def __init__(self, connection: redis.Redis, integration: str, flow: str, *, keep: bool = True) -> None:
        self.connection = connection
        self.key = keys.ledger(integration, flow)
        self.flight = keys.in_flight(integration, flow)
        self.keep = keep
        """Whether `record` keeps the target id (the ledger); without, it only drops the in-flight marker."""

    def created(self, key: str) -> str | None:
        """The target id recorded for `key`, or None."""
        value = self.connection.hget(self.key, key)
        return keys.text(value) if value else None

    def in_flight(self, key: str) -> bool:
        return bool(self.connection.hexists(self.flight, key))

    def lookup(self, key: str) -> tuple[str | None, bool]:
        """(target id or None, in flight) in one round trip."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(self.key, key)
            pipe.hexists(self.flight, key)
            value, flying = pipe.execute()
        return (value.decode() if value else None), bool(flying)

    def marked_at(self, key: str) -> datetime | None:
        """When `key` was marked in flight (None: not in flight, or by a version that kept no time)."""
        return _mark_time(self.connection.hget(self.flight, key))

    def lookup_mark(self, key: str, *, mark: bool, also: Callable[[Any], None] | None = None) -> Looked:
        """`lookup` and, when `mark` and `key` is neither done nor in flight, `mark`, in one script; `also(pipe)`
        queues reads answered in the same round trip (`Looked.also`). A key found in flight keeps its mark and
        its time (`Looked.marked_at`, the earlier attempt's lookup's `since`)."""
        with self.connection.pipeline(transaction=False) as pipe:
            # EVAL, not a registered Script: no SCRIPT EXISTS round trip first
            pipe.eval(_LOOKUP_MARK, 2, self.key, self.flight, key, f"{time.time():.3f}" if mark else "")
            if also is not None:
                also(pipe)
            (done, flying), *rest = pipe.execute()
        return Looked(keys.text(done) if done else None, bool(flying), _mark_time(flying),
                      mark and not done and not flying, rest)  # fmt: skip

    def mark(self, key: str, also: Callable[[Any], None] | None = None) -> list[Any]:
        """Mark `key` in flight (with the time) before its write; `also(pipe)` queues reads answered in the
        same round trip, whose results are returned."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hset(self.flight, key, f"{time.time():.3f}")
            if also is not None:
                also(pipe)
            return list(pipe.execute()[1:])

    def mark_many(self, marked: list[str], also: Callable[[Any], None] | None = None) -> list[Any]:
        """`mark` for the keys of a batch write, in one round trip (with `also`'s reads, whose results are
        returned)."""
        with self.connection.pipeline(transaction=False) as pipe:
            if marked:
                stamp = f"{time.time():.3f}"
                pipe.hset(self.flight, mapping=dict.fromkeys(marked, stamp))
            if also is not None:
                also(pipe)
            return list(pipe.execute()[1 if marked else 0 :])

    def unmark(self, key: str) -> None:
        """The attempt failed before its write could reach the target (a lookup, the mapping, or a write
        the target refused): no lookup is owed next time."""
        self.connection.hdel(self.flight, key)

    def record(self, key: str, target_id: str, pipe: Any = None) -> None:
        """The write is done: remember its id and drop the in-flight marker, atomically (one script). With `pipe`
        (a pipeline the caller sends later, such as the one that releases the resource lock) it is queued there:
        until that is sent the marker stays, so a worker that dies meanwhile leaves a lookup owed, never a
        second write."""
        # EVAL, not a registered Script: no SCRIPT EXISTS round trip first
        (pipe if pipe is not None else self.connection).eval(
            _RECORD, 2, self.key, self.flight, key, target_id, "1" if self.keep else "0"
        )

    def landed(self, key: str, found: str | None, pipe: Any = None) -> bool:
        """After asking the target for what the in-flight attempt at `key` may have written (`found`: the
        target's id, or None): whether it is there. Then Koppel created it, in an attempt that died before
        noting it: it is recorded now, and the run reports it "created" (reason `EARLIER_ATTEMPT`), not
        "skipped" — the attempt that made it never logged anything. `pipe`: as `record`'s."""
        if found is None:
            return False
        self.record(key, found, pipe)
        return True


@dataclass(frozen=True)
class Looked:
    """What `Ledger.lookup_mark` found."""

    done: str | None
    """The target id recorded, or None."""
    in_flight: bool
    """An earlier attempt's mark was there (it is kept)."""
    marked_at: datetime | None
    """That mark's time (None: no mark, or one that kept no time)."""
    marked: bool
    """This call marked the key."""
    also: list[Any]
    """The replies of the reads queued with it."""


def _mark_time(value: Any) -> datetime | None:
    text = keys.text(value) if value else ""
    return datetime.fromtimestamp(float(text), UTC) if text.replace(".", "", 1).isdigit() and text != "1" else None


__all__ = ["EARLIER_ATTEMPT", "Ledger", "Looked", "email_key"]
