"""bench/drain's profile: where one worker's CPU and Redis round trips go while it drains a delivered batch, on
each event path, side by side.

    .venv/bin/python -m bench.drain.profile [--orders 300] [--paths rq,direct] [--rounds 1] [--top 25]

Per round, per path (`--paths`, bench/drain's `PATHS`: rq = `[gateway] direct_events = false`, an RQ job per
record; direct = the inbox pump runs a record's events itself), in this order, on a fresh embedded Redis: the
WooCommerce → Exact stack (gateway/stack.py, no worker, `StackOptions.direct_events`) fills the inbox through the
real gateway with `--orders` orders (order.created and order.updated each); then `koppel worker --burst`'s own
code (`workers.worker.run_worker`) drains it in this process under cProfile ("drain"). Then each booked order's
last delivery is put into the inbox again under a new job id (bench/drain's `redeliver`) and drained the same
way ("answered"): each finds its order booked (the ledger or the seen version answers it), as an order.updated
does that arrives after its order.created was processed. Last, the answered events once more without the
profiler ("plain"): the worker thread's CPU per event beside a no-op RQ job's (bench/drain's no-op child,
unpinned, on the same Redis); and another batch of `--orders` drained without it: the worker thread's CPU per
order and how much of it ran inside `process_event` and, within it, `run_event` (the flow: RQ's job lifecycle
and the inbox pump are outside both).

Printed per path: per order (and per event) the worker's CPU (under cProfile and the round-trip counter: compare
runs of this tool, not with bench/drain's figures), the Redis round trips it made (redis-py's
`send_packed_command` calls: a pipeline is one; by sender: the innermost frame of Koppel's code, else RQ's
function), the Redis commands it sent (`INFO commandstats` delta) by command, cProfile's top functions by
cumulative and own time, and after each phase the done records (`koppel:done:*`), failed jobs and retrying
(scheduled) jobs. Then the paths side by side with direct ÷ rq (per round, and medians over `--rounds`).
Results in bench/results/profile-*.json (raw profiles in the temp dir, `--keep`). Exit status 1 when a phase
left a failed or retrying job.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench.common import RESULTS, run_bench
from bench.drain.run import PATHS, fill, inbox_events, last_per_record, noop_run, paths_arg, redeliver
from gateway import keys
from gateway.ingest import make_queue
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import Stack, StackOptions

PER_ORDER = ("cpu_ms_per_order", "cpu_ms_per_event", "round_trips_per_order", "round_trips_per_event",
             "commands_per_order", "commands_per_event")  # fmt: skip
"""The drain phase's figures (per order: two events, order.created and order.updated)."""
PER_EVENT = ("cpu_ms_per_event", "round_trips_per_event", "commands_per_event")
"""The answered phase's figures (per answered event)."""
PLAIN = ("cpu_ms_per_event", "noop_cpu_ms_per_job", "ratio_to_noop")
"""The answered events not profiled: the worker thread's CPU per event, a no-op RQ job's, and their ratio."""
AFTER = ("done records", "failed jobs", "retrying jobs")
"""Counted after each phase: a failed or retrying job makes the run's figures untrustworthy (exit status 1)."""
PHASES = ("drain", "answered", "plain")


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
    result["after"] = after_counts(stack)
    print(f"after {label}: " + ", ".join(f"{k} {v}" for k, v in result["after"].items()))
    return result


def after_counts(stack: Stack) -> dict[str, int]:
    """Done records (`koppel:done:*`, the direct path's outcomes), failed jobs and retrying (scheduled) jobs."""
    queue = make_queue(stack.connection, stack.options.queue)
    done = sum(1 for _ in stack.connection.scan_iter(keys.done("*"), count=1000))
    return {"done records": done, "failed jobs": queue.failed_job_registry.count,
            "retrying jobs": queue.scheduled_job_registry.count}  # fmt: skip


def answered(stack: Stack, booked: list[bytes]) -> int:
    """Each booked order's last delivery put into the inbox again under a new job id (bench/drain's
    `redeliver`, on either event path): each finds its record booked (the ledger or the seen version answers
    it). The events stored."""
    return redeliver(stack, last_per_record(booked))[1]


