"""Durable, deduplicated storing of accepted events, batched across concurrent requests.

A request hands its envelopes to `Ingestor.submit` and waits. One writer task drains everything
submitted meanwhile into ONE call of a Lua script (EVALSHA, atomic in Redis): on the event loop
through `async_connection` (redis.asyncio, as `create_app` sets it up), or else on a dedicated
thread with the sync client, so the event loop never blocks on Redis. Per event:

    SET  koppel:dedupe:<endpoint>:<id>  <job id>  NX EX ttl     → was this delivery seen before?
    if it was new:  XADD koppel:inbox:<queue> * id <job id> e <envelope JSON>
    else:           GET the dedupe key                          → the original job id

So the mark "seen" and the stored event land together or not at all. When Redis cannot take a batch
and the ingestor has a `Journal` (gateway/journal.py), the batch goes to the gateway's disk instead,
fsync'd, under the job ids it was given, and the request is answered 2xx; a drain task stores the
journal into Redis through the same script once Redis is back (same keys, same job ids: nothing
twice), and while the journal holds events new ones follow them there, so nothing overtakes. Without
a journal, or when the disk fails too, the failure answers 503, the sender retries, and the retry is
not mistaken for a duplicate. Job ids are assigned here, so the
answer can name them; the inbox pump (workers/inbox.py, run by every worker) turns each inbox
entry into exactly one RQ job with that id.
With `wait_replicas` ([gateway], for Redis with replicas: docs/deployment.md) a `WAIT` follows the
script in the same pipeline, and a batch the replicas did not acknowledge in time counts as not stored
(journaled, or 503 without a journal), though the primary keeps it.

Measured by bench/ingest (docs/benchmarks.md): creating the RQ job here cost ~250 µs of the
gateway's single core per event (of ~500 µs per request in all; an earlier claim of ~0.08 ms per
batched event did not hold). With the inbox and the plain-ASGI webhook path (gateway/app.py), a
request costs the gateway 1.6-2.0x the CPU of a no-op Starlette route (~265-320 µs against
~140-170 µs on the slower VM of the latest runs) and Redis 2.03 commands per event (batches of ~30).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection
from pydantic_core import PydanticSerializationError, to_json
from redis.exceptions import NoScriptError
from rq import Queue
from rq.serializers import JSONSerializer

from gateway import keys
from gateway.envelope import Envelope, Event, dedupe_id_of
from gateway.errors import MalformedRequest, RedisUnavailable
from gateway.journal import Journal, JournalUnavailable, Record

log = logging.getLogger("koppel.ingest")

JOB_FUNC = "workers.jobs.process_event"

# KEYS: the batch's dedupe keys, then the inbox stream. ARGV: ttl, then job id and envelope JSON per event.
# Returns per event 0 (stored, under the job id it was given) or the job id of the delivery seen before; just
# 0 when every event was new (the usual batch: one integer to read instead of one per event).
_STORE_LUA = """
local stream = KEYS[#KEYS]
local ttl = ARGV[1]
local out = {}
local seen = false
for i = 1, #KEYS - 1 do
  local job_id = ARGV[2 * i]
  if redis.call('SET', KEYS[i], job_id, 'NX', 'EX', ttl) then
    redis.call('XADD', stream, '*', 'id', job_id, 'e', ARGV[2 * i + 1])
    out[i] = 0
  else
    seen = true
    out[i] = redis.call('GET', KEYS[i])%s
  end
end
if seen then return out end
return 0
"""
# With `wait_replicas` a duplicate's mark is written again (the same value): a write, so the WAIT after the
# script also covers the delivery seen before, whose first write a replica may not have yet. Without
# replicas to wait for, a duplicate costs no write.
_STORE_WAITING_LUA = _STORE_LUA % "\n    redis.call('SET', KEYS[i], out[i], 'XX', 'KEEPTTL')"
_STORE_LUA = _STORE_LUA % ""


def dedupe_key(envelope: Envelope) -> str:
    return keys.dedupe(envelope.endpoint, envelope.dedupe_id)


def inbox_key(queue_name: str) -> str:
    return keys.inbox(queue_name)


def new_job_id() -> str:
    return os.urandom(16).hex()


def merged_into(connection: redis.Redis, job_id: str) -> str | None:
    """The job an event's job id was merged into by the inbox pump (workers/inbox.py: events for the same
    record waiting together run as one job, under the first one's id), or None."""
    found = connection.get(keys.merged(job_id))
    return keys.text(found) if found is not None else None


def resolve_job_id(connection: redis.Redis, job_id: str) -> str:
    """The job that runs the event the gateway answered with `job_id`: itself, or the job it was merged into
    (an RQ job, or a direct event's record: `done_record`)."""
    return merged_into(connection, job_id) or job_id


def write_done(pipe: Any, record: dict[str, Any], ttl: int) -> None:
    """Keep a direct event's outcome (one a worker ran from the inbox without an RQ job, workers/inbox.py)
    under `koppel:done:<job id>` for `ttl` seconds (`[retention] jobs`, as a finished job's result; 0:
    not kept, as such a job is dropped). `record`: {"id", "status": "finished", "description", "endpoint",
    "topic", "resource_id", "received_at", "ended_at" (ISO 8601, UTC), "worker", "result" (process_event's
    summary: ids and outcomes, never payload data), "merged" (the other ids it ran)}. `pipe`: a pipeline
    (or a client), so the record can land in the same MULTI as the inbox entry's acknowledgement."""
    if ttl > 0:
        pipe.set(keys.done(str(record["id"])), json.dumps(record, separators=(",", ":"), default=str), ex=ttl)


def done_record(connection: redis.Redis, job_id: str) -> dict[str, Any] | None:
    """The outcome `write_done` kept of the direct event `job_id` (not resolving merged ids: `resolve_job_id`
    first), or None: not run directly, or expired."""
    raw = connection.get(keys.done(job_id))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:  # not what write_done writes: as if absent
        return None
    return record if isinstance(record, dict) else None


def make_queue(connection: redis.Redis, name: str) -> Queue:
    """The RQ queue events go to; jobs are JSON so the dashboard can show them and no pickle is loaded."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def job_description(envelope: Envelope | dict[str, Any]) -> str:
    data = envelope if isinstance(envelope, dict) else envelope.model_dump()
    return f"{data['endpoint']} {data['topic']} {data['resource_id'] or ''}".strip()


@dataclass(frozen=True, slots=True)
class Draft:
    """An accepted event ready to store: its dedupe key and its envelope as JSON (what the job gets)."""

    endpoint: str
    dedupe_key: str
    json: bytes

    @classmethod
    def of(cls, envelope: Envelope) -> Draft:
        return cls(envelope.endpoint, dedupe_key(envelope), envelope.__pydantic_serializer__.to_json(envelope))

    @classmethod
    def wrap(cls, event: Event, *, source: str, endpoint: str, received_at: datetime) -> Draft:
        """`Draft.of(Envelope.wrap(...))` without the model: the receiver's hot path (tests keep them equal).

        The payload's JSON text as received (`Event.payload_json`) goes in as it stands: the receiver
        does not parse a 3 KB order whole, nor encode it again. MalformedRequest for a payload no JSON can carry
        (the handlers refuse those first: `handlers.signatures.check_nesting`, `unicode_only`).
        """
        head = {
            "source": source,
            "endpoint": endpoint,
            "topic": event.topic,
            "resource": event.resource,
            "resource_id": event.resource_id,
            "delivery_key": event.delivery_key,
            "received_at": received_at.isoformat(),
        }
        tail = {"since": event.since, "headers": event.headers}
        try:  # pydantic's JSON (as model_dump_json), ~4x faster than json.dumps
            if event.payload_json is None:
                text = to_json(head | {"payload": event.payload} | tail)
            else:
                text = b"".join((to_json(head)[:-1], b',"payload":', event.payload_json, b",", to_json(tail)[1:]))
        except PydanticSerializationError:  # a payload JSON cannot carry: as the model would
            try:
                return cls.of(Envelope.wrap(event, source=source, endpoint=endpoint, received_at=received_at))
            except PydanticSerializationError:
                raise MalformedRequest("the body's JSON cannot be stored (nested too deeply, or not Unicode)") from None
        key = keys.dedupe(endpoint, dedupe_id_of(endpoint, event.delivery_key))
        return cls(endpoint, key, text)


@dataclass(slots=True)
class Accepted:
    """What happened to one submitted envelope: queued as `job_id`, or a duplicate of `job_id`."""

    job_id: str
    duplicate: bool
    journaled: bool = False
    """Kept in the gateway's journal (Redis was unavailable): stored in Redis once it is back."""


DRAIN_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0)
"""How long the drain task waits after each failed try to store the journal in Redis (the last repeats)."""
ORPHAN_SCAN_SECONDS = 5.0
"""How often an idle gateway looks for journal files a stopped gateway left."""


