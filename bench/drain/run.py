"""bench/drain driver: a batch delivered into the inbox with no worker running, then drained by 1 and 2 workers.

    .venv/bin/python -m bench.drain [--orders 1000] [--warmup 50]

1. The WooCommerce → Exact stack (gateway/stack.py) on a fresh embedded Redis, Exact's rate limits off,
   no worker started with it. Two `koppel worker` processes start and drain a warm-up batch of `--warmup`
   orders (imports, connections, Exact's first customers), then stop being in the way as below.
2. Per phase (1 worker, then 2): the phase's workers are idle and stopped with SIGSTOP (not running, their
   start-up already paid); `--orders` orders are placed in the shop sandbox, which delivers their webhooks
   (order.created and order.updated) one at a time through the real gateway into the inbox; when the inbox
   holds them all the workers get SIGCONT and drain it. orders/s = orders ÷ (SIGCONT → last order created,
   from the activity log); worker CPU per order = the workers' CPU seconds (/proc/<pid>/task/*/stat) over
   the drain ÷ orders created. Exact calls per order from the Exact sandbox's own counter.
3. In the same run, on the same Redis: an RQ `SimpleWorker` (a child process, bench/drain/noop.py) drains
   `--orders` no-op jobs pinned to one CPU and then, a fresh batch, unpinned.
4. Over each drain, the CPU of every process taking part (each worker, the gateway, redis-server, the
   sandboxes' threads of this process, the driver's rest) and the machine's busy CPU (/proc/stat): what the
   workers could have had (the cores less what everything else used) beside what they used.
5. Prints the tables and the ratios (Koppel worker CPU per order ÷ no-op job CPU; 2-worker ÷ 1-worker
   orders/s and orders per worker-CPU-second, twice the latter as the normalised scaling), writes
   bench/results/drain-<UTC timestamp>.json. Exit status 1 when an order was not
   created or a phase could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rq import Queue

from bench.common import RESULTS, ROOT, run_bench
from bench.ingest.run import cpu_seconds, machine_busy
from gateway.ingest import inbox_key
from gateway.redisserver import EmbeddedRedis, free_port, redact_url
from gateway.stack import Stack, StackOptions

NOOP_QUEUE = "bench-drain-noop"


def say(message: str) -> None:
    print(f"bench/drain: {message}", file=sys.stderr, flush=True)


@dataclass
class Phase:
    name: str
    orders: int
    created: int
    events: int
    """Deliveries in the inbox when the workers were let go."""
    fill_s: float
    """Placing → the inbox holding every delivery (the gateway's side, no worker running)."""
    drain_s: float
    orders_per_s: float
    worker_cpu_s: float
    cpu_ms_per_order: float
    cpu_ms_per_event: float
    """Worker CPU per delivery (WooCommerce sends two per order: created and updated)."""
    exact_calls: int
    exact_calls_per_order: float
    exact_by_endpoint: dict[str, int]
    orders_per_worker_cpu_s: float
    """Orders created per second of worker CPU: what a worker books per core it gets."""
    cpu: Cpu
    """Every process's CPU over the drain (SIGCONT → settled) and the machine's."""


@dataclass
class Noop:
    name: str
    jobs: int
    wall_s: float
    """First job started → last job ended (the jobs' own timestamps)."""
    work_s: float
    """The worker's whole `work(burst=True)`, start-up and shut-down included."""
    cpu_s: float
    jobs_per_s: float
    cpu_ms_per_job: float


def thread_seconds(tid: int) -> float:
    """CPU seconds (user + system) of one thread of this process."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU seconds over one drain of every process taking part, and the machine's busy CPU (/proc/stat).

    `processes` are pids (all their threads); `threads` are threads of this process (the sandboxes run as
    uvicorn threads here); `driver` is what is left of this process (its main thread polling the activity log).
    """

    def __init__(self, processes: dict[str, int], threads: dict[str, int]) -> None:
        self.processes, self.threads = processes, threads
        self.start = self._read()
        self.machine = machine_busy()
        self.time = time.monotonic()

    def _read(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(pid).values()) for name, pid in self.processes.items()}
        out |= {name: thread_seconds(tid) for name, tid in self.threads.items()}
        out["driver"] = sum(cpu_seconds(os.getpid()).values()) - sum(out[name] for name in self.threads)
        return out

    def stop(self) -> Cpu:
        now, (busy, total), elapsed = self._read(), machine_busy(), time.monotonic() - self.time
        cpus = os.cpu_count() or 1
        seconds = {name: round(now[name] - self.start[name], 3) for name in now}
        machine = cpus * (busy - self.machine[0]) / max(1, total - self.machine[1])  # cores busy on average
        return Cpu(wall_s=round(elapsed, 3), cpus=cpus, machine_pct=round(100 * machine, 1), seconds=seconds,
                   pct={name: round(100 * value / elapsed, 1) for name, value in seconds.items()})  # fmt: skip


