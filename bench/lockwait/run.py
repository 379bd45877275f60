"""bench/lockwait: what a contended resource lock costs the job that waits for it (issue #14).

    .venv/bin/python -m bench.lockwait [--orders 300] [--work 0.013] [--runs 3]

Two "workers" (threads, each with its own Redis connection, on a fresh embedded Redis) take the two
events of one order side by side, as RQ hands them out: both ask for the order's lock at once, the
holder works `--work` s (sleep: a target call) and releases, the other waits, then works in turn; then
both move to the next order. Per lock kind: the waiter's wait per contended acquire (median, p99, ms),
the part of it after the holder's release (the wake-up latency), and orders/s for the pair.

Lock kinds: redis-py's `Lock` (polls every 100 ms, what `resource_lock` used before), redis-py's `Lock`
polling every 5 ms (the issue's experiment), and `WakingLock` (workers/locks.py, woken by the release).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.lock import Lock

from gateway.redisserver import EmbeddedRedis, free_port
from workers.locks import WakingLock

Factory = Callable[[redis.Redis, str], Lock]

KINDS: dict[str, Factory] = {
    "redis-py Lock, 100 ms poll (before)": lambda c, n: c.lock(n, timeout=30, blocking_timeout=10),
    "redis-py Lock, 5 ms poll": lambda c, n: c.lock(n, timeout=30, sleep=0.005, blocking_timeout=10),
    "WakingLock (after)": lambda c, n: WakingLock(c, n, wake_name=n + ":wake", timeout=30, blocking_timeout=10),
}


def run(url: str, factory: Factory, orders: int, work: float) -> dict[str, float]:
    barrier = threading.Barrier(2)
    waits: list[float] = []
    wakeups: list[float] = []
    released_at: dict[int, float] = {}

    def worker() -> None:
        conn = redis.Redis.from_url(url)
        for order in range(orders):
            barrier.wait()
            lock = factory(conn, f"koppel:lock:bench:order:{order}")
            asked = time.perf_counter()
            assert lock.acquire()
            got = time.perf_counter()
            if order in released_at:  # the second of the pair: it waited
                waits.append(got - asked)
                wakeups.append(got - released_at[order])
            time.sleep(work)
            released_at.setdefault(order, time.perf_counter())
            lock.release()
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    waits.sort()
    wakeups.sort()
    return {
        "wait_median_ms": statistics.median(waits) * 1000,
        "wait_p99_ms": waits[int(0.99 * (len(waits) - 1))] * 1000,
        "wake_median_ms": statistics.median(wakeups) * 1000,
        "wake_p99_ms": wakeups[int(0.99 * (len(wakeups) - 1))] * 1000,
        "orders_per_s": orders / elapsed,
        "contended": len(waits),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lockwait", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--work", type=float, default=0.013, help="seconds each event holds the lock")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="koppel-bench-lockwait-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp), port=free_port())
        server.start()
        try:
            print(f"{args.orders} orders x 2 events, {args.work * 1000:.0f} ms per event, median of {args.runs} runs")
            print("| lock | wait per contended acquire, median / p99 | after the release, median / p99 | orders/s |")
            print("|---|---|---|---|")
            for kind, factory in KINDS.items():
                rs = [run(server.url, factory, args.orders, args.work) for _ in range(args.runs)]

                def med(key: str, rs: list[dict[str, float]] = rs) -> float:
                    return statistics.median(r[key] for r in rs)

                print(f"| {kind} | {med('wait_median_ms'):.1f} / {med('wait_p99_ms'):.1f} ms "
                      f"| {med('wake_median_ms'):.2f} / {med('wake_p99_ms'):.2f} ms | {med('orders_per_s'):.1f} |")
        finally:
            server.stop()
    return 0
