"""The no-op RQ job and the SimpleWorker that drains it, run as a child process of bench/drain.

    python -m bench.drain.noop <redis url> <queue> [--cpu N]

Prints one JSON line: jobs done, wall seconds and CPU seconds of this process spent in `work(burst=True)`
(imports and connecting left out, as the Koppel workers' start is left out of their figures).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from redis import Redis
from rq import Queue, SimpleWorker


def noop() -> None:
    """The job: nothing, so that what a worker spends on it is RQ's own lifecycle."""


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
    worker = SimpleWorker([queue], connection=connection)
    cpu, wall = time.process_time(), time.monotonic()
    worker.work(burst=True, logging_level="WARNING")
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"jobs": before - queue.count, "wall_s": wall, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
