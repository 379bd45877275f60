"""bench/heartbeat: what a shorter worker heartbeat costs (`[gateway] worker_heartbeat_seconds`).

    .venv/bin/python -m bench.heartbeat [--beats 10,2,1] [--jobs 3000] [--idle 10] [--rounds 2]

The heartbeat sets how fast a dead worker's job runs again (three missed beats; workers/recovery.py) and
how often each worker beats, maintains RQ's registries (every three beats) and runs the recovery pass (every
beat). For each heartbeat, one `koppel worker` process on a fresh embedded Redis:

* idle: Redis commands per second the idle worker sends (`INFO stats` before and after `--idle` s);
* busy: `--jobs` no-op jobs (`os.getpid`, the worst case: nothing but overhead) queued at once, then worked
  off; wall time, the worker's CPU per job (/proc), Redis commands per job. Best of `--rounds`;
* recovery: a second worker started, a 3 s job (`time.sleep`) started by one of the two, that one
  SIGKILLed: seconds until the other starts the job again.

Prints a table with each figure's ratio to the first heartbeat's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue, Worker

from gateway.ingest import make_queue
from gateway.redisserver import EmbeddedRedis, free_port

CONFIG = (
    '[gateway]\nworker_heartbeat_seconds = {beat}\n\n[[endpoints]]\nid = "shop"\nkind = "woocommerce"\n'
    'secret = "env:WC_SECRET"\n'
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commands(conn: redis.Redis) -> int:
    return int(conn.info("stats")["total_commands_processed"])


def measure(beat: int, url: str, workdir: Path, jobs: int, idle: float, rounds: int) -> dict[str, float]:
    conn = redis.Redis.from_url(url)
    conn.flushall()
    config = workdir / f"koppel-{beat}.toml"
    config.write_text(CONFIG.format(beat=beat))
    env = {**os.environ, "REDIS_URL": url, "KOPPEL_LOG_LEVEL": "WARNING", "WC_SECRET": "bench"}
    worker = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)], env=env)
    try:
        queue = make_queue(conn, "koppel")
        probe = queue.enqueue("os.getpid")
        while probe.get_status(refresh=True) != "finished":
            time.sleep(0.05)
        time.sleep(1)
        before = commands(conn)
        time.sleep(idle)
        idle_rate = (commands(conn) - before - 2) / idle
        best: dict[str, float] = {}
        for _ in range(rounds):
            datas = [Queue.prepare_data("os.getpid", result_ttl=600) for _ in range(jobs)]
            before, cpu, started = commands(conn), cpu_seconds(worker.pid), time.monotonic()
            with conn.pipeline() as pipe:
                queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
            while conn.llen(queue.key) or conn.zcard(queue.started_job_registry.key):
                time.sleep(0.02)
            wall = time.monotonic() - started
            result = {"wall_s": wall, "cpu_ms_per_job": 1000 * (cpu_seconds(worker.pid) - cpu) / jobs,
                      "commands_per_job": (commands(conn) - before) / jobs}  # fmt: skip
            if not best or result["wall_s"] < best["wall_s"]:
                best = result
        second = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)], env=env)
        try:
            recovery = killed_job_back_after(conn, queue, {worker.pid: worker, second.pid: second})
        finally:
            second.kill()
            second.wait()
        return {"idle_commands_per_s": idle_rate, **best, "recovery_s": recovery}
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        conn.close()


def killed_job_back_after(conn: redis.Redis, queue: Queue, workers: dict[int, subprocess.Popen[bytes]]) -> float:
    """Seconds from SIGKILLing the worker running a job to another worker starting it again."""
    while len([w for w in Worker.all(connection=conn) if w.pid in workers]) < len(workers):
        time.sleep(0.05)
    job = queue.enqueue("time.sleep", 3)
    while (name := conn.hget(job.key, "worker_name")) is None or job.get_status(refresh=True) != "started":
        time.sleep(0.01)
    (victim,) = [w.pid for w in Worker.all(connection=conn) if w.name == name.decode()]
    workers[victim].kill()
    workers[victim].wait()
    killed = time.monotonic()
    while conn.hget(job.key, "worker_name") == name or job.get_status(refresh=True) != "started":
        time.sleep(0.01)
    return time.monotonic() - killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heartbeat", description=__doc__.split("\n")[0])
    parser.add_argument("--beats", default="10,2,1", help="heartbeats to compare, in seconds (default 10,2,1)")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    beats = [int(b) for b in args.beats.split(",")]
    with tempfile.TemporaryDirectory(prefix="koppel-bench-heartbeat-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp), port=free_port())
        server.start()
        try:
            results = {beat: measure(beat, server.url, Path(tmp), args.jobs, args.idle, args.rounds) for beat in beats}
        finally:
            server.stop()
    base = results[beats[0]]
    print(f"{args.jobs} no-op jobs per round, best of {args.rounds}; ratios to a {beats[0]} s heartbeat")
    print(f"{'heartbeat':>9}  {'idle cmd/s':>14}  {'wall s':>14}  {'CPU ms/job':>14}  {'cmd/job':>14}"
          f"  {'killed job back':>16}")  # fmt: skip
    for beat, r in results.items():
        columns = ("idle_commands_per_s", "wall_s", "cpu_ms_per_job", "commands_per_job", "recovery_s")
        cells = [f"{r[k]:7.2f} x{r[k] / base[k]:4.2f}" if base[k] else f"{r[k]:7.2f}" for k in columns]
        print(f"{beat:>8}s  " + "  ".join(f"{c:>14}" for c in cells))
    return 0
