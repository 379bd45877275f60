"""How a job fails: retry schedule, permanent failures, and one job per resource at a time.

Every event job is enqueued with `retry_schedule()`: jittered exponential backoff (base 2^n, a
random factor 0.5-1.5 so a burst of failures does not retry in lockstep, capped). A
`TransientError` (timeouts, 5xx, 429, a busy resource) raises through and RQ's scheduler retries
it; a `PermanentError` zeroes the job's retries so it lands in the failed registry at once, its
message kept as `job.meta["reason"]` for the dashboard and `koppel replay`.

The resource lock lives `hold` seconds and is renewed every third of that while its work runs: live
work of any length keeps it, and the lock of a worker that died mid-job frees itself within `hold`.
The renewals are made by the process's keepalive thread (workers/keepalive.py), not a thread per lock.
A waiting job wakes as soon as the holder releases (workers/locks.py), not on a 100 ms poll.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import LockError, LockNotOwnedError
from rq import Retry, get_current_job
from rq.job import Job

from gateway import keys
from gateway.errors import PermanentError, TransientError
from workers import keepalive
from workers.locks import WakingLock
from workers.outage import UNREACHABLE, outage

log = logging.getLogger("koppel.worker")


def retry_schedule(
    attempts: int = 8, base: float = 5.0, cap: float = 3600.0, rng: random.Random | None = None
) -> Retry:
    rng = rng or random.SystemRandom()
    intervals = [max(1, round(min(cap, base * 2**n) * rng.uniform(0.5, 1.5))) for n in range(attempts)]
    return Retry(max=attempts, interval=intervals)


class DirectRun:
    """An event's first attempt run by the inbox pump itself, without an RQ job (workers/inbox.py): what the job
    functions read of their running job (`current_job`), so one flow serves both paths. Its id is the job id
    the event has (and keeps if this attempt fails: the pump then makes that RQ job, with `retries_left` and
    `meta` as this attempt left them). `finishing`: the pump's commands that end the attempt (the inbox entries'
    acknowledgement, the outcome's record), queued by `process_event` on the pipeline that releases the
    record's lock (`resource_lock`'s `finish`) with the summary it returns; `finished` once queued."""

    def __init__(self, job_id: str, retries_left: int | None,
                 finishing: Callable[[Pipeline, dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.id = job_id
        self.retries_left = retries_left
        self.meta: dict[str, Any] = {}
        self.finishing = finishing
        self.finished = False

    def save_meta(self) -> None:
        """Nothing to save: the meta goes with the RQ job made if this attempt fails."""

    def finish_in(self, pipe: Pipeline, summary: dict[str, Any]) -> None:
        if self.finishing is not None and not self.finished:
            self.finishing(pipe, summary)
            self.finished = True


_direct: ContextVar[DirectRun | None] = ContextVar("koppel_direct_run", default=None)


@contextlib.contextmanager
def running_direct(run: DirectRun) -> Iterator[DirectRun]:
    """`run` is the current job (`current_job`) in this thread while the block runs."""
    token = _direct.set(run)
    try:
        yield run
    finally:
        _direct.reset(token)


def current_job() -> Job | DirectRun | None:
    """The running job: the inbox pump's direct attempt, else RQ's job (None outside both)."""
    run = _direct.get()
    return run if run is not None else get_current_job()


def direct_run() -> DirectRun | None:
    """The inbox pump's direct attempt running in this thread (None in an RQ job)."""
    return _direct.get()


def fail_permanently(error: PermanentError) -> None:
    """Mark the running job as not retryable, with a human-readable reason."""
    job = current_job()
    if job is None:
        return
    job.retries_left = 0
    job.meta["reason"] = str(error)
    job.save_meta()


def note_transient(error: TransientError) -> None:
    job = current_job()
    if job is None:
        return
    job.meta["last_error"] = str(error)
    job.save_meta()


class Held:
    """A resource lock held (`resource_lock`): the replies of the commands sent with its first try (`also`),
    whether that try took it (`under_lock`: those replies were then read while it was held — a reply that must
    come from under the lock is good only then), and `finish`, a pipeline whose commands are sent with the
    release, before it, in one round trip."""

    def __init__(self, also: list[Any], under_lock: bool = False) -> None:
        self.also = also
        self.under_lock = under_lock
        self.finish: Pipeline | None = None


