"""`koppel worker`: an RQ worker on Koppel's queue, with the scheduler on.

Non-forking (`SimpleWorker`) by default: a forking worker drains ~15 jobs/s on a small machine,
a simple one 100-250, and it keeps HTTP clients and caches warm across jobs. `--fork` gives each
job its own process (isolation from leaks and crashes, at that cost).

Every worker also runs the inbox pump (workers/inbox.py) on a daemon thread: the gateway only
stores accepted events in the inbox stream, and the pumps, one consumer group, make their RQ jobs.
A burst worker drains the inbox first, then works the queue until it is empty. And every worker purges
what `[retention]` no longer allows (workers/retention.py): at start, then every `purge_interval` (one
worker of many per interval).

A worker that dies mid-job (SIGKILL, OOM, a pulled plug) is noticed by RQ's own abandoned-job
handling: its job stays in the StartedJobRegistry until the job's heartbeat expires, and the next
registry maintenance of any worker retries it (while it has retries left; else it fails with
AbandonedJobError). RQ's SimpleWorker beats once per job, with a TTL of the job timeout + 60 s, and
maintenance runs every 10 minutes: a dead worker's order waited up to ~14 minutes. `KoppelWorker`
renews the heartbeat every `gateway.worker_heartbeat_seconds` (TTL: three beats) while the job runs,
and maintenance runs every three beats, so the job is retried within seconds of its worker's death.
The beats come from the process's keepalive thread (workers/keepalive.py), which also renews the
job's resource lock: no thread is started per job.
The flows are built for that replay (the order ledger and in-flight marker), and the job's resource
lock frees itself as fast (workers/policy.py).
"""

from __future__ import annotations

import logging
import math
import multiprocessing.util
import os
import threading
import time
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from gateway import redisclient
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.ingest import make_queue
from gateway.redisserver import die_with_parent
from workers import keepalive, runtime
from workers.inbox import pump_for
from workers.notifier import schedule_dispatch
from workers.pollers import schedule_polls
from workers.retention import PurgeLoop
from workers.subscriptions import schedule_checks

log = logging.getLogger("koppel.worker")


HEARTBEAT_SLACK = 1.0
"""A worker heartbeat (or state write) that would change the worker key's expiry by less than this
(seconds) since the last one is not sent: RQ's work loop beats 5 times per job, twice back to back."""


PUBSUB_WAKEUP = 1.0
"""Seconds the worker's command listener (RQ's pubsub thread) waits for a message before it looks again
whether the worker is stopping (RQ: 60). A message (`rq.command`: shutdown, kill-horse, stop-job) is
handled as soon as it arrives all the same."""


class QuietWorker(Worker):
    """RQ's worker, whose expected failures are the job's one log line without RQ's traceback: as is, the
    forking worker of `koppel worker --fork` (a process per job); `KoppelWorker` builds on it. Its command
    listener stops at once when the worker does (`unsubscribe`)."""

    def subscribe(self) -> None:
        """RQ's: the worker's command channel, listened to on a daemon thread, waking every `PUBSUB_WAKEUP` s."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ declares it None
            sleep_time=PUBSUB_WAKEUP, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def unsubscribe(self) -> None:
        """RQ's, but the listener is told to stop before the UNSUBSCRIBE whose reply wakes it, so it leaves
        on that reply.

        RQ sends UNSUBSCRIBE and then stops the thread, which redis-py (8) waits for. When the listener read
        the reply before the stop, it went back to waiting for a subscription, its `sleep_time`: a worker's
        return (a burst worker's, or a worker's on SIGTERM) waited up to 60 s with RQ's. Lowering the flag
        takes redis-py's private `_running` (its `stop()` would wait for the listener here);
        `PUBSUB_WAKEUP` bounds the wait should that ever change.
        """
        running = getattr(self.pubsub_thread, "_running", None)
        if isinstance(running, threading.Event):
            running.clear()
        super().unsubscribe()  # type: ignore[no-untyped-call]

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """An expected failure (a PermanentError: a missing SKU, a system not connected) was logged by the
        job as one line naming the fix: RQ's ERROR with its traceback is left out (the failed job and its
        exc_info are kept for replay all the same). Anything else keeps RQ's traceback."""
        if len(exc_info) > 1 and isinstance(exc_info[1], PermanentError):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)


