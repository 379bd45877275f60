"""bench/drain's profile: where one worker's CPU and Redis round trips go while it drains a delivered batch.

    .venv/bin/python -m bench.drain.profile [--orders 300] [--top 25]

The WooCommerce → Exact stack (gateway/stack.py, no worker) fills the inbox through the real gateway with
`--orders` orders (order.created and order.updated each); then `koppel worker --burst`'s own code
(`workers.worker.run_worker`) drains it in this process under cProfile ("drain"). Then every event job that
ran is queued again as a new job of the same event and drained the same way ("answered"): each finds its
order booked (the ledger or the seen version answers it), as an order.updated does that arrives after its
order.created was processed.

Printed: per order (and per event) the worker's CPU (under cProfile and the round-trip counter: compare
runs of this tool, not with bench/drain's figures), the Redis round trips it made (redis-py's
`send_packed_command` calls: a pipeline is one; by sender: the innermost frame of Koppel's code, else
RQ's function), the Redis commands it sent (`INFO commandstats` delta) by
command, and cProfile's top functions by cumulative and own time. Results in bench/results/profile-*.json
and the raw profile beside it (`python -m pstats`). Then, without the profiler: the answered events once more,
the worker thread's CPU per event beside a no-op RQ job's (bench/drain's no-op child, unpinned); and another
batch of `--orders` drained, the worker thread's CPU per order and how much of it ran inside `process_event`
and, within it, `run_event` (the flow: RQ's job lifecycle and the inbox pump are outside both).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench.common import RESULTS, run_bench
from bench.drain.run import fill, noop_run
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import Stack, StackOptions


def say(message: str) -> None:
    print(f"bench/drain/profile: {message}", file=sys.stderr, flush=True)


def commandstats(conn: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in conn.info("commandstats").items()}


ROOT_DIR = str(Path(__file__).resolve().parents[2])
OURS = tuple(f"{ROOT_DIR}/{part}/" for part in ("workers", "gateway", "connectors", "transforms"))


def who(stack: list[traceback.FrameSummary]) -> str:
    """Who sent a round trip: the innermost frame of Koppel's code (and of RQ's within it), else of RQ's."""
    rq = next((f"rq: {frame.name}" for frame in reversed(stack) if "/rq/" in frame.filename), None)
    for depth, frame in enumerate(reversed(stack)):
        if frame.filename.startswith(OURS):
            ours = f"{frame.filename.removeprefix(ROOT_DIR + '/')}:{frame.name}"
            inner = [f for f in list(reversed(stack))[:depth] if "/rq/" in f.filename]
            return f"{ours} > rq: {inner[0].name}" if inner else ours
    return rq or "other"


@contextmanager
def round_trips() -> Iterator[Counter[str]]:
    """Count redis-py's `send_packed_command` calls (one per round trip: a pipeline is one) by sender."""
    from redis.connection import AbstractConnection

    counts: Counter[str] = Counter()
    original = AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        counts[who(traceback.extract_stack(limit=30))] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def drain(stack: Stack, label: str, events: int, orders: int, top: int, workdir: Path) -> dict[str, Any]:
    from workers.worker import run_worker

    conn = stack.connection
    with round_trips() as senders:
        before = commandstats(conn)
        profile = cProfile.Profile()
        cpu, wall = time.process_time(), time.monotonic()
        profile.enable()
        run_worker(stack.config(), stack.redis_url, burst=True)
        profile.disable()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    after = commandstats(conn)
    commands = {name: after[name] - before.get(name, 0) for name in after if after[name] - before.get(name, 0)}
    commands.pop("info", None)
    stats = pstats.Stats(profile)
    trips = sum(senders.values())
    path = workdir / f"{label}.pstats"
    stats.dump_stats(path)
    text = io.StringIO()
    for key in ("cumulative", "tottime"):
        pstats.Stats(str(path), stream=text).sort_stats(key).print_stats(top)
    result = {
        "label": label, "orders": orders, "events": events, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "cpu_ms_per_order": round(1000 * cpu / orders, 2), "cpu_ms_per_event": round(1000 * cpu / events, 2),
        "round_trips_per_order": round(trips / orders, 2), "round_trips_per_event": round(trips / events, 2),
        "commands_per_order": round(sum(commands.values()) / orders, 2),
        "commands_per_event": round(sum(commands.values()) / events, 2),
        "commands": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "round_trips_by_sender_per_event": {k: round(v / events, 2) for k, v in senders.most_common()},
        "profile": text.getvalue(),
    }  # fmt: skip
    print(f"\n== {label}: {orders} orders, {events} events drained by one in-process worker")
    for name in ("cpu_ms_per_order", "cpu_ms_per_event", "round_trips_per_order", "round_trips_per_event",
                 "commands_per_order", "commands_per_event"):  # fmt: skip
        print(f"{name:24}{result[name]:>10}")
    print("round trips per event by sender: " + ", ".join(f"{k} {v}" for k, v in
                                                          result["round_trips_by_sender_per_event"].items()))
    print("commands per order: " + ", ".join(f"{k} {v / orders:.2f}" for k, v in result["commands"].items()))
    print(text.getvalue())
    return result