def one_path(path: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One path's phases (drain, answered, plain) on a fresh embedded Redis and a stack of its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedRedis(data_dir=workdir / "redis-data", port=free_port())
    url = embedded.start()
    try:
        options = StackOptions(data_dir=workdir / "stack", redis_url=url, exact_rate_limits=False, workers=0,
                               log_level="WARNING", direct_events=PATHS[path])  # fmt: skip
        with Stack(options) as stack:
            os.environ.update(stack.env)
            fill(stack, 20, 1, 120)
            from workers.worker import run_worker

            run_worker(stack.config(), stack.redis_url, burst=True)  # imports, connections, the first customers
            _, events, _ = fill(stack, args.orders, 100_000, 300)
            booked = inbox_events(stack)
            drained = drain(stack, f"{path}: drain", events, args.orders, args.top, workdir)
            again = answered(stack, booked)
            answers = drain(stack, f"{path}: answered", again, again, args.top, workdir)
            plain = plain_answered(stack, booked)
            noop = noop_run(url.rsplit("/", 1)[0] + "/1", "no-op unpinned", plain["events"], None)
            plain["noop_cpu_ms_per_job"] = noop.cpu_ms_per_job
            plain["ratio_to_noop"] = round(plain["cpu_ms_per_event"] / noop.cpu_ms_per_job, 2)
            plain["after"] = after_counts(stack)
            print(f"\n== {path}: answered, not profiled: {plain['events']} events, {plain['cpu_ms_per_event']} ms "
                  f"of the worker thread's CPU each; a no-op RQ job {noop.cpu_ms_per_job} ms: ratio "
                  f"{plain['ratio_to_noop']}; after: " + ", ".join(f"{k} {v}" for k, v in plain["after"].items()))
            flow = plain_drain(stack, args.orders)
            print(f"\n== {path}: drain, not profiled: {args.orders} orders, {flow['cpu_ms_per_order']} ms of the "
                  f"worker thread's CPU each, of which {flow['process_event_ms_per_order']} in process_event and "
                  f"{flow['run_event_ms_per_order']} in run_event")
    finally:
        embedded.stop()
    return {"path": path, "drain": drained, "answered": answers, "plain": plain, "drain_plain": flow}


def plain_drain(stack: Stack, orders: int) -> dict[str, Any]:
    """A fresh batch of `orders` drained without cProfile or the round-trip counter: the CPU of the thread that
    runs the worker, and the part of it spent inside `workers.jobs.process_event` and, within it, `run_event`
    (both wrapped for the drain by a thread-CPU clock; the pump and RQ call them by their module's name)."""
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


def plain_answered(stack: Stack, booked: list[bytes]) -> dict[str, Any]:
    """The answered events once more, without cProfile or the round-trip counter: the CPU of the thread that
    runs the worker (the pump and the jobs; not the keepalive thread, nor this process's sandbox threads)."""
    from workers.worker import run_worker

    events = answered(stack, booked)
    cpu = time.thread_time()
    run_worker(stack.config(), stack.redis_url, burst=True)
    cpu = time.thread_time() - cpu
    return {"events": events, "cpu_s": round(cpu, 3), "cpu_ms_per_event": round(1000 * cpu / events, 3)}


Figures = dict[tuple[str, str], float]
"""One path's figures in one round: (phase, name) → value."""
Row = tuple[str, str, list[float], float | None, str]
"""A printed row: phase, figure, each path's value, direct ÷ rq (None: not both paths, or rq's value 0), and
the ratio's range over the rounds ("" for one round)."""


def figures_of(run: Mapping[str, Any]) -> Figures:
    """The figures of one path's run (`one_path`) that the paths are compared by, with the after-counts."""
    out: Figures = {}
    for phase, names in (("drain", PER_ORDER), ("answered", PER_EVENT), ("plain", PLAIN)):
        out |= {(phase, name): float(run[phase][name]) for name in names}
    for phase in PHASES:
        out |= {(phase, f"after: {name}"): float(run[phase]["after"][name]) for name in AFTER}
    return out


def side_by_side(by_path: Mapping[str, Figures]) -> list[Row]:
    """One round's rows, the paths in `by_path`'s order, direct ÷ rq taken within the round."""
    paths = list(by_path)
    both = {"rq", "direct"} <= set(paths)
    rows: list[Row] = []
    for key in dict.fromkeys(key for figures in by_path.values() for key in figures):
        values = [by_path[path].get(key, 0.0) for path in paths]
        rq = by_path["rq"].get(key, 0.0) if both else 0.0
        ratio = round(by_path["direct"].get(key, 0.0) / rq, 2) if rq else None
        rows.append((key[0], key[1], values, ratio, ""))
    return rows


def medians(rounds: list[dict[str, Figures]]) -> list[Row]:
    """Over the rounds: each figure's median per path, the median of the rounds' direct ÷ rq (each taken within
    its round) and that ratio's range."""
    tables = [side_by_side(by_path) for by_path in rounds]
    out: list[Row] = []
    for index, (phase, name, values, _, _) in enumerate(tables[0]):
        middle = [statistics.median(table[index][2][column] for table in tables) for column in range(len(values))]
        found = [r for table in tables if (r := table[index][3]) is not None]
        ratio = round(statistics.median(found), 2) if found else None
        spread = f"{min(found):.2f}-{max(found):.2f}" if len(found) > 1 else ""
        out.append((phase, name, middle, ratio, spread))
    return out


def problems_of(rounds: list[dict[str, Figures]]) -> list[str]:
    """A failed or retrying job after any phase of any path: the figures are not those of a clean drain."""
    out = []
    for number, by_path in enumerate(rounds, 1):
        for path, found in by_path.items():
            for (phase, name), value in found.items():
                if name in ("after: failed jobs", "after: retrying jobs") and value:
                    out.append(f"round {number}, {path}: {value:g} {name.removeprefix('after: ')} after {phase}")
    return out


def print_table(title: str, paths: list[str], rows: list[Row]) -> None:
    both = {"rq", "direct"} <= set(paths)
    print(f"\n== {title}")
    print(f"{'':10}{'':28}" + "".join(f"{path:>12}" for path in paths) + (f"{'direct÷rq':>11}" if both else ""))
    for phase, name, values, ratio, spread in rows:
        shown = f"{f'{ratio:.2f}' if ratio is not None else '-':>11}" if both else ""
        print(f"{phase:10}{name:28}" + "".join(f"{value:>12g}" for value in values) + shown
              + (f"  ({spread})" if spread else ""))  # fmt: skip


def body(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], int]:
    runs: list[dict[str, dict[str, Any]]] = []
    for number in range(1, args.rounds + 1):
        runs.append({})
        for path in args.paths:
            say(f"round {number}: the {path} path (direct_events = {str(PATHS[path]).lower()})")
            runs[-1][path] = one_path(path, args, workdir / f"{path}-{number}")  # a fresh Redis each time
    rounds = [{path: figures_of(run) for path, run in by_path.items()} for by_path in runs]
    note = "drain: per order (2 events); answered, plain (not profiled): per answered event"
    tables = [side_by_side(by_path) for by_path in rounds]
    for number, rows in enumerate(tables, 1):
        print_table(f"round {number}: {args.orders} orders; {note}", args.paths, rows)
    if len(rounds) > 1:
        print_table(f"medians of {len(rounds)} rounds (direct ÷ rq: the median of the rounds' ratios, their range)",
                    args.paths, medians(rounds))  # fmt: skip
    problems = problems_of(rounds)
    for problem in problems:
        print(f"FAILED: {problem}")
    result = {
        "orders": args.orders, "paths": args.paths, "rounds": args.rounds,
        "runs": [{path: {k: v for k, v in run.items() if k != "path"} for path, run in by_path.items()}
                 for by_path in runs],
        "side_by_side": [[{"phase": phase, "figure": name, "values": dict(zip(args.paths, values, strict=True)),
                           "direct_rq": ratio} for phase, name, values, ratio, _ in rows] for rows in tables],
        "problems": problems, "ok": not problems,
    }  # fmt: skip
    return result, 1 if problems else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.drain.profile",
                                     description=(__doc__ or "").split("\n\n")[0])  # fmt: skip
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--paths", type=paths_arg, default=list(PATHS),
                        help="the event paths to profile, in this order (rq: direct_events = false)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="every path this many times, a fresh Redis each")
    parser.add_argument("--top", type=int, default=25, help="cProfile's top functions printed per sort")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (raw profiles, logs, Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.orders < 1 or args.rounds < 1 or args.top < 0:
        parser.error("--orders and --rounds must be at least 1, --top 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("profile", lambda workdir: body(args, workdir), results=args.results, keep=args.keep, say=say,
                     failures=(RuntimeError, subprocess.CalledProcessError))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