class KoppelWorker(QuietWorker, SimpleWorker):
    """A SimpleWorker whose running job keeps beating (see the module docstring), and whose own
    heartbeat and idle writes cost one Redis round trip per job instead of eight (`heartbeat`)."""

    _expires_at = -math.inf
    """When the worker key expires by the last heartbeat this worker sent (monotonic clock)."""
    _state_written_at = -math.inf

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return 3 * int(self.job_monitoring_interval)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        # The process's keepalive thread beats while the job runs, and no more once it is done.
        with keepalive.renewing(lambda: self._beat(job, execution), self.job_monitoring_interval, name=f"job {job.id}"):
            self.perform_job(job, queue, execution)
        with self.connection.pipeline(transaction=False) as pipeline:  # the work loop's next beat is then skipped
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)
            pipeline.execute()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's worker heartbeat (the worker key's `last_heartbeat` and TTL), its three commands sent
        as one round trip, and not at all when the key got this TTL less than `HEARTBEAT_SLACK` s ago.

        RQ beats before each dequeue and after each job; with back-to-back jobs those came within
        milliseconds of each other (and of the beat in the suspension check). Every beat sent, alone
        or in one of RQ's pipelines, is remembered with the expiry it gives: a beat with a shorter TTL
        (a job's) is never taken for a longer one, so the key never expires sooner than RQ's own beats
        would let it.
        """
        timeout = timeout or self.worker_ttl + 60
        expires_at = time.monotonic() + timeout
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
        elif self._expires_at >= expires_at - HEARTBEAT_SLACK:
            return
        else:
            self._expires_at = -math.inf  # unknown until the beat is through
            with self.connection.pipeline(transaction=False) as own:
                super().heartbeat(timeout, pipeline=own)
                own.execute()
        self._expires_at = expires_at

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's, but a state written less than `HEARTBEAT_SLACK` s ago is not written again (a
        SimpleWorker writes `idle` after each job and again before each dequeue)."""
        if pipeline is None and state == self._state and time.monotonic() - self._state_written_at < HEARTBEAT_SLACK:
            return
        super().set_state(state, pipeline=pipeline)
        self._state_written_at = time.monotonic()

    def _beat(self, job: Job, execution: Execution) -> None:
        try:
            self.maintain_heartbeats(job, execution)
        except redis.RedisError as exc:  # Redis briefly away: the next beat tries again
            log.warning("job %s: heartbeat failed: %s", job.id, exc)


def worker_timing(heartbeat: int) -> dict[str, Any]:
    """RQ worker settings for a heartbeat of `heartbeat` s: a job (and its worker) counts as dead after three
    missed beats, and registries are maintained as often (an idle worker wakes up for it: dequeue timeout
    = worker_ttl - 15 s in RQ)."""
    return {
        "job_monitoring_interval": heartbeat,
        "maintenance_interval": 3 * heartbeat,
        "worker_ttl": 3 * heartbeat + 15,
    }


class _SchedulerGuard:
    """RQ forks its scheduler with multiprocessing; this after-fork hook makes that child die with the
    worker, so a killed `koppel worker` leaves no scheduler behind polling Redis."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        multiprocessing.util.register_after_fork(self, _SchedulerGuard._in_child)

    def _in_child(self) -> None:  # pragma: no cover - runs in the forked scheduler
        die_with_parent(self.parent)


_guard: _SchedulerGuard | None = None


def run_worker(
    config: Config, redis_url: str, *, burst: bool = False, fork: bool = False, max_jobs: int | None = None
) -> bool:
    # No socket timeout: the worker blocks on the queue for longer than a request would wait.
    connection = redisclient.connect(redis_url, health_check_interval=30)
    rt = runtime.Runtime(config=config, connection=connection, snapshot_ttl=config.retention.payloads)
    runtime.install(rt)
    queue = make_queue(connection, config.gateway.queue)
    worker_class = QuietWorker if fork else KoppelWorker
    global _guard
    if _guard is None or _guard.parent != os.getpid():
        _guard = _SchedulerGuard()
    schedule_polls(connection, config)  # sources without push (Exact Sync API) are polled on a schedule
    schedule_checks(connection, config)  # and the webhooks Koppel manages are checked on one
    schedule_dispatch(connection, config)  # and notifications are sent (when an integration asks for them)
    worker = worker_class(
        [queue], connection=connection, serializer=JSONSerializer,
        **worker_timing(config.gateway.worker_heartbeat_seconds),
    )  # fmt: skip
    pump = pump_for(connection, config.gateway, config.retention)
    purger = PurgeLoop(connection, config, worker=worker.name)  # [retention], enforced (workers/retention.py)
    try:
        if burst:
            purger.once()
            pump.drain()
            return worker.work(burst=True, with_scheduler=True, max_jobs=max_jobs, logging_level="WARNING")
        thread, stop = pump.start()
        purger.start()
        try:
            return worker.work(burst=False, with_scheduler=True, max_jobs=max_jobs, logging_level="WARNING")
        finally:
            stop.set()
            purger.close()
            thread.join(timeout=5)
    finally:  # an in-process (burst) worker leaves no sockets open: its own, the runtime's, the scheduler's
        scheduler_connection = getattr(worker.scheduler, "_connection", None) if worker.scheduler else None
        if scheduler_connection is not None:
            scheduler_connection.close()
        rt.close()
        redisclient.close(connection)
