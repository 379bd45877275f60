"""A dead worker's job runs again within seconds: Koppel's own handling of RQ's abandoned jobs.

A worker that dies (SIGKILL, OOM, a pulled plug) leaves its job in one of two places:

* RQ's StartedJobRegistry, when it had started the job: the entry's score is when the job's heartbeat
  expires (three beats after the last one, workers/worker.py), so an entry whose score has passed is a
  job whose worker stopped beating.
* RQ's intermediate queue, when it died between taking the job off the queue and starting it (a
  moment in a live worker): such a job is in neither the queue nor the StartedJobRegistry.

RQ would retry the first by the job's retry schedule (a retry used up, an extra wait) or fail it with
`AbandonedJobError` when no retry is left, and it fails the second after a minute. Koppel's flows are
exactly-once by their ledger (workers/ledger.py), so running such a job again is safe: `recover` puts
it back at the front of the queue at once, without using up one of its retries. A job whose worker died
`MAX_WORKER_DEATHS` times while running it is the likely cause (it runs its worker out of memory,
say): it goes to the failed registry with that reason (`job.meta["reason"]`), to be replayed once the
cause is found.

`recover` runs from every worker's keepalive thread each heartbeat (one worker per beat does the work,
`recover_due`) and before RQ's own registry maintenance, so RQ never sees an abandoned job first.
Each job is handed back in a WATCHed transaction: a live worker's beat (which writes the job) in between
leaves it alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import cast

import redis
from redis.exceptions import WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.utils import parse_composite_key

from gateway import keys

log = logging.getLogger("koppel.worker")

MAX_WORKER_DEATHS = 3
"""A job whose worker died this many times while running it is failed instead of run again."""
DEATHS = "worker_deaths"
"""`job.meta` key: how many workers died while running the job."""
ORPHANS = "koppel:orphans:{0}"
"""Hash of a queue's jobs seen in RQ's intermediate queue but not started: job id → first seen (epoch s)."""
LOCK = "koppel:recovery:{0}"

_HAND_BACK = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
"""Move a job id from the intermediate queue back to the front of the queue (only if it is still there)."""


def death_reason(deaths: int) -> str:
    return (
        f"its worker died {deaths} times while running it (killed, out of memory or crashed): find the cause "
        "in the workers' logs, then replay it"
    )


@dataclass
class Recovered:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def recover(queue: Queue, *, orphan_after: float, max_deaths: int = MAX_WORKER_DEATHS) -> Recovered:
    """Hand back what dead workers left: started jobs whose heartbeat expired, and jobs taken off the queue
    but not started within `orphan_after` s (seen by two passes at least that far apart)."""
    connection = queue.connection
    found = Recovered()
    started_key = queue.started_job_registry.key
    now = time.time()
    for entry in cast(list[bytes], connection.zrangebyscore(started_key, 0, now)):
        _abandoned(queue, keys.text(entry), max_deaths, found)
    taken = [keys.text(job_id) for job_id in connection.lrange(queue.intermediate_queue_key, 0, -1)]
    orphans = ORPHANS.format(queue.name)
    seen = {keys.text(k): float(v) for k, v in connection.hgetall(orphans).items()}
    if not taken and not seen:
        return found
    entries = cast(list[bytes], connection.zrange(started_key, 0, -1))
    running = {parse_composite_key(keys.text(entry))[0] for entry in entries}
    waiting = [job_id for job_id in dict.fromkeys(taken) if job_id not in running]
    first_seen = {job_id: now for job_id in waiting if job_id not in seen}
    for job_id in waiting:
        if job_id in seen and now - seen[job_id] >= orphan_after:
            _orphan(queue, job_id, found)
    with connection.pipeline(transaction=False) as pipe:
        gone = [job_id for job_id in seen if job_id not in waiting]
        if gone:
            pipe.hdel(orphans, *gone)
        if first_seen:
            for job_id, at in first_seen.items():
                pipe.hset(orphans, job_id, at)
            pipe.expire(orphans, 24 * 3600)
        pipe.execute()
    return found


def recover_due(queue: Queue, *, every: float, orphan_after: float) -> Recovered | None:
    """`recover`, unless another worker ran it less than `every` s ago (a short lock says so)."""
    if not queue.connection.set(LOCK.format(queue.name), 1, nx=True, px=max(1, int(every * 900))):
        return None
    return recover(queue, orphan_after=orphan_after)


def _abandoned(queue: Queue, entry: str, max_deaths: int, found: Recovered) -> None:
    job_id, execution_id = parse_composite_key(entry)
    started_key = queue.started_job_registry.key
    with queue.connection.pipeline() as pipe:
        try:
            pipe.watch(Job.key_for(job_id), started_key)
            score = pipe.zscore(started_key, entry)
            if score is None or score > time.time():
                return  # handed back already, or its worker beat meanwhile
            try:
                job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
            except NoSuchJobError:
                job = None
            pipe.multi()
            pipe.zrem(started_key, entry)
            pipe.delete(Execution(execution_id, job_id, connection=queue.connection).key)
            if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
                pipe.execute()  # the job ended (or is gone) and its entry was left behind
                return
            deaths = int(job.meta.get(DEATHS, 0)) + 1
            job.meta[DEATHS] = deaths
            if deaths >= max_deaths:
                reason = death_reason(deaths)
                job.meta["reason"] = reason
                job.save(pipeline=pipe)
                record_job_failure(job, reason, pipe)
            else:
                queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        except WatchError:
            return  # a live worker wrote the job meanwhile: the next pass looks again
    if deaths >= max_deaths:
        log.warning("job %s: %s; moved to the failed jobs", job_id, death_reason(deaths))
        found.failed.append(job_id)
    else:
        log.warning("job %s: its worker died while running it; queued to run again", job_id)
        found.requeued.append(job_id)


def _orphan(queue: Queue, job_id: str, found: Recovered) -> None:
    connection = queue.connection
    with connection.pipeline() as pipe:
        try:
            pipe.watch(Job.key_for(job_id))
            status = pipe.hget(Job.key_for(job_id), "status")
            pipe.multi()
            pipe.hdel(ORPHANS.format(queue.name), job_id)
            if status is None or keys.text(status) != JobStatus.QUEUED:
                pipe.lrem(queue.intermediate_queue_key, 1, job_id)  # gone, or done by a worker of several queues
                pipe.execute()
                return
            pipe.eval(_HAND_BACK, 2, queue.intermediate_queue_key, queue.key, job_id)
            moved = pipe.execute()[-1]
        except WatchError:
            return
    if moved:
        log.warning("job %s: its worker died after taking it off the queue; queued to run again", job_id)
        found.requeued.append(job_id)


def hand_back(queue: Queue, job: Job) -> bool:
    """After a Redis outage ended a job's run in this worker: the job back at the front of the queue, unless
    its run was recorded as ended (finished, failed, scheduled) before Redis went away; whether it went back.
    Its entries in the StartedJobRegistry are removed either way."""
    connection: redis.Redis = queue.connection
    started_key = queue.started_job_registry.key
    with connection.pipeline() as pipe:
        try:
            pipe.watch(job.key, started_key)
            status = pipe.hget(job.key, "status")
            entries = [keys.text(e) for e in cast(list[bytes], pipe.zrange(started_key, 0, -1))]
            mine = [e for e in entries if parse_composite_key(e)[0] == job.id]
            pipe.multi()
            if mine:
                pipe.zrem(started_key, *mine)
            state = keys.text(status) if status is not None else None
            if state == JobStatus.STARTED:
                fresh = Job.fetch(job.id, connection=connection, serializer=queue.serializer)
                queue.enqueue_job(fresh, pipeline=pipe, at_front=True)
            elif state == JobStatus.QUEUED:  # not started yet: still in the intermediate queue
                pipe.eval(_HAND_BACK, 2, queue.intermediate_queue_key, queue.key, job.id)
            pipe.execute()
            if state not in (JobStatus.STARTED, JobStatus.QUEUED):
                return False
        except (WatchError, NoSuchJobError):
            return False
    log.warning("job %s: Redis went away while it ran; queued to run again", job.id)
    return True


__all__ = ["DEATHS", "MAX_WORKER_DEATHS", "Recovered", "death_reason", "hand_back", "recover", "recover_due"]
