"""bench/drain driver: a batch delivered into the inbox with no worker running, then drained by 1 and 2 workers,
on both event paths: RQ (a job per event, `[gateway] direct_events = false`) and direct (the worker runs a
record's events from the inbox itself, `direct_events = true`).

    .venv/bin/python -m bench.drain [--orders 1000] [--warmup 50] [--paths rq,direct] [--floor-posts N]

1. Per path (in `--paths` order), the WooCommerce → Exact stack (gateway/stack.py, `StackOptions.direct_events`)
   on its own database of one embedded Redis, Exact's rate limits off, no worker started with it. Two
   `koppel worker` processes drain a warm-up batch of `--warmup` orders (imports, connections, Exact's first
   customers), then stop being in the way as below.
2. Per phase (1 worker, then 2): the phase's workers are idle and stopped with SIGSTOP (not running, their
   start-up already paid); `--orders` orders are placed in the shop sandbox, which delivers their webhooks
   (order.created and order.updated) one at a time through the real gateway into the inbox; when the inbox
   holds them all the workers get SIGCONT and drain it. orders/s = orders ÷ (SIGCONT → last order created,
   from the activity log); worker CPU per order = the workers' CPU seconds (/proc/<pid>/task/*/stat) over
   the drain ÷ orders created. Exact calls per order from the Exact sandbox's own counter.
3. "answered" (1 worker): each order of the 1-worker phase, booked by now, gets its last delivery
   (order.updated) again, put straight into the inbox under a new job id as the gateway stores one (the
   gateway's dedupe would refuse the same delivery); the ledger or the seen version answers it: no Exact
   call, Koppel's own overhead per event. Worker CPU per answered event.
4. Once, in the first path's stack: the floor — a child process (bench/drain/floor.py) POSTs, through one
   reused httpx client, the very sales-order body Koppel sent for an order (its payload snapshot) to the
   same Exact sandbox `--floor-posts` times: the CPU an order's booking needs without Koppel's bookkeeping.
5. In the same run, on the same Redis (database 1): an RQ `SimpleWorker` (a child process,
   bench/drain/noop.py) drains `--orders` no-op jobs pinned to one CPU and then, a fresh batch, unpinned.
6. Over each drain, the CPU of every process taking part (each worker, the gateway, redis-server, the
   sandboxes' threads of this process, the driver's rest) and the machine's busy CPU (/proc/stat): what the
   workers could have had (the cores less what everything else used) beside what they used.
7. Prints the tables and the ratios (`ratios`: per path, worker CPU per order and per answered event ÷ no-op
   job CPU, order CPU ÷ (no-op job + floor), 2-worker ÷ 1-worker orders/s and orders per worker-CPU-second;
   direct ÷ RQ), writes bench/results/drain-<UTC timestamp>.json. Exit status 1 when an order was not created,
   an answered event not answered, or a phase could not be measured.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rq import Queue

from bench.common import RESULTS, ROOT, run_bench
from bench.ingest.run import cpu_seconds, machine_busy
from gateway.ingest import inbox_key, new_job_id
from gateway.redisserver import EmbeddedRedis, free_port, redact_url
from gateway.stack import INTEGRATION, Stack, StackOptions

NOOP_QUEUE = "bench-drain-noop"
PATHS = {"rq": False, "direct": True}
"""The event paths bench/drain compares: name → `[gateway] direct_events`."""
ANSWERED = "answered"


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
    path: str = "rq"
    """The event path (`PATHS`) of the stack it ran on."""
    workers: int = 1
    kind: str = "orders"
    """"orders" (placed in the shop, booked) or ANSWERED (booked orders' last delivery again)."""
    answered: int = 0
    """ANSWERED phase: events the ledger or seen version answered (not failed, an outcome logged)."""

    @property
    def done(self) -> int:
        """What the phase's CPU is divided by: orders created, or events answered."""
        return self.answered if self.kind == ANSWERED else self.created


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


@dataclass
class Floor:
    """The floor: one reused httpx client POSTing a booked order's Exact sales-order body (bench/drain/floor.py)."""

    posts: int
    ok: int
    cpu_s: float
    wall_s: float
    cpu_ms_per_post: float


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


Filler = Callable[[], tuple[list[str], int, float]]
"""Fills the inbox while the workers are stopped: the record ids, the deliveries stored and the seconds taken."""


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


def inbox_events(stack: Stack) -> list[bytes]:
    """The envelopes (JSON, as the gateway stored them) in the stack's inbox now, oldest first."""
    rows: Any = stack.connection.xrange(inbox_key(stack.options.queue))
    return [fields[b"e"] for _, fields in rows or [] if fields and b"e" in fields]


def last_per_record(envelopes: list[bytes]) -> list[bytes]:
    """Each record's last delivery (endpoint, resource, resource id), in the order of those last deliveries."""
    last: dict[tuple[str, str, str], bytes] = {}
    for raw in envelopes:
        data = json.loads(raw)
        key = (str(data.get("endpoint")), str(data.get("resource")), str(data.get("resource_id")))
        last.pop(key, None)
        last[key] = raw
    return list(last.values())


def redeliver(stack: Stack, envelopes: list[bytes]) -> tuple[list[str], int, float]:
    """Put `envelopes` into the inbox again, each under a new job id, as the gateway stores an accepted event
    (gateway.ingest's script: XADD id, e). Through the gateway the same deliveries would be refused as seen.
    The record ids, the events stored and the seconds that took."""
    started = time.monotonic()
    key = inbox_key(stack.options.queue)
    with stack.connection.pipeline(transaction=False) as pipe:
        for raw in envelopes:
            pipe.xadd(key, {"id": new_job_id(), "e": raw})
        pipe.execute()
    ids = list(dict.fromkeys(str(json.loads(raw)["resource_id"]) for raw in envelopes))
    return ids, len(envelopes), time.monotonic() - started


def wait_drained(stack: Stack, timeout: float, interval: float = 0.2) -> None:
    """Wait until no event job is left (`Stack.idle`: one MULTI of queue lengths and registries): `settle`,
    called after it, reads the whole activity log since the drain began on every check, which cost this
    process ~1 ms of CPU per order in the thread beside the sandboxes (under the Exact sandbox's GIL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stack.idle():
        time.sleep(interval)


def drain_phase(
    stack: Stack, name: str, procs: list[subprocess.Popen[bytes]], filler: Filler, timeout: float, redis_pid: int,
    *, path: str = "rq", kind: str = "orders", captured: list[bytes] | None = None,
) -> Phase:
    """Stop the (idle) workers, fill the inbox (`filler`), let the workers go and time the drain. `captured`:
    gets the envelopes the inbox held when the workers were let go."""
    wait_quiet(procs)
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    calls_before = stack.calls("exact")
    try:
        ids, events, fill_s = filler()
        if captured is not None:
            captured += inbox_events(stack)
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
    say(f"{name}: {events} deliveries of {len(ids)} orders in the inbox after {fill_s:.1f} s; draining")
    wait_drained(stack, timeout)
    outcomes = stack.settle(ids, timeout=timeout, since=let_go - 1, interval=0.2)
    cpu = worker_cpu(procs) - cpu_before
    usage = meter.stop()
    calls_after = stack.calls("exact")
    created = [o for o in outcomes.values() if o.outcome == "created"]
    answered = sum(o.events for o in outcomes.values() if o.outcome not in ("pending", "failed"))
    done = max((e.done_at for e in stack.activity(let_go - 1) if e.resource_id in outcomes), default=let_go)
    drain_s = max(done - let_go, 1e-9)
    calls = int(calls_after["total"]) - int(calls_before["total"])
    by_endpoint = {k: v - calls_before["by_endpoint"].get(k, 0) for k, v in calls_after["by_endpoint"].items()
                   if v - calls_before["by_endpoint"].get(k, 0)}  # fmt: skip
    units = answered if kind == ANSWERED else len(created)
    phase = Phase(
        name=name, orders=len(ids), created=len(created), events=events, fill_s=round(fill_s, 2),
        drain_s=round(drain_s, 2), orders_per_s=round(units / drain_s, 1), worker_cpu_s=round(cpu, 2),
        cpu_ms_per_order=round(1000 * cpu / units, 2) if units else 0.0,
        cpu_ms_per_event=round(1000 * cpu / events, 3) if events else 0.0, exact_calls=calls,
        exact_calls_per_order=round(calls / units, 3) if units else 0.0, exact_by_endpoint=by_endpoint,
        orders_per_worker_cpu_s=round(units / cpu, 1) if cpu else 0.0, cpu=usage, path=path, workers=len(procs),
        kind=kind, answered=answered if kind == ANSWERED else 0,
    )  # fmt: skip
    what = "answered" if kind == ANSWERED else "created"
    say(f"{name}: {units}/{len(ids) if kind != ANSWERED else events} {what} in {phase.drain_s:.1f} s, "
        f"{phase.orders_per_s:g}/s, {phase.cpu_ms_per_event:g} ms of worker CPU per event")
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


def sales_order_post(stack: Stack) -> tuple[str, bytes]:
    """The Exact endpoint and JSON body of a sales order Koppel POSTed for a created order (its payload
    snapshot's requests, `[retention] payloads`), the newest one found."""
    from gateway.snapshots import SnapshotStore

    store = SnapshotStore(stack.connection)
    for entry in reversed(stack.activity()):
        if entry.outcome != "created" or not entry.job_id:
            continue
        snapshot = store.load(INTEGRATION, entry.job_id) or {}
        for request in snapshot.get("requests", []):
            if request.get("method") == "POST" and str(request.get("path", "")).endswith("SalesOrders") and \
                    isinstance(request.get("body"), dict):  # fmt: skip
                return str(request["path"]), json.dumps(request["body"], default=str).encode()
    raise RuntimeError("no payload snapshot holds a sales order POST: the floor cannot be measured")


def floor_run(stack: Stack, posts: int, workdir: Path) -> Floor:
    """The floor: bench/drain/floor.py in a child process POSTs a booked order's sales-order body `posts` times
    to the stack's Exact sandbox with the access token the workers use."""
    from connectors.tokens import TokenStore

    label, body = sales_order_post(stack)
    tokens = TokenStore(stack.connection, "exact").load()
    if tokens is None:
        raise RuntimeError("the stack holds no Exact tokens: the floor cannot be measured")
    auth = {"Authorization": f"Bearer {tokens.access_token}"}
    base = stack.url("exact")
    me = stack.http.get(f"{base}/api/v1/current/Me", headers=auth).raise_for_status().json()
    url = f"{base}/api/v1/{me['d']['results'][0]['CurrentDivision']}/{label.lstrip('/')}"
    path = workdir / "floor-body.json"
    path.write_bytes(body)
    from bench.drain.floor import TOKEN_VAR

    out = subprocess.run([sys.executable, "-m", "bench.drain.floor", url, str(path), "--posts", str(posts)],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, TOKEN_VAR: tokens.access_token})  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    floor = Floor(posts=int(figures["posts"]), ok=int(figures["ok"]), cpu_s=round(figures["cpu_s"], 3),
                  wall_s=round(figures["wall_s"], 2),
                  cpu_ms_per_post=round(1000 * figures["cpu_s"] / max(1, figures["posts"]), 3))  # fmt: skip
    say(f"floor: {floor.ok}/{floor.posts} sales-order POSTs at {floor.cpu_ms_per_post:g} ms of CPU each")
    return floor


def stop_worker(stack: Stack, proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    stack.workers.remove(proc)


def path_phases(stack: Stack, path: str, args: argparse.Namespace, redis_pid: int) -> list[Phase]:
    """One path's phases on its stack: 1 worker, 2 workers, then the 1-worker phase's orders answered."""
    one, two = stack.start_worker(), stack.start_worker()
    warm = stack.place_orders(args.warmup, seed=1)
    stack.settle(warm, timeout=args.timeout, interval=0.2)
    stop_worker(stack, two)
    booked: list[bytes] = []
    phases = [drain_phase(stack, f"{path}: 1 worker", [one], lambda: fill(stack, args.orders, 100_000, args.timeout),
                          args.timeout, redis_pid, path=path, captured=booked)]  # fmt: skip
    two = stack.start_worker()
    phases.append(drain_phase(stack, f"{path}: 2 workers", [one, two],
                              lambda: fill(stack, args.orders, 200_000, args.timeout), args.timeout, redis_pid,
                              path=path))  # fmt: skip
    stop_worker(stack, two)
    again = last_per_record(booked)
    phases.append(drain_phase(stack, f"{path}: {ANSWERED}", [one], lambda: redeliver(stack, again), args.timeout,
                              redis_pid, path=path, kind=ANSWERED))  # fmt: skip
    return phases


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Phase], list[Noop], Floor | None]:
    embedded = EmbeddedRedis(data_dir=workdir / "redis-data", port=free_port())
    url = embedded.start()
    base = url.rsplit("/", 1)[0]
    phases: list[Phase] = []
    floor: Floor | None = None
    try:
        redis_pid = embedded.process.pid if embedded.process else 0
        for number, path in enumerate(args.paths, 2):  # database 1 is the no-op jobs'
            options = StackOptions(data_dir=workdir / f"stack-{path}", redis_url=f"{base}/{number}",
                                   exact_rate_limits=False, workers=0, direct_events=PATHS[path])  # fmt: skip
            say(f"{path} path: starting the stack: Redis {redact_url(options.redis_url or '')}, gateway, sandboxes "
                "(rate limits off), no worker")  # fmt: skip
            with Stack(options) as stack:
                phases += path_phases(stack, path, args, redis_pid)
                if floor is None and args.floor_posts:
                    floor = floor_run(stack, args.floor_posts, workdir)
        cpus = sorted(os.sched_getaffinity(0))
        noop_url = f"{base}/1"  # a database of their own: none of Koppel's keys in the way
        noops = [noop_run(noop_url, f"no-op pinned to CPU {cpus[-1]}", args.orders, cpus[-1]),
                 noop_run(noop_url, "no-op unpinned", args.orders, None)]  # fmt: skip
    finally:
        embedded.stop()
    return phases, noops, floor