def answered(stack: Stack) -> int:
    """Every event job that ran is queued again as a new job of the same event: each finds its record booked
    (the ledger or the seen version answers it). The jobs queued."""
    from rq.job import Job

    from gateway.ingest import JOB_FUNC, make_queue

    queue = make_queue(stack.connection, stack.options.queue)
    ids = [i for i in queue.finished_job_registry.get_job_ids() if not i.startswith(("poll", "check"))]
    jobs = [j for j in Job.fetch_many(ids, connection=stack.connection, serializer=queue.serializer)
            if j is not None and j.func_name == JOB_FUNC]  # fmt: skip
    with stack.connection.pipeline() as pipe:
        queue.enqueue_many([queue.prepare_data(JOB_FUNC, args=job.args) for job in jobs], pipeline=pipe)
        pipe.execute()
    return len(jobs)


def body(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], int]:
    embedded = EmbeddedRedis(data_dir=workdir / "redis-data", port=free_port())
    url = embedded.start()
    try:
        options = StackOptions(data_dir=workdir / "stack", redis_url=url, exact_rate_limits=False, workers=0,
                               log_level="WARNING")  # fmt: skip
        with Stack(options) as stack:
            os.environ.update(stack.env)
            fill(stack, 20, 1, 120)
            from workers.worker import run_worker

            run_worker(stack.config(), stack.redis_url, burst=True)  # imports, connections, the first customers
            _, events, _ = fill(stack, args.orders, 100_000, 300)
            results = [drain(stack, "drain", events, args.orders, args.top, workdir)]
            again = answered(stack)
            results.append(drain(stack, "answered", again, again, args.top, workdir))
            plain = plain_answered(stack)
            noop = noop_run(url.rsplit("/", 1)[0] + "/1", "no-op unpinned", plain["events"], None)
            plain["noop_cpu_ms_per_job"] = noop.cpu_ms_per_job
            plain["ratio_to_noop"] = round(plain["cpu_ms_per_event"] / noop.cpu_ms_per_job, 2)
            print(f"\n== answered, not profiled: {plain['events']} events, {plain['cpu_ms_per_event']} ms of the "
                  f"worker thread's CPU each; a no-op RQ job {noop.cpu_ms_per_job} ms: ratio {plain['ratio_to_noop']}")
            flow = plain_drain(stack, args.orders)
            print(f"\n== drain, not profiled: {args.orders} orders, {flow['cpu_ms_per_order']} ms of the worker "
                  f"thread's CPU each, of which {flow['process_event_ms_per_order']} in process_event and "
                  f"{flow['run_event_ms_per_order']} in run_event")
    finally:
        embedded.stop()
    return {"orders": args.orders, "runs": results, "drain_plain": flow, "answered_plain": plain}, 0


def plain_drain(stack: Stack, orders: int) -> dict[str, Any]:
    """A fresh batch of `orders` drained without cProfile or the round-trip counter: the CPU of the thread that
    runs the worker, and the part of it spent inside `workers.jobs.process_event` and, within it, `run_event`
    (both wrapped for the drain by a thread-CPU clock: RQ calls the job function by its name)."""
    import workers.jobs as jobs
    from workers.worker import run_worker

    fill(stack, orders, 200_000, 300)
    spent = {"process_event": 0.0, "run_event": 0.0}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - started

        return wrapper

    originals = jobs.process_event, jobs.run_event
    jobs.process_event, jobs.run_event = timed("process_event", jobs.process_event), timed("run_event", jobs.run_event)
    try:
        cpu = time.thread_time()
        run_worker(stack.config(), stack.redis_url, burst=True)
        cpu = time.thread_time() - cpu
    finally:
        jobs.process_event, jobs.run_event = originals
    return {"orders": orders, "cpu_ms_per_order": round(1000 * cpu / orders, 3),
            "process_event_ms_per_order": round(1000 * spent["process_event"] / orders, 3),
            "run_event_ms_per_order": round(1000 * spent["run_event"] / orders, 3)}  # fmt: skip


def plain_answered(stack: Stack) -> dict[str, Any]:
    """The answered events once more, without cProfile or the round-trip counter: the CPU of the thread that
    runs the worker (the pump and the jobs; not the keepalive thread, nor this process's sandbox threads)."""
    from workers.worker import run_worker

    events = answered(stack)
    cpu = time.thread_time()
    run_worker(stack.config(), stack.redis_url, burst=True)
    cpu = time.thread_time() - cpu
    return {"events": events, "cpu_s": round(cpu, 3), "cpu_ms_per_event": round(1000 * cpu / events, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    return run_bench("profile", lambda workdir: body(args, workdir), results=args.results, keep=args.keep, say=say)


if __name__ == "__main__":
    sys.exit(main())
