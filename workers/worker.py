"""`koppel worker`: an RQ worker on Koppel's queue, with the scheduler on.

Non-forking (`SimpleWorker`) by default: a forking worker drains ~15 jobs/s on a small machine,
a simple one 100-250, and it keeps HTTP clients and caches warm across jobs. `--fork` gives each
job its own process (isolation from leaks and crashes, at that cost).

Every worker also runs the inbox pump (workers/inbox.py) on a daemon thread: the gateway only
stores accepted events in the inbox stream, and the pumps, one consumer group, make their RQ jobs.
A burst worker drains the inbox first, then works the queue until it is empty. And every worker purges
what `[retention]` no longer allows (workers/retention.py): at start, then every `purge_interval` (one
worker of many per interval).

A worker that dies (SIGKILL, OOM, a pulled plug) leaves its job in RQ's StartedJobRegistry (started) or
intermediate queue (taken, not started). `KoppelWorker` renews the job's heartbeat every
`gateway.worker_heartbeat_seconds` while it runs (TTL: three beats), from the process's keepalive thread
(workers/keepalive.py), which also renews the job's resource lock: no thread is started per job. Every
beat, one worker's keepalive thread runs Koppel's recovery (workers/recovery.py): a started job whose
heartbeat expired, or a job taken and not started for three beats, goes back to the front of the queue at
once, without using up a retry (RQ would retry it on its schedule, or fail it with AbandonedJobError, and
fails a taken one after a minute); a job whose worker died three times while running it is failed, naming
that. The flows are built for that replay (the order ledger and in-flight marker), and the job's resource
lock frees itself as fast (workers/policy.py).

A Redis outage does not end the worker (`QuietWorker`, workers/outage.py): it is logged once when Redis goes
and once when it is back; the work loop, the inbox pump, the command listener, the scheduler and the
renewals wait for it with a backoff; a job whose run it cut short goes back to the queue; and the chains of
scheduled jobs (polls, webhook checks, notification dispatch) are scheduled again when Redis is back.
"""

from __future__ import annotations

import logging
import math
import multiprocessing.util
import os
import threading
import time
from pathlib import Path
from typing import Any

import redis
from redis.client import Pipeline, PubSub, PubSubWorkerThread
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import DequeueTimeout, StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.registry import clean_registries
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer, Serializer
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus
from rq.worker_registration import clean_worker_registry

from gateway import redisclient
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.ingest import make_queue
from gateway.live import Changes, Check, Reloader, install_sighup
from gateway.redisserver import die_with_parent
from workers import keepalive, runtime
from workers.inbox import pump_for
from workers.jobs import batchable_for, direct_for
from workers.notifier import schedule_dispatch
from workers.outage import UNREACHABLE, Outage, outage
from workers.pollers import schedule_polls
from workers.recovery import hand_back, recover, recover_due
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


class ResilientQueue(Queue):
    """RQ's queue, whose blocking dequeue waits out a Redis outage (`workers/outage.py`) instead of letting
    RQ's work loop log an ERROR per retry: the outage is noted, the backoff slept, and the dequeue ends as
    a timeout (RQ's loop then beats and dequeues again)."""

    @classmethod
    def dequeue_any(
        cls,
        queues: Any,
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: Serializer | str | None = None,
        death_penalty_class: type[BaseDeathPenalty] | None = None,
    ) -> tuple[Job, Queue] | None:
        try:
            found = super().dequeue_any(queues, timeout, connection, job_class, serializer, death_penalty_class)
        except UNREACHABLE as exc:
            outage.failed(exc, "the work loop")
            outage.wait()
            raise DequeueTimeout(timeout, [queue.key for queue in queues]) from None
        outage.ok()
        return found


    def move_dependents_to_ready(
        self, job: Job, pipeline: Pipeline | None = None, exclude_job_id: str | None = None,
        refresh_job_status: bool = True,
    ) -> dict[str, list[str]]:  # fmt: skip
        """Nothing: Koppel enqueues no job that depends on another (no `depends_on`), and RQ would read the
        finished job's dependents set after every job (a round trip each)."""
        return {}


class KoppelScheduler(RQScheduler):
    """RQ's scheduler (a forked child of the worker), which waits out a Redis outage instead of dying with
    a traceback. Its outage is the worker's, logged there: here it is noted at DEBUG only."""

    def work(self) -> None:
        quiet = Outage("scheduler", level=logging.DEBUG)
        while True:
            try:
                super().work()  # type: ignore[no-untyped-call]
                return
            except UNREACHABLE as exc:
                quiet.failed(exc)
                while not self._stop_requested and not quiet.ping(self.connection):
                    quiet.wait()
                if self._stop_requested:
                    return