def ratios(phases: list[Phase], noops: list[Noop], floor: Floor | None) -> dict[str, float]:
    """The run's ratios, each within this one run. Per path: worker CPU per order and per event (both phases'
    1-worker figures) and per answered event ÷ each no-op job's CPU (the #14 target: ≤ 1 per event), order CPU
    ÷ (no-op job + floor), 2 ÷ 1 workers; then direct ÷ RQ for what both paths measured."""
    out: dict[str, float] = {}
    by: dict[tuple[str, str], Phase] = {(p.path, p.name.split(": ", 1)[-1]): p for p in phases}
    paths = list(dict.fromkeys(p.path for p in phases))
    for path in paths:
        one, two, answered = (by.get((path, name)) for name in ("1 worker", "2 workers", ANSWERED))
        for n in noops:
            if one is not None:
                out[f"{path}: cpu per order ÷ {n.name} cpu per job"] = ratio(one.cpu_ms_per_order, n.cpu_ms_per_job)
                out[f"{path}: cpu per event ÷ {n.name} cpu per job"] = ratio(one.cpu_ms_per_event, n.cpu_ms_per_job)
            if answered is not None:
                out[f"{path}: answered cpu per event ÷ {n.name} cpu per job"] = ratio(
                    answered.cpu_ms_per_event, n.cpu_ms_per_job)  # fmt: skip
            if one is not None and floor is not None:
                out[f"{path}: cpu per order ÷ ({n.name} + floor)"] = ratio(
                    one.cpu_ms_per_order, n.cpu_ms_per_job + floor.cpu_ms_per_post)  # fmt: skip
        if one is not None and two is not None:
            out[f"{path}: 2 workers ÷ 1 worker orders/s"] = ratio(two.orders_per_s, one.orders_per_s)
            per_cpu = ratio(two.orders_per_worker_cpu_s, one.orders_per_worker_cpu_s)
            out[f"{path}: 2 workers ÷ 1 worker orders per worker-CPU-second"] = per_cpu
            # Two workers each given the share of a core the one worker had (its CPU ÷ drain time) drain
            # 2 * (their orders per CPU-second ÷ its) what it drained: the 2 ÷ 1 figure on a machine with spare cores.
            out[f"{path}: 2 ÷ 1 workers normalised (2 * orders per worker-CPU-second ratio)"] = round(2 * per_cpu, 2)
            out[f"{path}: 2 workers' cores available ÷ 1 worker's CPU use"] = ratio(
                two.cpu.workers_could_have_pct(), one.cpu.workers_pct())  # fmt: skip
    if {"rq", "direct"} <= set(paths):
        for name in ("1 worker", "2 workers", ANSWERED):
            rq, direct = by.get(("rq", name)), by.get(("direct", name))
            if rq is None or direct is None:
                continue
            if name != ANSWERED:
                out[f"direct ÷ rq: {name} orders/s"] = ratio(direct.orders_per_s, rq.orders_per_s)
                out[f"direct ÷ rq: {name} cpu per order"] = ratio(direct.cpu_ms_per_order, rq.cpu_ms_per_order)
            else:
                out[f"direct ÷ rq: {name} cpu per event"] = ratio(direct.cpu_ms_per_event, rq.cpu_ms_per_event)
    return out