@dataclass
class _Pending:
    drafts: Sequence[Draft]
    future: asyncio.Future[list[Accepted]]


@dataclass
class Ingestor:
    connection: redis.Redis
    queue_name: str = "koppel"
    dedupe_ttl: int = 7 * 24 * 3600
    batch_max: int = 256
    # When given, `submit` batches go through this client on the event loop instead of the writer thread.
    async_connection: redis.asyncio.Redis | None = None
    # When given, batches Redis cannot take are journaled there (and drained later) instead of failing.
    journal: Journal | None = None
    # Replica acknowledgement ([gateway] wait_replicas): a batch counts as stored only once this many
    # replicas have it (Redis WAIT, up to `wait_timeout_ms`); else RedisUnavailable. 0: the primary's word.
    wait_replicas: int = 0
    wait_timeout_ms: int = 500
    # While requests arrive side by side (the last batch held several, or more came while it was stored) a batch
    # waits this long for more before it is written; otherwise it is written at once. 0: never wait.
    linger: float = 0.002
    # ... unless the last batch held this many requests or more: they pile up while a batch is stored anyway, and
    # a wait would only hold the loop idle (at saturation it cost 10-20 % of the requests a second).
    linger_below: int = 16
    _pending: asyncio.Queue[_Pending] | None = field(init=False, default=None)
    _writer: asyncio.Task[None] | None = field(init=False, default=None)
    _drainer: asyncio.Task[None] | None = field(init=False, default=None)
    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _executor: ThreadPoolExecutor = field(init=False)
    _stream: str = field(init=False)
    _lua: str = field(init=False)
    _held: redis.asyncio.connection.AbstractConnection | None = field(init=False, default=None)
    """The writer task's own connection of `async_connection`'s pool (`_evalsha`), taken at its first batch."""

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koppel-ingest")
        self._stream = inbox_key(self.queue_name)
        self._lua = _STORE_WAITING_LUA if self.wait_replicas else _STORE_LUA
        self._script = self.connection.register_script(self._lua)
        self._ascript = self.async_connection.register_script(self._lua) if self.async_connection else None

    # -- async side -------------------------------------------------------------------------

    async def start(self) -> None:
        self._pending = asyncio.Queue()
        self._writer = asyncio.create_task(self._run(), name="koppel-ingest-writer")
        if self.journal is not None:
            self._wake = asyncio.Event()
            # before the first request: journals a stopped gateway left go first, new events behind them
            await asyncio.to_thread(self.journal.adopt_orphans)
            self._drainer = asyncio.create_task(self._drain_loop(), name="koppel-journal-drain")

    async def stop(self) -> None:
        for task in (self._writer, self._drainer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._drainer = None
        if self._held is not None and self.async_connection is not None:
            held, self._held = self._held, None
            await held.disconnect()  # a batch cut short may have left its answer unread
            await self.async_connection.connection_pool.release(held)
        self._executor.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()

    async def submit(self, envelopes: Sequence[Envelope | Draft]) -> list[Accepted]:
        """Store the envelopes durably; raises RedisUnavailable when Redis cannot take them."""
        if not envelopes:
            return []
        if self._pending is None:
            raise RuntimeError("Ingestor.start() was not awaited")
        future: asyncio.Future[list[Accepted]] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(_Pending(_drafts(envelopes), future))
        return await future

    async def _run(self) -> None:
        assert self._pending is not None
        loop = asyncio.get_running_loop()
        concurrent = False  # whether the last batch held several requests, or more came while it was stored
        while True:
            batch = [await self._pending.get()]
            count = len(batch[0].drafts)
            if self.linger and concurrent and count < self.batch_max:
                # Requests arrive side by side: the batch waits a moment for those on their way (one Redis write
                # for several instead of one each). A sender that waits for each answer never makes it wait.
                await asyncio.sleep(self.linger)
            while count < self.batch_max and not self._pending.empty():
                item = self._pending.get_nowait()
                batch.append(item)
                count += len(item.drafts)
            flat = [draft for item in batch for draft in item.drafts]
            try:
                if self.journal is not None and self.journal.in_use:  # events wait there: these follow them
                    try:
                        results = await self._journal(flat, [new_job_id() for _ in flat])
                    except JournalUnavailable as failed:  # Redis would let these overtake the journaled ones
                        raise RedisUnavailable(f"the journal could not take the event ({failed.strerror})") from None
                else:
                    results = await self._store_or_journal(flat, loop)
            except Exception as error:  # every waiter must hear about it; nothing is half-written
                if not isinstance(error, RedisUnavailable):
                    log.exception("storing a batch of %d events failed", len(flat))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            concurrent = (len(batch) > 1 or not self._pending.empty()) and len(batch) < self.linger_below
            offset = 0
            for item in batch:
                size = len(item.drafts)
                if not item.future.done():
                    item.future.set_result(results[offset : offset + size])
                offset += size

    async def _store_or_journal(self, drafts: Sequence[Draft], loop: asyncio.AbstractEventLoop) -> list[Accepted]:
        job_ids = [new_job_id() for _ in drafts]
        try:
            if self._ascript is not None:
                return await self._store_async(drafts, job_ids, writer=True)
            return await loop.run_in_executor(self._executor, self._store, drafts, job_ids)
        except RedisUnavailable as error:
            if self.journal is None:
                raise
            try:  # the same job ids: had the script run after all, the drain finds them stored
                return await self._journal(drafts, job_ids)
            except JournalUnavailable as failed:
                raise RedisUnavailable(f"{error}, and the journal could not take it ({failed.strerror})") from error

    async def _journal(self, drafts: Sequence[Draft], job_ids: list[str]) -> list[Accepted]:
        assert self.journal is not None
        records = [
            Record(self._stream, job_id, draft.endpoint, draft.dedupe_key, draft.json)
            for job_id, draft in zip(job_ids, drafts, strict=True)
        ]
        await asyncio.get_running_loop().run_in_executor(self._executor, self.journal.append, records)
        self._wake.set()
        return [Accepted(job_id, False, True) for job_id in job_ids]

    # -- the journal's drain ----------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        """Store the journal in Redis whenever it holds events, oldest first; look for orphans when idle."""
        assert self.journal is not None
        journal = self.journal
        failures = 0
        while True:
            if not journal.in_use:
                self._wake.clear()  # before looking: an append from now on wakes the wait below
                try:
                    await asyncio.to_thread(journal.adopt_orphans)
                except Exception:  # the drain must go on: the next look may succeed
                    log.exception("looking for journal files a stopped gateway left failed")
                if not journal.in_use:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), ORPHAN_SCAN_SECONDS)
                    continue
            try:
                await self.drain_once()
            except Exception as exc:  # Redis away (or the disk failing): try again later, never give up
                if failures == 0:
                    if isinstance(exc, RedisUnavailable | OSError):
                        log.warning("the journal is not drained yet: %s; trying again", exc)
                    else:
                        log.exception("draining the journal failed; trying again")
                await asyncio.sleep(DRAIN_BACKOFF_SECONDS[min(failures, len(DRAIN_BACKOFF_SECONDS) - 1)])
                failures += 1
                continue
            if failures:
                log.info("Redis takes events again: draining the journal")
            failures = 0

    async def drain_once(self) -> int:
        """Store the journal's next records in Redis and commit that durably; returns how many (0: none
        to store now). Raises RedisUnavailable when Redis cannot take them (nothing is committed then)."""
        assert self.journal is not None
        chunk = await asyncio.to_thread(self.journal.read, self.batch_max)
        if chunk is None:
            return 0
        start = 0
        while start < len(chunk.records):  # one script call per inbox stream (a shared journal dir)
            stream = chunk.records[start].stream
            end = start
            while end < len(chunk.records) and chunk.records[end].stream == stream:
                end += 1
            group = chunk.records[start:end]
            drafts = [Draft(r.endpoint, r.dedupe_key, r.json) for r in group]
            job_ids = [r.job_id for r in group]
            if self._ascript is not None:
                await self._store_async(drafts, job_ids, stream)
            else:
                await asyncio.get_running_loop().run_in_executor(None, self._store, drafts, job_ids, stream)
            start = end
        await asyncio.to_thread(self.journal.commit, chunk)
        return len(chunk.records)

    # -- sync side (runs on the writer thread; usable directly by pollers and tests) ----------

    def store(self, envelopes: Sequence[Envelope | Draft]) -> list[Accepted]:
        """One atomic Redis step: mark new deliveries seen and put them in the inbox, under new job ids."""
        if not envelopes:
            return []
        drafts = _drafts(envelopes)
        return self._store(drafts, [new_job_id() for _ in drafts])

    def _store(self, drafts: Sequence[Draft], job_ids: list[str], stream: str | None = None) -> list[Accepted]:
        keys, args = self._script_call(drafts, job_ids, stream)
        try:
            replies = self._store_replicated(keys, args) if self.wait_replicas else self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise RedisUnavailable(f"Redis did not store the event ({exc.__class__.__name__})") from exc
        return _accepted(job_ids, replies)

    async def _store_async(
        self, drafts: Sequence[Draft], job_ids: list[str], stream: str | None = None, *, writer: bool = False
    ) -> list[Accepted]:
        """`_store` on the event loop; `writer`: called by the writer task (`_run`), which has a connection of its
        own (`_evalsha`)."""
        assert self._ascript is not None
        keys, args = self._script_call(drafts, job_ids, stream)
        try:
            if self.wait_replicas:
                replies = await self._store_replicated_async(keys, args)
            elif writer:
                replies = await self._evalsha(keys, args)
            else:
                replies = await self._ascript(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis did not store the event ({exc.__class__.__name__})") from exc
        return _accepted(job_ids, replies)

    async def _evalsha(self, keys: list[str], args: list[Any]) -> Any:
        """The store script on a connection the writer task holds (one batch at a time), not through the client.

        What the client's command path does per call on top of the round trip (the pool's lock and checks, the
        observability hooks, the retry closure) cost 15-28 µs of the gateway's CPU per batch, up to a third of a
        batch of one (bench/ingest/roundtrip.py, docs/benchmarks.md, #14): at 2 000 deliveries/s a batch holds one
        to a few requests. Kept: the
        client's retry policy on a dropped connection or a timeout (`Retry`: reconnected, through Sentinel to
        the master it names now), its timeouts and health checks (the connection's own), and the script loaded
        again when Redis lost it (a restart, a failover, SCRIPT FLUSH)."""
        assert self.async_connection is not None and self._ascript is not None
        connection = self._held
        if connection is None:
            connection = self._held = await self.async_connection.connection_pool.get_connection()
        held = connection
        packed = held.pack_command("EVALSHA", self._ascript.sha, len(keys), *keys, *args)

        async def once() -> Any:
            if not held.is_connected:  # as the pool connects: through Sentinel, to the master it names now
                await held.connect()
            await held.send_packed_command(packed)
            return await held.read_response()

        async def dropped(error: Exception) -> None:
            await held.disconnect()

        for attempt in (1, 2):
            try:
                return await held.retry.call_with_retry(once, dropped)
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.async_connection.script_load(self._lua)
        raise AssertionError("unreachable")

    # -- replica acknowledgement ([gateway] wait_replicas) -------------------------------------
    # WAIT counts the replicas that have every write of ITS connection so far, so it goes in one pipeline
    # with the script: the same connection, and a retry after a dropped connection (a failover) runs both
    # again on the new one (the script then finds the events stored, or stores them: no event twice).

    def _store_replicated(self, keys: list[str], args: list[Any]) -> Any:
        for attempt in (1, 2):
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                pipe.wait(self.wait_replicas, self.wait_timeout_ms)
                replies, acked = pipe.execute(raise_on_error=False)
            if isinstance(replies, NoScriptError) and attempt == 1:  # a restarted or new primary
                self.connection.script_load(self._lua)
                continue
            return self._acknowledged(replies, acked)
        raise AssertionError("unreachable")

    async def _store_replicated_async(self, keys: list[str], args: list[Any]) -> Any:
        assert self.async_connection is not None
        for attempt in (1, 2):
            async with self.async_connection.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                pipe.wait(self.wait_replicas, self.wait_timeout_ms)
                replies, acked = await pipe.execute(raise_on_error=False)
            if isinstance(replies, NoScriptError) and attempt == 1:
                await self.async_connection.script_load(self._lua)
                continue
            return self._acknowledged(replies, acked)
        raise AssertionError("unreachable")

    def _acknowledged(self, replies: Any, acked: Any) -> Any:
        if isinstance(replies, Exception):
            raise replies
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.wait_replicas:
            raise RedisUnavailable(
                f"Redis stored the event, but only {acked} of {self.wait_replicas} replica(s) acknowledged it "
                f"within {self.wait_timeout_ms} ms ([gateway] wait_replicas)"
            )
        return replies if replies == 0 else list(replies)

    def _script_call(
        self, drafts: Sequence[Draft], job_ids: list[str], stream: str | None
    ) -> tuple[list[str], list[Any]]:
        keys = [d.dedupe_key for d in drafts]
        keys.append(stream or self._stream)
        args: list[Any] = [self.dedupe_ttl]
        for job_id, draft in zip(job_ids, drafts, strict=True):
            args.append(job_id)
            args.append(draft.json)
        return keys, args

    def inbox_depth(self) -> int:
        return int(self.connection.xlen(self._stream))

    def inbox_oldest_age(self) -> float:
        """Seconds the oldest accepted event has waited for a worker to make it a job (0: none waits)."""
        return inbox_oldest_age(self.connection, self.queue_name)

    def queue_depth(self) -> int:
        return make_queue(self.connection, self.queue_name).count

    def failed_count(self) -> int:
        """Jobs in RQ's failed registry of the queue (what `koppel replay` requeues). A read only: ZCARD,
        not the registry's `count`, which first purges expired entries (a write, at every scrape)."""
        return int(self.connection.zcard(make_queue(self.connection, self.queue_name).failed_job_registry.key))


# -- what operators see of the inbox ------------------------------------------------------------

PUMP_GROUP = "koppel-pump"
"""The consumer group of the workers' inbox pumps (workers/inbox.py)."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An accepted event no worker has taken yet: its job id (the one the 2xx answer named) and what it is.
    Only ids and times: the envelope's payload stays in Redis."""

    job_id: str
    endpoint: str
    topic: str
    resource_id: str
    received_at: str
    """When the gateway received it (ISO 8601, UTC)."""
    stored_at: float
    """When it entered the inbox (epoch s, from the stream entry's id)."""
    taken: bool
    """A worker's pump has read it and is making it a job (or died doing so: another one reclaims it)."""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class InboxView:
    depth: int
    """Entries in the inbox (accepted events no worker has taken yet)."""
    oldest_age: float
    """Seconds since the oldest entry was stored; 0 when the inbox is empty."""
    entries: list[InboxEntry]
    """The oldest ones, up to the limit asked for."""


def _xrange(connection: redis.Redis, stream: str, start: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE from `start` to the end, up to `count` entries (deleted entries' empty fields left out)."""
    rows: Any = connection.xrange(stream, min=start, count=count)
    return [(entry_id, fields) for entry_id, fields in rows or [] if fields]


def _entry_time(entry_id: bytes | str) -> float:
    return int(keys.text(entry_id).split("-", 1)[0]) / 1000


def _last_delivered(connection: redis.Redis, stream: str) -> tuple[int, int]:
    """The id of the last entry the pumps' group has read, as a comparable pair ((0, 0): none, or no group)."""
    try:
        groups = connection.xinfo_groups(stream)
    except redis.ResponseError:  # no stream yet
        return (0, 0)
    for group in groups:
        if keys.text(group["name"]) == PUMP_GROUP:
            return _id_pair(group["last-delivered-id"])
    return (0, 0)


def _id_pair(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = keys.text(entry_id).partition("-")
    return (int(ms), int(seq or 0))


def _inbox_entry(entry_id: bytes, fields: dict[bytes, bytes], delivered: tuple[int, int]) -> InboxEntry:
    try:
        envelope = json.loads(fields[b"e"])
    except (KeyError, ValueError):
        envelope = {}
    return InboxEntry(
        job_id=keys.text(fields.get(b"id", b"")),
        endpoint=str(envelope.get("endpoint") or ""),
        topic=str(envelope.get("topic") or ""),
        resource_id=str(envelope.get("resource_id") or ""),
        received_at=str(envelope.get("received_at") or ""),
        stored_at=_entry_time(entry_id),
        taken=_id_pair(entry_id) <= delivered,
    )


def inbox_view(connection: redis.Redis, queue_name: str, limit: int = 50, *, now: float | None = None) -> InboxView:
    """The inbox of a queue as an operator sees it: its depth, the age of its oldest entry and its oldest
    `limit` entries (read only: XLEN, XRANGE, XINFO GROUPS)."""
    stream = inbox_key(queue_name)
    depth = int(connection.xlen(stream))
    rows = _xrange(connection, stream, "-", max(limit, 1)) if depth else []
    delivered = _last_delivered(connection, stream) if rows else (0, 0)
    entries = [_inbox_entry(entry_id, fields, delivered) for entry_id, fields in rows]
    moment = time.time() if now is None else now
    oldest = max(0.0, moment - entries[0].stored_at) if entries else 0.0
    return InboxView(depth, oldest, entries[:limit])


def find_in_inbox(connection: redis.Redis, queue_name: str, job_id: str, page: int = 1000) -> InboxEntry | None:
    """The inbox entry of a job id a 2xx answer named, while no worker has made it a job yet (else None).
    Scans the stream in pages: an operator's look-up, not for a request path."""
    stream = inbox_key(queue_name)
    start = "-"
    wanted = job_id.encode()
    while True:
        rows: Any = connection.xrange(stream, min=start, count=page)  # deleted entries too: paging goes on
        for entry_id, fields in rows or []:
            if fields and fields.get(b"id") == wanted:
                return _inbox_entry(entry_id, fields, _last_delivered(connection, stream))
        if len(rows or []) < page:
            return None
        start = "(" + keys.text(rows[-1][0])


def inbox_oldest_age(connection: redis.Redis, queue_name: str, *, now: float | None = None) -> float:
    """Seconds since the oldest inbox entry was stored (0 when empty): grows while no worker pumps."""
    rows = _xrange(connection, inbox_key(queue_name), "-", 1)
    if not rows:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - _entry_time(rows[0][0]))


def _accepted(job_ids: list[str], replies: list[Any] | int) -> list[Accepted]:
    if replies == 0:  # the script's answer when every event was new
        return [Accepted(job_id, False) for job_id in job_ids]
    assert isinstance(replies, list)
    return [
        Accepted(job_id, False) if reply == 0 else Accepted(reply.decode(), True)
        for job_id, reply in zip(job_ids, replies, strict=True)
    ]


def _drafts(envelopes: Sequence[Envelope | Draft]) -> Sequence[Draft]:
    if all(isinstance(e, Draft) for e in envelopes):
        return envelopes  # type: ignore[return-value]
    return [e if isinstance(e, Draft) else Draft.of(e) for e in envelopes]