class QuietWorker(Worker):
    """RQ's worker, whose expected failures are the job's one log line without RQ's traceback: as is, the
    forking worker of `koppel worker --fork` (a process per job); `KoppelWorker` builds on it. Its command
    listener stops at once when the worker does (`unsubscribe`).

    It rides out a Redis outage (workers/outage.py: one log line when Redis goes, one when it is back):
    the work loop waits for Redis before each dequeue (`check_for_suspension`), a dequeue, heartbeat,
    state write or maintenance that fails for want of Redis is tried again later instead of ending the
    loop, a job whose run Redis cut short goes back to the queue (workers/recovery.py: `hand_back`), the
    command listener and the scheduler wait for Redis. A dead worker's job is handed back by Koppel's
    recovery, not RQ's abandoned-job handling (`clean_registries`)."""

    orphan_after: float = 30.0
    """Seconds a job may sit taken but not started before it counts as a dead worker's (`run_worker` sets
    it to the heartbeat TTL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_class = ResilientQueue  # its dequeue; set after RQ checked the queues given (any `Queue`)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return 3 * int(self.job_monitoring_interval)

    def _shutdown(self) -> None:
        """RQ's warm shutdown, which stops an idle worker by raising StopRequested from the signal handler. A
        SIGTERM landing while the worker forks its scheduler runs that handler inside logging's after-fork
        hook, which swallows the exception, and the worker idled on: the request is also kept in
        `_stop_requested`, which the work loop reads each turn (an idle dequeue waits `dequeue_timeout`)."""
        self._stop_requested = True
        super()._shutdown()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated

    def subscribe(self) -> None:
        """RQ's: the worker's command channel, listened to on a daemon thread, waking every `PUBSUB_WAKEUP` s.

        SIGTERM/SIGINT are handled (warm shutdown) before the worker is seen listening: RQ installs its handlers
        only after this, and a SIGTERM in between ended the worker by the default action (exit -15)."""
        self._install_signal_handlers()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated
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
        `PUBSUB_WAKEUP` bounds the wait should that ever change. Without Redis, the listener is just stopped.
        """
        running = getattr(self.pubsub_thread, "_running", None)
        if isinstance(running, threading.Event):
            running.clear()
        try:
            super().unsubscribe()  # type: ignore[no-untyped-call]
        except UNREACHABLE as exc:
            outage.failed(exc, "the command listener")
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()

    def _pubsub_exception_handler(self, exc: Exception, pubsub: PubSub, pubsub_thread: PubSubWorkerThread) -> None:
        """RQ's logs an ERROR every 2 s while Redis is away: noted as the outage instead, redis-py then
        reconnects and subscribes again."""
        if isinstance(exc, UNREACHABLE):
            outage.failed(exc, "the command listener")
            outage.wait()
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def _start_scheduler(
        self, burst: bool = False, logging_level: str | None = "INFO", date_format: str = "", log_format: str = ""
    ) -> None:
        """RQ's, with `KoppelScheduler`: the scheduler's lock taken, it runs in a child (or, in burst mode,
        moves the due jobs once)."""
        self.scheduler = KoppelScheduler(
            self.queues, connection=self.connection, serializer=self.serializer,
            logging_level=logging_level if logging_level is not None else self.log.level,
            **({"date_format": date_format} if date_format else {}),
            **({"log_format": log_format} if log_format else {}),
        )  # fmt: skip
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()  # type: ignore[no-untyped-call]
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            self.scheduler.release_locks()  # type: ignore[no-untyped-call]
            self.scheduler.register_death()

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's, which the work loop calls before each dequeue; while Redis is away, it waits here."""
        while True:
            try:
                super().check_for_suspension(burst)
            except UNREACHABLE as exc:
                outage.failed(exc, "the work loop")
                if self._stop_requested:
                    return
                outage.wait()
                continue
            outage.ok()
            return

    def run_maintenance_tasks(self) -> None:
        """RQ's; without Redis it is skipped (tried again at the next turn)."""
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except UNREACHABLE as exc:
            outage.failed(exc, "the registry maintenance")

    def clean_registries(self) -> None:
        """RQ's maintenance of each queue's registries, but a dead worker's job is handed back by Koppel's
        recovery (workers/recovery.py) before RQ's registry clean-up could retry or fail it, and RQ's
        intermediate-queue clean-up (a minute, then failed) is left out. Right after a Redis outage, nothing
        is done until the live workers beat again. The maintenance lock is released however it ends."""
        if outage.ended_within(self.orphan_after):
            self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ declares it None
            return
        for queue in self.queues:
            if not queue.acquire_maintenance_lock():
                continue
            try:
                recover(queue, orphan_after=self.orphan_after)
                clean_registries(queue, self._exc_handlers)
                clean_worker_registry(queue)
            finally:
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ declares it None

    def recover_dead_workers_jobs(self) -> bool:
        """One pass of the recovery for each queue (one worker per heartbeat does it): the keepalive thread
        runs this every heartbeat, whether this worker is busy or not."""
        if outage.ended_within(self.orphan_after):
            return True
        for queue in self.queues:
            try:
                recover_due(queue, every=self.job_monitoring_interval, orphan_after=self.orphan_after)
            except UNREACHABLE as exc:
                outage.failed(exc, "the recovery of dead workers' jobs")
        return True

    def _stop_if_asked(self) -> None:
        """A stop the signal handler could not raise (see `_shutdown`) is raised at the next beat, which RQ's
        idle dequeue loop sends before each wait: the idle worker stops within `dequeue_timeout`."""
        if self._stop_requested and self.get_state() != WorkerStatus.BUSY:
            raise StopRequested()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's; a beat that cannot reach Redis is skipped (the next one comes)."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        self._stop_if_asked()
        try:
            super().heartbeat(timeout)
        except UNREACHABLE as exc:
            outage.failed(exc, "the worker's heartbeat")

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        try:
            super().set_state(state)
        except UNREACHABLE as exc:
            outage.failed(exc, "the worker's state")

    def set_shutdown_requested_date(self) -> None:
        try:
            super().set_shutdown_requested_date()  # type: ignore[no-untyped-call]
        except UNREACHABLE as exc:
            outage.failed(exc, "the worker's shutdown")

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        """RQ's beat of a running job; without Redis it is skipped (the job goes on, the next beat comes)."""
        try:
            super().maintain_heartbeats(job, execution)
        except UNREACHABLE as exc:
            outage.failed(exc, f"job {job.id}'s heartbeat")
        else:
            outage.ok()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """The job run (`_execute`); when Redis goes away in the middle of it (the job's own calls, or RQ's
        recording of its end), the worker waits for Redis and then hands the job back (workers/recovery.py:
        run again at once, as the flows are exactly-once by their ledger), unless its end was recorded."""
        try:
            with runtime.running_job():  # a live reload swaps the config between jobs, never during one
                self._execute(job, queue)
        except UNREACHABLE as exc:
            outage.failed(exc, f"job {job.id}")
            self.executions.clear()
            while not outage.ping(self.connection):
                if self._stop_requested:
                    return  # its heartbeat expires: the recovery of another worker hands it back
                outage.wait()
            try:
                hand_back(queue, job)
            except UNREACHABLE as again:
                outage.failed(again, f"job {job.id}")
            self.set_state(WorkerStatus.IDLE)

    def _execute(self, job: Job, queue: Queue) -> None:
        super().execute_job(job, queue)

    def teardown(self) -> None:
        """RQ's (the scheduler stopped, the worker's death registered, the listener stopped), each step
        done without Redis too."""
        if self.is_horse:
            return
        if self.scheduler:
            self.stop_scheduler()  # type: ignore[no-untyped-call]
        try:
            self.register_death()  # type: ignore[no-untyped-call]
        except UNREACHABLE as exc:
            outage.failed(exc, "the worker's sign-off")
        self.unsubscribe()

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
    _suspension_checked_at = -math.inf

    def _execute(self, job: Job, queue: Queue) -> None:
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
        if pipeline is None:
            self._stop_if_asked()
        timeout = timeout or self.worker_ttl + 60
        expires_at = time.monotonic() + timeout
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
        elif self._expires_at >= expires_at - HEARTBEAT_SLACK:
            return
        else:
            self._expires_at = -math.inf  # unknown until the beat is through
            try:
                with self.connection.pipeline(transaction=False) as own:
                    super().heartbeat(timeout, pipeline=own)
                    own.execute()
            except UNREACHABLE as exc:
                outage.failed(exc, "the worker's heartbeat")
                return
        self._expires_at = expires_at

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's, but a state written less than `HEARTBEAT_SLACK` s ago is not written again (a
        SimpleWorker writes `idle` after each job and again before each dequeue)."""
        if pipeline is None and state == self._state and time.monotonic() - self._state_written_at < HEARTBEAT_SLACK:
            return
        super().set_state(state, pipeline=pipeline)
        self._state_written_at = time.monotonic()

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's (`rq suspend`: a GET before each dequeue), at most once per `HEARTBEAT_SLACK` s while it finds
        the worker not suspended: back-to-back jobs pay it once a second, not once each."""
        if time.monotonic() - self._suspension_checked_at < HEARTBEAT_SLACK:
            return
        super().check_for_suspension(burst)
        self._suspension_checked_at = time.monotonic()

    def _beat(self, job: Job, execution: Execution) -> None:
        try:
            self.maintain_heartbeats(job, execution)  # without Redis: the outage noted, the next beat tries again
        except redis.RedisError as exc:
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