def problems_of(phases: list[Phase], floor: Floor | None) -> list[str]:
    """What makes the run's figures untrustworthy: an order not created, an answered event not answered, a
    floor POST refused."""
    out = [f"{p.name}: {p.created} of {p.orders} orders created" for p in phases
           if p.kind != ANSWERED and p.created != p.orders]  # fmt: skip
    out += [f"{p.name}: {p.answered} of {p.events} events answered" for p in phases
            if p.kind == ANSWERED and p.answered != p.events]  # fmt: skip
    if floor is not None and floor.ok != floor.posts:
        out.append(f"floor: {floor.ok} of {floor.posts} sales-order POSTs answered 2xx")
    return out


def report(args: argparse.Namespace, phases: list[Phase], noops: list[Noop], floor: Floor | None) -> dict[str, Any]:
    print()
    print(f"bench/drain: {args.orders} orders per phase delivered through the gateway into the inbox with the "
          "workers stopped, then drained; answered: the 1-worker phase's orders' last delivery again; Exact "
          "sandbox rate limits off")  # fmt: skip
    print(f"{'':24}{'orders/s':>9}{'CPU ms/order':>13}{'CPU ms/event':>13}"
          f"{'Exact calls/order':>18}{'drain s':>8}{'inbox':>7}{'fill s':>7}")  # fmt: skip
    for p in phases:
        print(f"{p.name:24}{p.orders_per_s:>9,.1f}{p.cpu_ms_per_order:>13.2f}{p.cpu_ms_per_event:>13.3f}"
              f"{p.exact_calls_per_order:>18.3f}{p.drain_s:>8.1f}{p.events:>7}{p.fill_s:>7.1f}")  # fmt: skip
    print("(answered rows: per answered event, not per order)")
    print(f"{'':24}{'jobs/s':>9}{'CPU ms/job':>13}{'jobs s':>8}{'work() s':>9}")
    for n in noops:
        print(f"{n.name:24}{n.jobs_per_s:>9,.1f}{n.cpu_ms_per_job:>13.3f}{n.wall_s:>8.2f}{n.work_s:>9.2f}")
    if floor is not None:
        print(f"{'floor (httpx POST)':24}{floor.posts / max(floor.wall_s, 1e-9):>9,.1f}{floor.cpu_ms_per_post:>13.3f}"
              f"{floor.wall_s:>8.2f}   ({floor.ok}/{floor.posts} answered 2xx)")  # fmt: skip
    print()
    names = sorted(dict.fromkeys(name for p in phases for name in p.cpu.pct), key=lambda n: not n.startswith("worker"))
    print("CPU over each drain, % of one core (and ms per order / answered event):")
    print(f"{'':24}{'machine':>9}" + "".join(f"{name:>16}" for name in names) + f"{'other':>8}")
    for p in phases:
        cells = "".join(f"{p.cpu.pct.get(n, 0):>7.1f} ({1000 * p.cpu.seconds.get(n, 0) / max(1, p.done):>5.2f})"
                        for n in names)  # fmt: skip
        print(f"{p.name:24}{p.cpu.machine_pct:>8.1f}%{cells}{p.cpu.other_pct():>7.1f}%")
    for p in phases:
        others = {n: v for n, v in p.cpu.pct.items() if not n.startswith("worker") and v >= 5}
        print(f"{p.name}: machine {p.cpu.machine_pct:.0f} % busy of {100 * p.cpu.cpus} %, "
              + "".join(f"{n} {v:.0f} %, " for n, v in others.items())
              + f"other processes {p.cpu.other_pct():.0f} % ⇒ the workers had at most "
              f"{p.cpu.workers_could_have_pct() / 100:.2f} cores and used {p.cpu.workers_pct() / 100:.2f}; "
              f"{p.orders_per_worker_cpu_s:g} per worker-CPU-second")  # fmt: skip
    found = ratios(phases, noops, floor)
    for name, value in found.items():
        print(f"ratio {name}: {value:.2f}")
    for p in phases:
        print(f"Exact calls, {p.name}: {p.exact_calls} ({p.exact_by_endpoint})")
    problems = problems_of(phases, floor)
    for problem in problems:
        print(f"FAILED: {problem}")
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"orders": args.orders, "warmup": args.warmup, "exact_rate_limits": False,
                     "paths": args.paths, "floor_posts": args.floor_posts},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "phases": [asdict(p) for p in phases],
        "noop": [asdict(n) for n in noops],
        "floor": asdict(floor) if floor is not None else None,
        "ratios": found,
        "problems": problems,
        "ok": not problems,
    }  # fmt: skip


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
    parser.add_argument("--paths", type=paths_arg, default=list(PATHS),
                        help="the event paths to measure, in this order (rq: direct_events = false)")
    parser.add_argument("--floor-posts", type=int, default=None,
                        help="sales-order POSTs of the floor (default: --orders; 0: no floor)")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.warmup < 1 or args.timeout <= 0:
        parser.error("--orders and --warmup must be at least 1, --timeout > 0")
    if args.floor_posts is None:
        args.floor_posts = args.orders
    if args.floor_posts < 0:
        parser.error("--floor-posts must be 0 or more")
    return args


def paths_arg(text: str) -> list[str]:
    """`--paths`: comma-separated names of `PATHS`, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PATHS]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"give one or more of {', '.join(PATHS)}, comma-separated, each once")
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        phases, noops, floor = run(args, workdir)
        result = report(args, phases, noops, floor)
        return result, 0 if result["ok"] else 1

    return run_bench("drain", body, results=args.results, keep=args.keep, say=say,
                     failures=(RuntimeError, subprocess.CalledProcessError))  # fmt: skip