@dataclass
class Cpu:
    """Where the CPU went over a drain: seconds and % of one core per process (or thread), the machine's busy %."""

    wall_s: float
    cpus: int
    machine_pct: float
    """All CPUs' busy time ÷ wall time, in % of one core (200 % = both cores of a 2-vCPU machine busy)."""
    seconds: dict[str, float]
    pct: dict[str, float]

    def workers_pct(self) -> float:
        return sum(value for name, value in self.pct.items() if name.startswith("worker"))

    def other_pct(self) -> float:
        """Busy CPU of processes outside the drain (other people's work on the machine)."""
        return round(max(0.0, self.machine_pct - sum(self.pct.values())), 1)

    def workers_could_have_pct(self) -> float:
        """The most the workers could have had: the machine's capacity less what everything else used."""
        return round(100 * self.cpus - (self.machine_pct - self.workers_pct()), 1)


def ratio(numerator: float, denominator: float) -> float:
    """numerator ÷ denominator rounded to 2 places; 0.0 when the denominator is 0."""
    return round(numerator / denominator, 2) if denominator else 0.0


def worker_cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (all threads) of the worker processes together."""
    return sum(sum(cpu_seconds(proc.pid).values()) for proc in procs)


def wait_quiet(procs: list[subprocess.Popen[bytes]], seconds: float = 1.0, timeout: float = 30) -> None:
    """Wait until the workers spent under 2 % of a core each over `seconds` (idle: started, nothing to do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = worker_cpu(procs)
        time.sleep(seconds)
        if worker_cpu(procs) - before < 0.02 * seconds * len(procs):
            return


def fill(stack: Stack, count: int, seed: int, timeout: float) -> tuple[list[str], int, float]:
    """Place `count` orders and wait until the inbox stops growing with at least one delivery per order;
    the order ids, the deliveries in the inbox and the seconds that took."""
    conn = stack.connection
    key = inbox_key(stack.options.queue)
    before = int(conn.xlen(key))
    started = time.monotonic()
    ids = stack.place_orders(count, seed=seed)
    expected = count * (2 if stack.options.checkout_update else 1)
    last, still_since = -1, time.monotonic()
    while time.monotonic() - started < timeout:
        now = int(conn.xlen(key)) - before
        if now >= expected:
            return ids, now, time.monotonic() - started
        if now != last:
            last, still_since = now, time.monotonic()
        elif now >= count and time.monotonic() - still_since > 3:
            return ids, now, still_since - started
        time.sleep(0.05)
    raise RuntimeError(f"the inbox holds {last} of {expected} deliveries after {timeout:g} s")


def wait_drained(stack: Stack, timeout: float, interval: float = 0.2) -> None:
    """Wait until no event job is left (`Stack.idle`: one MULTI of queue lengths and registries): `settle`,
    called after it, reads the whole activity log since the drain began on every check, which cost this
    process ~1 ms of CPU per order in the thread beside the sandboxes (under the Exact sandbox's GIL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stack.idle():
        time.sleep(interval)


def drain_phase(
    stack: Stack, name: str, procs: list[subprocess.Popen[bytes]], count: int, seed: int, timeout: float,
    redis_pid: int,
) -> Phase:
    """Stop the (idle) workers, fill the inbox with `count` orders, let the workers go and time the drain."""
    wait_quiet(procs)
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    calls_before = stack.calls("exact")
    try:
        ids, events, fill_s = fill(stack, count, seed, timeout)
    finally:
        meter = Meter(processes={**{f"worker {i}": proc.pid for i, proc in enumerate(procs, 1)},
                                 "gateway": stack.gateway.pid if stack.gateway else os.getpid(),
                                 "redis-server": redis_pid},
                      threads={f"{system} sandbox": server.thread.native_id or 0
                               for system, server in stack.sandboxes.items()})  # fmt: skip
        cpu_before = worker_cpu(procs)
        let_go = time.time()
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
    say(f"{name}: {events} deliveries of {count} orders in the inbox after {fill_s:.1f} s; draining")
    wait_drained(stack, timeout)
    outcomes = stack.settle(ids, timeout=timeout, since=let_go - 1, interval=0.2)
    cpu = worker_cpu(procs) - cpu_before
    usage = meter.stop()
    calls_after = stack.calls("exact")
    created = [o for o in outcomes.values() if o.outcome == "created"]
    done = max((e.done_at for e in stack.activity(let_go - 1) if e.resource_id in outcomes), default=let_go)
    drain_s = max(done - let_go, 1e-9)
    calls = int(calls_after["total"]) - int(calls_before["total"])
    by_endpoint = {k: v - calls_before["by_endpoint"].get(k, 0) for k, v in calls_after["by_endpoint"].items()
                   if v - calls_before["by_endpoint"].get(k, 0)}  # fmt: skip
    phase = Phase(
        name=name, orders=count, created=len(created), events=events, fill_s=round(fill_s, 2),
        drain_s=round(drain_s, 2), orders_per_s=round(len(created) / drain_s, 1), worker_cpu_s=round(cpu, 2),
        cpu_ms_per_order=round(1000 * cpu / len(created), 2) if created else 0.0,
        cpu_ms_per_event=round(1000 * cpu / events, 2) if events else 0.0, exact_calls=calls,
        exact_calls_per_order=round(calls / len(created), 3) if created else 0.0, exact_by_endpoint=by_endpoint,
        orders_per_worker_cpu_s=round(len(created) / cpu, 1) if cpu else 0.0, cpu=usage,
    )  # fmt: skip
    say(f"{name}: {phase.created}/{count} created in {phase.drain_s:.1f} s, {phase.orders_per_s:g} orders/s")
    return phase


def noop_run(redis_url: str, name: str, count: int, cpu: int | None) -> Noop:
    """Enqueue `count` no-op jobs and drain them with a SimpleWorker child process (pinned to `cpu` if given)."""
    from redis import Redis

    conn = Redis.from_url(redis_url)
    queue_name = f"{NOOP_QUEUE}-{'unpinned' if cpu is None else f'cpu{cpu}'}"  # its own finished registry
    queue = Queue(queue_name, connection=conn)
    queue.empty()
    with conn.pipeline() as pipe:
        for _ in range(count):
            queue.enqueue("bench.drain.noop.noop", pipeline=pipe)
        pipe.execute()
    conn.close()
    command = [sys.executable, "-m", "bench.drain.noop", redis_url, queue_name]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    jobs = int(figures["jobs"])
    wall = figures["jobs_wall_s"]
    result = Noop(name=name, jobs=jobs, wall_s=round(wall, 2), work_s=round(figures["wall_s"], 2),
                  cpu_s=round(figures["cpu_s"], 2),
                  jobs_per_s=round(jobs / wall, 1) if wall else 0.0,
                  cpu_ms_per_job=round(1000 * figures["cpu_s"] / jobs, 3) if jobs else 0.0)  # fmt: skip
    say(f"{name}: {jobs} no-op jobs in {result.wall_s:.1f} s, {result.jobs_per_s:g} jobs/s")
    return result


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Phase], list[Noop]]:
    embedded = EmbeddedRedis(data_dir=workdir / "redis-data", port=free_port())
    url = embedded.start()
    try:
        options = StackOptions(data_dir=workdir / "stack", redis_url=url, exact_rate_limits=False, workers=0)
        say(f"starting the stack: Redis {redact_url(url)}, gateway, sandboxes (rate limits off), no worker")
        with Stack(options) as stack:
            one, two = stack.start_worker(), stack.start_worker()
            warm = stack.place_orders(args.warmup, seed=1)
            stack.settle(warm, timeout=args.timeout, interval=0.2)
            two.send_signal(signal.SIGTERM)
            two.wait(timeout=30)
            stack.workers.remove(two)
            redis_pid = embedded.process.pid if embedded.process else 0
            phases = [drain_phase(stack, "1 worker", [one], args.orders, 100_000, args.timeout, redis_pid)]
            two = stack.start_worker()
            phases.append(drain_phase(stack, "2 workers", [one, two], args.orders, 200_000, args.timeout,
                                      redis_pid))  # fmt: skip
        cpus = sorted(os.sched_getaffinity(0))
        noop_url = url.rsplit("/", 1)[0] + "/1"  # a database of their own: none of Koppel's keys in the way
        noops = [noop_run(noop_url, f"no-op pinned to CPU {cpus[-1]}", args.orders, cpus[-1]),
                 noop_run(noop_url, "no-op unpinned", args.orders, None)]  # fmt: skip
    finally:
        embedded.stop()
    return phases, noops


def report(args: argparse.Namespace, phases: list[Phase], noops: list[Noop]) -> dict[str, Any]:
    print()
    print(f"bench/drain: {args.orders} orders per phase delivered through the gateway into the inbox with the "
          "workers stopped, then drained; Exact sandbox rate limits off")  # fmt: skip
    print(f"{'':24}{'orders/s':>9}{'CPU ms/order':>13}{'CPU ms/event':>13}"
          f"{'Exact calls/order':>18}{'drain s':>8}{'inbox':>7}{'fill s':>7}")  # fmt: skip
    for p in phases:
        print(f"{p.name:24}{p.orders_per_s:>9,.1f}{p.cpu_ms_per_order:>13.2f}{p.cpu_ms_per_event:>13.2f}{p.exact_calls_per_order:>18.3f}"
              f"{p.drain_s:>8.1f}{p.events:>7}{p.fill_s:>7.1f}")  # fmt: skip
    print(f"{'':24}{'jobs/s':>9}{'CPU ms/job':>13}{'jobs s':>8}{'work() s':>9}")
    for n in noops:
        print(f"{n.name:24}{n.jobs_per_s:>9,.1f}{n.cpu_ms_per_job:>13.3f}{n.wall_s:>8.2f}{n.work_s:>9.2f}")
    print()
    names = sorted(dict.fromkeys(name for p in phases for name in p.cpu.pct), key=lambda n: not n.startswith("worker"))
    print("CPU over each drain, % of one core (and ms per order):")
    print(f"{'':24}{'machine':>9}" + "".join(f"{name:>16}" for name in names) + f"{'other':>8}")
    for p in phases:
        cells = "".join(f"{p.cpu.pct.get(n, 0):>7.1f} ({1000 * p.cpu.seconds.get(n, 0) / max(1, p.created):>5.2f})"
                        for n in names)  # fmt: skip
        print(f"{p.name:24}{p.cpu.machine_pct:>8.1f}%{cells}{p.cpu.other_pct():>7.1f}%")
    for p in phases:
        others = {n: v for n, v in p.cpu.pct.items() if not n.startswith("worker") and v >= 5}
        print(f"{p.name}: machine {p.cpu.machine_pct:.0f} % busy of {100 * p.cpu.cpus} %, "
              + ", ".join(f"{n} {v:.0f} %" for n, v in others.items())
              + f", other processes {p.cpu.other_pct():.0f} % ⇒ the workers had at most "
              f"{p.cpu.workers_could_have_pct() / 100:.2f} cores and used {p.cpu.workers_pct() / 100:.2f}; "
              f"{p.orders_per_worker_cpu_s:g} orders per worker-CPU-second")  # fmt: skip
    one, two = phases[0], phases[1]
    ratios = {f"cpu per order ÷ {n.name} cpu per job": ratio(one.cpu_ms_per_order, n.cpu_ms_per_job) for n in noops}
    ratios["2 workers ÷ 1 worker orders/s"] = ratio(two.orders_per_s, one.orders_per_s)
    ratios["2 workers ÷ 1 worker orders per worker-CPU-second"] = ratio(
        two.orders_per_worker_cpu_s, one.orders_per_worker_cpu_s
    )
    # Two workers each given the share of a core the one worker had (its CPU ÷ drain time) drain
    # 2 * (their orders per CPU-second ÷ its) what it drained: the 2 ÷ 1 figure on a machine with spare cores.
    ratios["2 ÷ 1 workers normalised (2 * orders per worker-CPU-second ratio)"] = round(
        2 * ratios["2 workers ÷ 1 worker orders per worker-CPU-second"], 2
    )
    ratios["2 workers' cores available ÷ 1 worker's CPU use"] = ratio(
        two.cpu.workers_could_have_pct(), one.cpu.workers_pct()
    )
    for name, value in ratios.items():
        print(f"ratio {name}: {value:.2f}")
    for p in phases:
        print(f"Exact calls, {p.name}: {p.exact_calls} ({p.exact_by_endpoint})")
    problems = [f"{p.name}: {p.created} of {p.orders} orders created" for p in phases if p.created != p.orders]
    for problem in problems:
        print(f"FAILED: {problem}")
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"orders": args.orders, "warmup": args.warmup, "exact_rate_limits": False},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "phases": [asdict(p) for p in phases],
        "noop": [asdict(n) for n in noops],
        "ratios": ratios,
        "problems": problems,
        "ok": not problems,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/drain/run.sh", description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--orders", type=int, default=1000, help="orders per phase (and no-op jobs per no-op run)")
    parser.add_argument("--warmup", type=int, default=50, help="orders drained before measuring")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a fill or a drain")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write drain-<timestamp>.json")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.warmup < 1 or args.timeout <= 0:
        parser.error("--orders and --warmup must be at least 1, --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        phases, noops = run(args, workdir)
        result = report(args, phases, noops)
        return result, 0 if result["ok"] else 1

    return run_bench("drain", body, results=args.results, keep=args.keep, say=say,
                     failures=(RuntimeError, subprocess.CalledProcessError))  # fmt: skip