def _work(worker: Worker, *, burst: bool, max_jobs: int | None) -> bool:
    """RQ's work loop, scheduler on. A stop asked for while it starts (SIGTERM or RQ's shutdown command after
    the worker subscribed, before its loop: while it starts the scheduler) raises StopRequested out of RQ's
    `work`, past its teardown: the worker then stops as it would in the loop, unregistered."""
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, max_jobs=max_jobs, logging_level="WARNING"))
    except StopRequested:
        worker.teardown()
        return False


def run_worker(
    config: Config, redis_url: str, *, burst: bool = False, fork: bool = False, max_jobs: int | None = None,
    config_path: Path | None = None, check: Check | None = None,
) -> bool:
    """Work the queue until stopped (or, `burst`, until it is empty). With `config_path` and `check` (how
    the file is checked: `gateway.checks.check_parts`), the worker follows that file (gateway/live.py):
    watched, reloaded on SIGHUP and when another process announces a change; the new config is taken
    between jobs, and the polls, webhook checks and notifications it asks for are scheduled. Returns whether it
    did any work (a job, or an inbox entry)."""
    # No socket timeout: the worker blocks on the queue for longer than a request would wait.
    connection = redisclient.connect(redis_url, health_check_interval=30)
    while not outage.ping(connection):  # started while Redis is away: wait for it (one log line)
        outage.wait()
    rt = runtime.Runtime(config=config, connection=connection, snapshot_ttl=config.retention.payloads)
    runtime.install(rt)
    queue = make_queue(connection, config.gateway.queue)
    worker_class = QuietWorker if fork else KoppelWorker
    global _guard
    if _guard is None or _guard.parent != os.getpid():
        _guard = _SchedulerGuard()

    def schedule_chains() -> None:
        current = rt.config  # the running config: a live reload swaps it
        schedule_polls(connection, current)  # sources without push (Exact Sync API) are polled on a schedule
        schedule_checks(connection, current)  # and the webhooks Koppel manages are checked on one
        schedule_dispatch(connection, current)  # and notifications are sent (when an integration asks for them)

    schedule_chains()
    heartbeat = config.gateway.worker_heartbeat_seconds
    worker = worker_class(
        [queue], connection=connection, serializer=JSONSerializer, **worker_timing(heartbeat),
    )  # fmt: skip
    worker.orphan_after = 3 * heartbeat  # as long as a job's heartbeat lives
    # A dead worker's pump left what it read pending: reclaimed after three beats (at least 5 s), as its jobs.
    pump = pump_for(connection, config.gateway, config.retention, claim_idle_ms=max(5_000, 3_000 * heartbeat),
                    batchable=batchable_for(config),  # records a target writes in batches: one job (workers/inbox.py)
                    direct=direct_for(rt))  # a record's events run by the pump itself ([gateway] direct_events)
    purger = PurgeLoop(connection, config, worker=worker.name)  # [retention], enforced (workers/retention.py)
    outage.on_back.append(schedule_chains)  # a chain's next job may not have been scheduled while Redis was away

    def apply(new: Config, changes: Changes) -> None:
        rt.swap(new, changes)  # after the running job
        purger.config = new
        fresh = pump_for(connection, new.gateway, new.retention)  # the next records' retries and TTLs
        pump.retry_factory, pump.result_ttl, pump.failure_ttl = fresh.retry_factory, fresh.result_ttl, fresh.failure_ttl
        pump.batchable = batchable_for(new)
        try:
            schedule_chains()  # a new system's polls, a new endpoint's checks, new notifications
        except UNREACHABLE as exc:  # scheduled when Redis is back (`on_back`)
            outage.failed(exc, "scheduling the new config's polls and checks")

    reloader = None
    if config_path is not None and check is not None and not burst:
        reloader = Reloader(config_path, lambda: rt.config, apply, check, connection=connection, name="worker")
        reloader.start()
        install_sighup(reloader)
    try:
        if burst:
            purger.once()
            drained = pump.drain()  # with direct_events, the records are run here (workers/inbox.py)
            return _work(worker, burst=True, max_jobs=max_jobs) or drained > 0
        thread, stop = pump.start()
        purger.start()
        try:
            with keepalive.renewing(worker.recover_dead_workers_jobs, heartbeat, name="recovery of dead workers' jobs"):
                return _work(worker, burst=False, max_jobs=max_jobs)
        finally:
            stop.set()  # the pump finishes the record it runs (its lock's wait and its target's calls are bounded)
            purger.close()
            thread.join(timeout=60)
    finally:  # an in-process (burst) worker leaves no sockets open: its own, the runtime's, the scheduler's
        if reloader is not None:
            reloader.stop()
        outage.on_back.remove(schedule_chains)
        scheduler_connection = getattr(worker.scheduler, "_connection", None) if worker.scheduler else None
        if scheduler_connection is not None:
            scheduler_connection.close()
        rt.close()
        redisclient.close(connection)
