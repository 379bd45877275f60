"""`koppel worker`: an RQ worker on Koppel's queue, with the scheduler on.

Non-forking (`SimpleWorker`) by default: a forking worker drains ~15 jobs/s on a small machine,
a simple one 100-250, and it keeps HTTP clients and caches warm across jobs. `--fork` gives each
job its own process (isolation from leaks and crashes, at that cost).

Every worker also runs the inbox pump (gateway/inbox.py) on a daemon thread: the gateway only
stores accepted events in the inbox stream, and the pumps, one consumer group, make their RQ jobs.
A burst worker drains the inbox first, then works the queue until it is empty.
"""

from __future__ import annotations

import multiprocessing.util
import os

import redis
from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from gateway.config import Config
from gateway.inbox import pump_for
from gateway.ingest import make_queue
from gateway.redisserver import die_with_parent
from workers import runtime
from workers.pollers import schedule_polls


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
    connection = redis.Redis.from_url(redis_url, health_check_interval=30)
    rt = runtime.Runtime(config=config, connection=connection)
    runtime.install(rt)
    queue = make_queue(connection, config.gateway.queue)
    worker_class = Worker if fork else SimpleWorker
    global _guard
    if _guard is None or _guard.parent != os.getpid():
        _guard = _SchedulerGuard()
    schedule_polls(connection, config)  # sources without push (Exact Sync API) are polled on a schedule
    worker = worker_class([queue], connection=connection, serializer=JSONSerializer)
    pump = pump_for(connection, config.gateway)
    try:
        if burst:
            pump.drain()
            return worker.work(burst=True, with_scheduler=True, max_jobs=max_jobs, logging_level="WARNING")
        thread, stop = pump.start()
        try:
            return worker.work(burst=False, with_scheduler=True, max_jobs=max_jobs, logging_level="WARNING")
        finally:
            stop.set()
            thread.join(timeout=5)
    finally:
        rt.close()  # the jobs' HTTP client (its open connections to the APIs)
