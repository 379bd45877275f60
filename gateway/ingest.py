"""Durable, deduplicated enqueueing of accepted events, batched across concurrent requests.

A request hands its envelopes to `Ingestor.submit` and waits. One writer task drains everything
submitted meanwhile into a single Redis transaction, run on a dedicated thread so the event loop
never blocks on Redis:

    WATCH  the batch's dedupe keys          (another gateway process may write them)
    MGET   the dedupe keys                  → which deliveries were seen before
    MULTI
      SET  dedupe key → job id, EX ttl      for each new delivery
      RQ enqueue_many (job hashes + queue)  for each new delivery
    EXEC                                    (retried if a watched key changed)

So the mark "seen" and the job land together or not at all: a failure answers 503, the sender
retries, and the retry is not mistaken for a duplicate. At low load a batch is one event and adds
no delay; under load, batches grow and the per-event Redis and CPU cost falls (~0.08 ms per event
against ~0.26 ms for one `enqueue` per request, measured by bench/ingest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from gateway.envelope import Envelope
from gateway.errors import RedisUnavailable

log = logging.getLogger("koppel.ingest")

JOB_FUNC = "workers.jobs.process_event"
DEDUPE_PREFIX = "koppel:dedupe:"


def dedupe_key(envelope: Envelope) -> str:
    return f"{DEDUPE_PREFIX}{envelope.endpoint}:{envelope.dedupe_id}"


def make_queue(connection: redis.Redis, name: str) -> Queue:
    """The RQ queue events go to; jobs are JSON so the dashboard can show them and no pickle is loaded."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def job_description(envelope: Envelope) -> str:
    return f"{envelope.endpoint} {envelope.topic} {envelope.resource_id or ''}".strip()


@dataclass
class Accepted:
    """What happened to one submitted envelope: queued as `job_id`, or a duplicate of `job_id`."""

    job_id: str
    duplicate: bool


@dataclass
class _Pending:
    envelopes: Sequence[Envelope]
    future: asyncio.Future[list[Accepted]]


@dataclass
class Ingestor:
    connection: redis.Redis
    queue_name: str = "koppel"
    dedupe_ttl: int = 7 * 24 * 3600
    batch_max: int = 256
    result_ttl: int = 24 * 3600
    failure_ttl: int = 30 * 24 * 3600
    # Builds each job's retry schedule (jittered per job); None: no automatic retries.
    retry: Callable[[], Retry] | None = None
    _queue: Queue = field(init=False)
    _pending: asyncio.Queue[_Pending] | None = field(init=False, default=None)
    _writer: asyncio.Task[None] | None = field(init=False, default=None)
    _executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._queue = make_queue(self.connection, self.queue_name)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koppel-ingest")

    # -- async side -------------------------------------------------------------------------

    async def start(self) -> None:
        self._pending = asyncio.Queue()
        self._writer = asyncio.create_task(self._run(), name="koppel-ingest-writer")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self._executor.shutdown(wait=True)

    async def submit(self, envelopes: Sequence[Envelope]) -> list[Accepted]:
        """Store the envelopes durably; raises RedisUnavailable when Redis cannot take them."""
        if not envelopes:
            return []
        if self._pending is None:
            raise RuntimeError("Ingestor.start() was not awaited")
        future: asyncio.Future[list[Accepted]] = asyncio.get_running_loop().create_future()
        await self._pending.put(_Pending(envelopes, future))
        return await future

    async def _run(self) -> None:
        assert self._pending is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._pending.get()]
            count = len(batch[0].envelopes)
            while count < self.batch_max and not self._pending.empty():
                item = self._pending.get_nowait()
                batch.append(item)
                count += len(item.envelopes)
            flat = [envelope for item in batch for envelope in item.envelopes]
            try:
                results = await loop.run_in_executor(self._executor, self.store, flat)
            except Exception as error:  # every waiter must hear about it; nothing is half-written
                if not isinstance(error, RedisUnavailable):
                    log.exception("storing a batch of %d events failed", len(flat))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            offset = 0
            for item in batch:
                size = len(item.envelopes)
                if not item.future.done():
                    item.future.set_result(results[offset : offset + size])
                offset += size

    # -- sync side (runs on the writer thread; usable directly by pollers and tests) ----------

    def store(self, envelopes: Sequence[Envelope]) -> list[Accepted]:
        """One atomic Redis transaction: mark new deliveries seen and enqueue their jobs."""
        keys = [dedupe_key(e) for e in envelopes]
        unique = list(dict.fromkeys(keys))
        try:
            with self.connection.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*unique)
                        seen = dict(zip(unique, pipe.mget(unique), strict=True))
                        pipe.multi()
                        results: list[Accepted] = []
                        fresh: dict[str, str] = {}
                        datas = []
                        for key, envelope in zip(keys, envelopes, strict=True):
                            existing = seen[key]
                            if existing is not None:
                                results.append(Accepted(job_id=existing.decode(), duplicate=True))
                            elif key in fresh:
                                results.append(Accepted(job_id=fresh[key], duplicate=True))
                            else:
                                data = Queue.prepare_data(
                                    JOB_FUNC,
                                    args=(envelope.model_dump(mode="json"),),
                                    description=job_description(envelope),
                                    result_ttl=self.result_ttl,
                                    failure_ttl=self.failure_ttl,
                                    meta={"endpoint": envelope.endpoint, "topic": envelope.topic},
                                    retry=self.retry() if self.retry else None,
                                )
                                datas.append(data)
                                results.append(Accepted(job_id="", duplicate=False))
                                fresh[key] = ""
                        if datas:
                            jobs = self._queue.enqueue_many(datas, pipeline=pipe)
                            job_ids = iter(job.id for job in jobs)
                            for key in fresh:
                                fresh[key] = next(job_ids)
                                pipe.set(key, fresh[key], ex=self.dedupe_ttl)
                            for result, key in zip(results, keys, strict=True):
                                if not result.job_id:
                                    result.job_id = fresh[key]
                        pipe.execute()
                        return results
                    except WatchError:
                        continue
        except redis.RedisError as exc:
            raise RedisUnavailable(f"Redis did not store the event ({exc.__class__.__name__})") from exc

    def queue_depth(self) -> int:
        return self._queue.count
