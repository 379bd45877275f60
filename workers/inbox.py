"""The inbox pump: turns the entries of the inbox stream into RQ jobs, each entry exactly once.

The gateway stores an accepted event as an entry of the Redis stream `koppel:inbox:<queue>`
(gateway/ingest.py), with the job id it already answered. Every worker process runs a pump, all
in one consumer group, so they share the work:

    XAUTOCLAIM  entries idle > 30 s in a dead consumer's hands      (first, each round; `koppel worker`: 3 beats)
    XREADGROUP  up to 300 new entries (BLOCK 1 s)
    WATCH       rq:job:<id> and koppel:merged:<id> of the batch; EXISTS → skip entries made already (defensive)
    MULTI
      RQ enqueue_many (job hash + queue push, with the pre-assigned id, retry schedule, TTLs)
      SET koppel:merged:<id> <group job id>  per merged entry (TTL as the jobs')
      XACK + XDEL   the batch's entries
    EXEC                                                                (retried if a watched key changed)

Entries of one batch for the same record (endpoint, resource, resource id) become one job: WooCommerce
sends order.created and order.updated for every checkout, and when both wait together the record is
read, normalised, locked and written once, with the latest payload (`process_event`'s `group`: every
member's id, topic and receipt, so the activity log still has a line per event). The job has the first
member's id; each other member's id is an alias of it (`gateway.ingest.merged_into`), so `koppel replay
--job`, `koppel inbox --job` and the console resolve the id the gateway answered for it.

A pump that dies before EXEC leaves its entries pending: another consumer reclaims them and makes
the jobs, under the same ids. A slow pump racing the one that reclaimed its entries loses the WATCH
and then finds the jobs (or aliases) made. So an entry becomes exactly one job, or one alias of one.

With `direct` (`workers.jobs.direct_for`: `[gateway] direct_events`), a record's group that would be one
`process_event` job is run by the pump itself, without the job (`_run_direct`): its entries stay pending while it
runs and are acknowledged on the pipeline that releases the record's lock, with `koppel:done:<id>` (the outcome,
`done_record`, kept by `gateway.ingest.write_done`) and the merged events' aliases. A pump killed meanwhile leaves
them pending for another, and the ledger and seen versions answer what was done; an entry whose done record exists
is only acknowledged. A run that raises becomes that job, as RQ leaves a job after its first attempt
(`_hand_over`). Batch jobs and events without a record or a flow stay jobs (docs/architecture.md).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import ResponseError, WatchError
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.results import Result

from gateway import keys
from gateway.config import GatewaySettings, RetentionSettings
from gateway.errors import PermanentError, TransientError
from gateway.ingest import JOB_FUNC, PUMP_GROUP, inbox_key, job_description, make_queue, write_done
from workers import keepalive, runtime
from workers.outage import UNREACHABLE, outage
from workers.policy import DirectRun, retry_schedule, running_direct

log = logging.getLogger("koppel.inbox")

GROUP = PUMP_GROUP
Group = list[tuple[str, dict[str, Any]]]
"""The waiting events of one record, oldest first: (job id, envelope)."""
BATCH_JOB_MAX = 100
"""Records in one batch job at most (WooCommerce's batch endpoints take 100 items)."""
BATCH = 3 * BATCH_JOB_MAX
"""Entries read at once: a multiple of `BATCH_JOB_MAX`, so a burst read whole fills its batch jobs (256 made
a burst of 300 jobs of 100, 100, 56 and 44: a lookup and a write more)."""
BATCH_FUNC = "workers.jobs.process_batch"
BATCH_PREFIX = "batch-"
BLOCK_MS = 1000
CLAIM_IDLE_MS = 30_000


class InboxPump:
    def __init__(
        self,
        connection: redis.Redis,
        queue_name: str = "koppel",
        *,
        retry_factory: Callable[[], Retry] | None = None,
        result_ttl: int = 24 * 3600,
        failure_ttl: int = 30 * 24 * 3600,
        consumer: str | None = None,
        batch: int = BATCH,
        block_ms: int = BLOCK_MS,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        coalesce: bool = True,
        batchable: Callable[[dict[str, Any]], bool] | None = None,
        direct: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.connection = connection
        self.queue: Queue = make_queue(connection, queue_name)
        self.stream = inbox_key(queue_name)
        self.retry_factory = retry_factory
        self.result_ttl = result_ttl
        self.failure_ttl = failure_ttl
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.coalesce = coalesce
        """Whether entries of one batch for the same record become one job (`_groups`)."""
        self.batchable = batchable
        """Whether an event's record may be written with other records of its endpoint and resource in one
        batch job (`workers.jobs.batchable_for`: the flow's target has a batch write); None: never."""
        self.direct = direct
        """Whether a record's group of events (its latest envelope) is run by this pump itself, without an RQ job
        (`workers.jobs.direct_for`: `[gateway] direct_events`, read per record); None: never (`_run_direct`)."""
        self.stop: threading.Event | None = None
        """Set: the pump finishes the record it runs and leaves the rest of its read pending (a worker's stop)."""
        self._group_ready = False
        self._own_pending = True  # entries this consumer read but did not finish (a restart, an error)

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.connection.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # -- one round -----------------------------------------------------------------------------

    def pump_once(self, block_ms: int | None = None) -> int:
        """Reclaim, read and turn one batch into jobs; returns the number of entries finished."""
        self.ensure_group()
        entries = self._reclaim()
        if not entries and self._own_pending:
            entries = self._read("0", None)
            self._own_pending = bool(entries)
        if not entries:
            entries = self._read(">", block_ms)
        if not entries:
            return 0
        try:
            return self._commit_batch(entries)
        except Exception:
            self._own_pending = True
            raise

    def _reclaim(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self.connection.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=self.batch
        )
        return [(entry_id, fields) for entry_id, fields in reply[1] if fields]

    def _read(self, start: str, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self.connection.xreadgroup(GROUP, self.consumer, {self.stream: start}, count=self.batch, block=block_ms)
        if not reply:
            return []
        assert isinstance(reply, list), "a RESP2 connection answers [[stream, entries]]"
        _, entries = reply[0]
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _commit_batch(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        if self.direct is None:
            return self._enqueue(entries)
        fields_of = {fields[b"id"].decode(): fields for _, fields in entries}  # a repeated id: one job
        with self.connection.pipeline(transaction=False) as check:
            for job_id in fields_of:
                check.exists(Job.key_for(job_id), keys.merged(job_id), keys.done(job_id))
            made = check.execute()
        waiting = [(job_id, json.loads(fields[b"e"]))
                   for (job_id, fields), exists in zip(fields_of.items(), made, strict=True) if not exists]  # fmt: skip
        jobs = self._batches(self._groups(waiting))
        direct = [job[0] for job in jobs if len(job) == 1 and self.direct(job[0][-1][1])]
        mine = {member_id for group in direct for member_id, _ in group}
        rest = [(entry_id, fields) for entry_id, fields in entries if fields[b"id"].decode() not in mine]
        done = self._enqueue(rest) if rest else 0
        entries_of: dict[str, list[bytes]] = {}  # job id → its entries, in stream order (one scan of the batch)
        for entry_id, fields in entries:
            entries_of.setdefault(fields[b"id"].decode(), []).append(entry_id)
        for group in direct:
            if self.stop is not None and self.stop.is_set():
                self._own_pending = True  # left pending: read again by this pump, or reclaimed by another
                break
            ids = {member_id for member_id, _ in group}
            entry_ids = sorted((e for member_id in ids for e in entries_of.get(member_id, [])), key=_stream_order)
            self._run_direct(group, entry_ids)
            done += len(entry_ids)
        return done

    def _enqueue(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        """The entries as RQ jobs (a record's group, or a batch job), acknowledged in the same transaction."""
        by_job = {fields[b"id"].decode(): fields for _, fields in entries}  # a repeated id: one job
        entry_ids = [entry_id for entry_id, _ in entries]
        watched = [key for job_id in by_job for key in (Job.key_for(job_id), keys.merged(job_id), keys.done(job_id))]
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*watched)
                    with self.connection.pipeline(transaction=False) as check:
                        for job_id in by_job:
                            check.exists(Job.key_for(job_id), keys.merged(job_id), keys.done(job_id))
                        made = check.execute()
                    waiting = [
                        (job_id, json.loads(fields[b"e"]))
                        for (job_id, fields), exists in zip(by_job.items(), made, strict=True)
                        if not exists
                    ]
                    made_jobs = self._batches(self._groups(waiting))
                    pipe.multi()
                    if made_jobs:
                        self.queue.enqueue_many([self._job_data(*job) if len(job) == 1 else self._batch_data(job)
                                                 for job in made_jobs], pipeline=pipe)  # fmt: skip
                    for job in made_jobs:
                        job_id = _job_id(job)
                        for group in job:
                            for member_id, _ in group:
                                if member_id != job_id:
                                    pipe.set(keys.merged(member_id), job_id, ex=self.alias_ttl)
                    pipe.xack(self.stream, GROUP, *entry_ids)
                    pipe.xdel(self.stream, *entry_ids)
                    self._execute(pipe)
                    if len(waiting) < len(by_job):
                        log.info("inbox: %d entries were jobs already", len(by_job) - len(waiting))
                    return len(entries)
                except WatchError:
                    continue

    # -- a record's events run here, without an RQ job -----------------------------------------

    def _run_direct(self, group: Group, entry_ids: list[bytes]) -> None:
        """A record's group of events through `process_event`, in this thread, as the first attempt of the job it
        would be (`_job_data`: its id, its retries). Its entries stay pending while it runs (their idle time kept
        fresh, so no other pump reclaims them) and are acknowledged with its end: on the pipeline that releases
        the record's lock, with its outcome's record (`finish_in`). A failure makes the group that RQ job, in the
        transaction that acknowledges the entries (`_hand_over`): its retries, failure and replay are RQ's. A
        worker killed meanwhile leaves the entries pending: reclaimed, and the ledger and seen versions answer
        what was booked."""
        from workers.jobs import process_event  # the job function (workers.jobs imports this module)

        job_id, _ = group[0]
        retry = self.retry_factory() if self.retry_factory else None
        run = DirectRun(job_id, retry.max if retry else None,
                        finishing=lambda pipe, summary: self.finish_in(pipe, group, entry_ids, summary))  # fmt: skip
        kwargs = {"group": _members(group)} if len(group) > 1 else {}
        started = datetime.now(UTC)
        every = max(0.5, self.claim_idle_ms / 3000)
        try:
            with (
                keepalive.renewing(lambda: self._keep(entry_ids), every, name=f"inbox entries of {job_id}"),
                runtime.running_job(),
                running_direct(run),
            ):
                summary = process_event(group[-1][1], **kwargs)
        except UNREACHABLE:
            self._own_pending = True  # Redis went away: the entries are run again (the ledger answers)
            raise
        except Exception as exc:
            if not isinstance(exc, PermanentError | TransientError):
                log.error("job %s: unexpected %s (kept as the RQ job's traceback)", job_id, type(exc).__name__,
                          exc_info=exc)  # fmt: skip
            self._hand_over(group, entry_ids, run, exc, started)
            return
        if not run.finished:  # no lock released with it (no integration, or switched off): sent alone
            with self.connection.pipeline(transaction=False) as pipe:
                self.finish_in(pipe, group, entry_ids, summary)
                pipe.execute()

    def _keep(self, entry_ids: list[bytes]) -> bool:
        """The entries' idle time set back to 0 (they are worked on: not a dead consumer's to reclaim)."""
        ids: list[Any] = list(entry_ids)
        self.connection.xclaim(self.stream, GROUP, self.consumer, 0, ids, justid=True)
        return True

    def finish_in(self, pipe: Pipeline, group: Group, entry_ids: list[bytes], summary: dict[str, Any]) -> None:
        """On `pipe`: the direct run's record (`keys.done`, as long as a finished job's result), the merged
        events' aliases, and the entries' acknowledgement."""
        job_id = group[0][0]
        write_done(pipe, done_record(job_id, group, self._description(group), self.consumer, summary), self.result_ttl)
        self._settle(pipe, group, entry_ids, job_id)

    def _settle(self, pipe: Pipeline, group: Group, entry_ids: list[bytes], job_id: str) -> None:
        """On `pipe`: the group's other events as aliases of `job_id`, and its entries acknowledged and deleted."""
        for member_id, _ in group[1:]:
            pipe.set(keys.merged(member_id), job_id, ex=self.alias_ttl)
        pipe.xack(self.stream, GROUP, *entry_ids)
        pipe.xdel(self.stream, *entry_ids)

    def _hand_over(self, group: Group, entry_ids: list[bytes], run: DirectRun, exc: BaseException,
                   started: datetime) -> None:  # fmt: skip
        """The failed direct run's group as the RQ job the pump makes of it (`_job_data`), as RQ leaves a job
        that failed its first attempt: scheduled for its first retry (one retry fewer), or failed with its
        traceback (no retries left: a PermanentError, or none configured); in one transaction with the entries'
        acknowledgement and the merged events' aliases."""
        data = self._job_data(group)
        job = self.queue.create_job(
            data.func, args=data.args, kwargs=data.kwargs, job_id=data.job_id, description=data.description,
            meta=data.meta, retry=data.retry, result_ttl=data.result_ttl, failure_ttl=data.failure_ttl,
        )  # fmt: skip
        job.meta.update(run.meta)
        job.retries_left = run.retries_left
        ended = datetime.now(UTC)
        job.enqueued_at, job.started_at, job.ended_at = started, started, ended
        job.worker_name = self.consumer
        exc_string = "".join(traceback.format_exception(exc))
        with self.connection.pipeline() as pipe:
            pipe.sadd(self.queue.redis_queues_keys, self.queue.key)
            if job.retries_left:
                interval = job.get_retry_interval()
                job.retries_left -= 1
                if interval:
                    self.queue.schedule_job(job, ended + timedelta(seconds=interval), pipeline=pipe)
                else:
                    self.queue.enqueue_job(job, pipeline=pipe)
                what = f"scheduled for retry in {interval} s, {job.retries_left} remaining"
            else:
                job.set_status(JobStatus.FAILED, pipeline=pipe)
                job.save(pipeline=pipe)
                self.queue.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=exc_string, pipeline=pipe)
                Result.create_failure(job, job.failure_ttl, exc_string=exc_string, worker_name=self.consumer,
                                      pipeline=pipe, execution_started_at=started,
                                      execution_ended_at=ended)  # fmt: skip
                what = "failed"
            self._settle(pipe, group, entry_ids, job.id)
            pipe.execute()
        log.info("job %s: its direct run failed (%s); now an RQ job, %s", job.id, type(exc).__name__, what)

    def _groups(self, waiting: list[tuple[str, dict[str, Any]]]) -> list[Group]:
        """The batch's events as jobs to make, in stream order (a group where its first member was): the
        events for one record (endpoint, resource, resource id) together; events without a record id (a
        collection notification) each alone."""
        groups: dict[Any, Group] = {}
        for job_id, envelope in waiting:
            record = envelope.get("resource_id")
            key = (envelope["endpoint"], envelope["resource"], record) if self.coalesce and record else job_id
            groups.setdefault(key, []).append((job_id, envelope))
        return list(groups.values())

    @property
    def alias_ttl(self) -> int:
        """A merged event's alias lives as long as the job it went to can be kept."""
        return max(self.result_ttl, self.failure_ttl)

    def _batches(self, groups: list[Group]) -> list[list[Group]]:
        """The jobs to make: each a record's group alone, or the groups of several records of one endpoint and
        resource whose target writes them in a batch (`batchable`; up to `BATCH_JOB_MAX` a job)."""
        if self.batchable is None:
            return [[group] for group in groups]
        jobs: list[list[Group]] = []
        filling: dict[tuple[str, str], list[Group]] = {}
        for group in groups:
            envelope = group[-1][1]
            if not envelope.get("resource_id") or not self.batchable(envelope):
                jobs.append([group])
                continue
            key = (envelope["endpoint"], envelope["resource"])
            batch = filling.get(key)
            if batch is None or len(batch) >= BATCH_JOB_MAX:
                batch = filling[key] = []
                jobs.append(batch)
            batch.append(group)
        return jobs

    def _batch_data(self, job: list[Group]) -> Any:
        """One job for the records of `job` (`workers.jobs.process_batch`), under an id of its own (`_job_id`):
        a record the batch cannot write is queued again under its own first event's id."""
        members = [{"id": group[0][0], "envelope": group[-1][1], "group": _members(group)} for group in job]
        first = job[0][0][1]
        ids = ", ".join(group[0][1]["resource_id"] for group in job[:5]) + (", …" if len(job) > 5 else "")
        return Queue.prepare_data(
            BATCH_FUNC,
            args=(members,),
            job_id=_job_id(job),
            description=f"{first['endpoint']} {first['resource']} x{len(job)} as a batch: {ids}",
            meta={"endpoint": first["endpoint"], "topic": first["topic"], "batch": len(job)},
            retry=self.retry_factory() if self.retry_factory else None,
            result_ttl=self.result_ttl,
            failure_ttl=self.failure_ttl,
        )

    def enqueue_alone(self, member: dict[str, Any]) -> bool:
        """Queue a batch job's member (`_batch_data`) as its own job, under its own id (a record the batch could
        not write: retries, failure and replay are then its own); its merged events' aliases go to it. False
        when that job exists already (a batch job run again)."""
        job_id = member["id"]
        group = [(m["id"], {**member["envelope"], "topic": m["topic"], "received_at": m["received_at"]})
                 for m in member["group"]]  # fmt: skip
        group[-1] = (group[-1][0], member["envelope"])
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(Job.key_for(job_id))
                    if pipe.exists(Job.key_for(job_id)):
                        return False
                    pipe.multi()
                    self.queue.enqueue_many([self._job_data(group)], pipeline=pipe)
                    pipe.delete(keys.merged(job_id))
                    for other, _ in group[1:]:
                        pipe.set(keys.merged(other), job_id, ex=self.alias_ttl)
                    pipe.execute()
                    return True
                except WatchError:
                    continue

    def _execute(self, pipe: redis.client.Pipeline) -> None:
        pipe.execute()  # a seam for tests: a crash here leaves the batch pending

    @staticmethod
    def _description(group: Group) -> str:
        description = job_description(group[0][1])
        if len(group) > 1:
            description += f" (+{len(group) - 1} merged: {', '.join(e['topic'] for _, e in group[1:])})"
        return description

    def _job_data(self, group: Group) -> Any:
        job_id, first = group[0]
        envelope = group[-1][1]  # the latest payload
        kwargs: dict[str, Any] = {}
        if len(group) > 1:
            kwargs["group"] = _members(group)
        return Queue.prepare_data(
            JOB_FUNC,
            args=(envelope,),
            kwargs=kwargs or None,
            job_id=job_id,
            description=self._description(group),
            meta={"endpoint": envelope["endpoint"], "topic": first["topic"]},
            retry=self.retry_factory() if self.retry_factory else None,
            result_ttl=self.result_ttl,
            failure_ttl=self.failure_ttl,
        )

    # -- loops ---------------------------------------------------------------------------------

    def drain(self, timeout: float = 30.0) -> int:
        """Pump until the inbox is empty (or `timeout` seconds passed); returns the entries finished."""
        deadline = time.monotonic() + timeout
        done = 0
        while True:
            finished = self.pump_once(block_ms=None)
            done += finished
            if finished:
                continue
            if self.connection.xlen(self.stream) == 0 or time.monotonic() >= deadline:
                return done
            time.sleep(0.05)  # another consumer holds entries: wait for it, or until they can be reclaimed

    def run(self, stop: threading.Event) -> None:
        """Pump until `stop` is set (a worker's background thread); survives Redis outages: one is noted
        once for the process (workers/outage.py) and waited out with its backoff. A record the pump runs itself
        is finished when `stop` is set; the rest of its read is left pending."""
        self.stop = stop
        while not stop.is_set():
            try:
                self.pump_once(block_ms=self.block_ms)
                outage.ok()
            except UNREACHABLE as exc:
                self._group_ready = False
                outage.failed(exc, "the inbox pump")
                outage.wait(stop)
            except redis.RedisError as exc:
                self._group_ready = False
                log.warning("inbox pump: %s; retrying in 1 s", exc)
                stop.wait(1.0)
            except Exception:
                log.exception("inbox pump: a batch failed; retrying in 1 s")
                stop.wait(1.0)

    def start(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="koppel-inbox-pump", daemon=True)
        thread.start()
        return thread, stop


def done_record(job_id: str, group: Group, description: str, worker: str, result: dict[str, Any]) -> dict[str, Any]:
    """What `koppel:done:<job id>` keeps of a record's events a pump ran without an RQ job: what a finished
    job would show (its id, description, event, receipt and end, worker, result) and the merged events' ids."""
    first = group[0][1]
    return {
        "id": job_id,
        "status": "finished",
        "description": description,
        "endpoint": first["endpoint"],
        "topic": first["topic"],
        "resource_id": first.get("resource_id"),
        "received_at": first["received_at"],
        "ended_at": datetime.now(UTC).isoformat(),
        "worker": worker,
        "result": result,
        "merged": [member_id for member_id, _ in group[1:]],
    }


def _job_id(job: list[Group]) -> str:
    """A job's id: its first event's; a batch job's, that with `batch-` before it (every event's an alias)."""
    first = job[0][0][0]
    return first if len(job) == 1 else f"{BATCH_PREFIX}{first}"


def _stream_order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id's place in its stream ("<ms>-<seq>")."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _members(group: Group) -> list[dict[str, Any]]:
    """What a job keeps of each event of a record's group: its id, topic and receipt."""
    return [{"id": job_id, "topic": e["topic"], "received_at": e["received_at"]} for job_id, e in group]


def pump_for(
    connection: redis.Redis, settings: GatewaySettings, retention: RetentionSettings | None = None, **kwargs: Any
) -> InboxPump:
    """The pump of the configured queue, with the configured retry schedule (`GatewaySettings`) and job
    TTLs (`[retention]` jobs and failed_jobs; without it, `[gateway]`'s older names of them)."""

    def retry() -> Retry:
        return retry_schedule(settings.retry_attempts, settings.retry_base_seconds, settings.retry_cap_seconds)

    return InboxPump(
        connection,
        settings.queue,
        retry_factory=retry if settings.retry_attempts else None,
        result_ttl=retention.jobs if retention else settings.result_ttl_seconds,
        failure_ttl=retention.failed_jobs if retention else settings.failure_ttl_seconds,
        **kwargs,
    )