@contextlib.contextmanager
def resource_lock(
    connection: redis.Redis, *parts: str, hold: float = 30, wait: float = 10,
    also: Callable[[Pipeline], None] | None = None,
) -> Iterator[Held]:  # fmt: skip
    """Serialise work on one resource (e.g. one order of one integration) across all workers.

    Two events for the same order (created and updated arriving together) never race: the second
    waits up to `wait` seconds, then retries later as a transient failure. The lock expires `hold`
    seconds after its last renewal; the keepalive thread renews it every `hold / 3` s while the work
    runs, and no more once the block is left (before the lock is released).

    `also(pipe)` queues reads sent with the first try to take the lock (`Held.also`: their replies, read under
    the lock when `Held.under_lock`: the try took it, and they ran after it in the same connection). When
    the block ends without an exception and set `Held.finish` (a non-transactional pipeline), its commands
    are sent with the release, in one round trip; otherwise it is discarded and the lock released alone.
    """
    name = keys.lock(*parts)
    # Not thread-local: the renewing thread must see the token the acquiring thread got.
    # Waiters wake when the holder releases (workers/locks.py), not on redis-py's 100 ms poll.
    lock = WakingLock(
        connection, name, wake_name=keys.lock_wake(*parts), timeout=hold, blocking_timeout=wait, thread_local=False
    )
    if not lock.acquire(also=also):
        raise TransientError(f"another job is working on {':'.join(parts)}; retrying later")
    held = Held(lock.also, lock.also_held)
    try:
        with keepalive.renewing(lambda: _renew(lock), hold / 3, name=f"lock {name}"):
            yield held
        if held.finish is not None:
            lock.release_in(held.finish)
            held.finish.execute()
    finally:
        if held.finish is not None:
            held.finish.reset()
        with contextlib.suppress(LockError):
            lock.release()


@contextlib.contextmanager
def resource_locks(
    connection: redis.Redis, resources: Sequence[tuple[str, ...]], *, hold: float = 30, wait: float = 10,
    also: Callable[[Pipeline], None] | None = None,
) -> Iterator[Held]:  # fmt: skip
    """`resource_lock` for several resources at once (a batch job's records), in two round trips instead of two
    per resource: all taken in one (with `also`), all released in one (with `Held.finish`). When another job
    holds one of them, those taken are let go and each is taken in `resources`' order, waiting as
    `resource_lock` waits (so two jobs never wait on each other); one not taken within `wait` seconds is a
    TransientError (retried later)."""
    locks = [WakingLock(connection, keys.lock(*parts), wake_name=keys.lock_wake(*parts), timeout=hold,
                        blocking_timeout=wait, thread_local=False) for parts in resources]  # fmt: skip
    with connection.pipeline(transaction=False) as pipe:
        tokens = [lock.try_in(pipe) for lock in locks]
        if also is not None:
            also(pipe)
        replies = pipe.execute()
    held = Held(replies[len(locks) :])
    try:
        took = [lock.took(reply, token) for lock, reply, token in zip(locks, replies, tokens, strict=False)]
        held.under_lock = all(took)
        if not held.under_lock:
            _release_all(connection, locks)  # one is busy: each taken in order, waiting for the busy ones
            for lock, parts in zip(locks, resources, strict=True):
                if not lock.acquire():
                    raise TransientError(f"another job is working on {':'.join(parts)}; retrying later")
        alive = list(locks)

        def renew() -> bool:
            alive[:] = [lock for lock in alive if _renew(lock)]
            return bool(alive)

        with keepalive.renewing(renew, hold / 3, name=f"{len(locks)} locks of a batch"):
            yield held
        if held.finish is not None:
            for lock in locks:
                lock.release_in(held.finish)
            held.finish.execute()
    finally:
        if held.finish is not None:
            held.finish.reset()
        with contextlib.suppress(redis.RedisError):
            _release_all(connection, locks)


def _release_all(connection: redis.Redis, locks: list[WakingLock]) -> None:
    """Release the locks still held by these objects, in one round trip."""
    mine = [lock for lock in locks if lock.local.token is not None]
    if mine:
        with connection.pipeline(transaction=False) as pipe:
            for lock in mine:
                lock.release_in(pipe)
            pipe.execute()


def _renew(lock: redis.lock.Lock) -> bool:
    """One renewal; False when the lock is lost (expired and perhaps taken): no more renewals then."""
    try:
        lock.reacquire()
    except LockNotOwnedError:
        log.warning("lock %s expired before it was renewed; the work goes on without it", lock.name)
        return False
    except UNREACHABLE as exc:  # Redis away: noted once for the process; try again at the next renewal
        outage.failed(exc, f"lock {lock.name}")
    except redis.RedisError as exc:
        log.warning("lock %s not renewed: %s", lock.name, exc)
    return True
