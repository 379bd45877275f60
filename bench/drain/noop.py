"""The no-op RQ job and the SimpleWorker that drains it, run as a child process of bench/drain.

    python -m bench.drain.noop <redis url> <queue> [--cpu N]

Prints one JSON line: jobs done, the wall seconds from the first job started to the last one ended (by the
jobs' own timestamps), the wall seconds and CPU seconds of this process spent in `work(burst=True)`
(imports and connecting left out, as the Koppel workers' start is left out of their figures).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job


def noop() -> None:
    """The job: nothing, so that what a worker spends on it is RQ's own lifecycle."""


class NoopWorker(SimpleWorker):
    """RQ's SimpleWorker, its command subscription kept, but not joined at teardown: redis-py's pubsub thread
    sometimes sleeps ~60 s there (seen in bench/drain), after the last job and outside every figure."""

    def unsubscribe(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain.noop")
    parser.add_argument("redis_url")
    parser.add_argument("queue")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    connection = Redis.from_url(args.redis_url)
    queue = Queue(args.queue, connection=connection)
    before = queue.count
    worker = NoopWorker([queue], connection=connection)
    cpu, wall = time.process_time(), time.monotonic()
    worker.work(burst=True, logging_level="WARNING", max_jobs=before)  # no dequeue after the last
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    jobs = [job for job in Job.fetch_many(queue.finished_job_registry.get_job_ids(), connection) if job]
    starts = [job.started_at for job in jobs if job.started_at]
    ends = [job.ended_at for job in jobs if job.ended_at]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else wall
    print(json.dumps({"jobs": before - queue.count, "jobs_wall_s": span, "wall_s": wall, "cpu_s": cpu}), flush=True)
    os._exit(0)  # the subscription's thread is not waited for (NoopWorker)


if __name__ == "__main__":
    main()
