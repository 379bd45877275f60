"""bench/ingest driver: a no-op Starlette route against Koppel's gateway, same uvicorn, same load.

    .venv/bin/python -m bench.ingest.run [-t 1] [-c 64] [-d 10] [--warmup 2] [--profile] [--rate 2000]

1. Pre-generates distinct, signed WooCommerce order.created deliveries (~3 KB each) into files
   that the wrk script (load.lua) streams, one line per request.
2. Serves `bench.ingest.apps:noop_app` with uvicorn in its own process and loads it with wrk
   (warm-up, then the measured run), then stops it.
3. Starts a fresh embedded Redis (AOF everysec + RDB, as in production) on a free port in a temp
   dir, serves `bench.ingest.apps:koppel_app` the same way and loads it with the same requests.
   With --wait-replicas N, once more with N replicas attached and `[gateway] wait_replicas = N`
   (Redis WAIT after each batch): CPU per request and p50/p99 with and without, side by side.
4. Counts the Redis commands per accepted event (the gateway's: dedupe + inbox stream), then
   drains the inbox into RQ jobs as the workers' pumps do (workers/inbox.py, not timed), and checks
   every delivery was answered 2xx and really stored: the RQ queue holds one job per 202 (plus the
   requests wrk had in flight when it stopped, which the gateway still stored); prints a table and
   writes bench/results/ingest-*.json.

5. With `--rate R`: the no-op route and Koppel (fresh Redis) again, each offered a fixed R deliveries/s by an
   open-loop generator (bench/ingest/paced.py): latency percentiles from each request's due time and CPU per
   request at that rate, in a table after the saturation report (and `paced` in the JSON).

Exit status 1 when anything failed (a non-2xx or socket error, a wrapped request file in the
Koppel run, a job count that does not match, a server that did not start); the throughput target
(Koppel >= 0.25 of the no-op rate with p99 < 50 ms) is reported, not enforced.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from bench.common import run_bench, show
from bench.ingest import paced
from bench.ingest.apps import REDIS_URL_ENV, WAIT_REPLICAS_ENV
from bench.ingest.orders import deliveries, write_requests
from gateway.ingest import inbox_key
from gateway.redisserver import EmbeddedRedis, free_port, redact_url
from workers.inbox import InboxPump

ROOT = Path(__file__).resolve().parents[2]
LUA = Path(__file__).resolve().with_name("load.lua")
RESULTS = ROOT / "bench" / "results"
PATH = "/webhooks/shop"
QUEUE = "koppel"
TARGET_RATIO = 0.25
TARGET_P99_MS = 50.0
PACED_TARGET_CPU_RATIO = 0.6
PACED_TARGET_P99_MS = 20.0
"""Issue #14's targets at a fixed offered rate of 2 000/s: no-op CPU per request ÷ Koppel's, and Koppel's p99."""
_PR_SET_PDEATHSIG = 1


class BenchFailure(Exception):
    """The benchmark could not measure what it claims to (not: the target was missed)."""


def say(message: str) -> None:
    print(f"bench/ingest: {message}", file=sys.stderr, flush=True)


# -- wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    sent: int
    wraps: int
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not status.startswith("2"))

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def in_flight(self) -> int:
        """Requests sent but not answered when wrk stopped (the server may still have handled them)."""
        return max(0, self.sent - self.requests)


def run_wrk(
    args: argparse.Namespace, url: str, duration: float, prefix: Path, watch: dict[str, int] | None = None
) -> WrkResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchFailure("wrk is not installed (bench/ingest/run.sh installs it: apt-get install wrk)")
    command = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(prefix),
        PATH,
    ]
    meter = CpuMeter(watch or {})
    process = subprocess.Popen(
        pinned(command, args.wrk_cpu),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=own_group_dying_with_us,
    )
    try:
        out, err = process.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"wrk did not finish within {duration + 60:g} s") from None
    finally:
        stop_group(process, "wrk")
    cpu = meter.stop()
    match = re.search(r"^BENCH-JSON (.*)$", out, re.MULTILINE)
    if process.returncode != 0 or match is None:
        raise BenchFailure(f"wrk failed (exit {process.returncode}): {err.strip() or out.strip()}")
    data = json.loads(match.group(1))
    latency = data["latency_us"]
    duration_s = data["duration_us"] / 1e6
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=duration_s,
        rps=data["requests"] / duration_s,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        max_ms=latency["max"] / 1000,
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        # wrk's errors.status is its count of answers >= 400, already in statuses: keep socket errors only
        errors={str(k): int(v) for k, v in data["errors"].items() if int(v) and k != "status"},
        sent=int(data["sent"]),
        wraps=int(data["wraps"]),
        cpu=cpu,
    )


# -- processes -----------------------------------------------------------------------------------


def pinned(command: list[str], cpu: int | None) -> list[str]:
    if cpu is None:
        return command
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *command] if taskset else command


def own_group_dying_with_us() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: a new session (signals to the group reach only this child and its children),
    and SIGTERM from the kernel when the driver dies, even by SIGKILL: no server is left behind."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group(process: subprocess.Popen[Any], name: str, timeout: float = 15.0) -> None:
    """Stop a process started with preexec_fn=own_group_dying_with_us, and everything in its group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop on SIGTERM within {timeout:.0f} s; killing it")
    with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a process: its main thread and its other threads together."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"main": 0.0, "threads": 0.0}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        out["main" if task.name == str(pid) else "threads"] += seconds
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU use over an interval in % of one core: the watched processes (main thread and other
    threads), wrk (the children reaped meanwhile), the whole machine, and `other` = machine minus
    those (other processes competing for the CPUs: a noisy run)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.machine = machine_busy()
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.time = time.monotonic()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.time
        busy, total = machine_busy()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus = os.cpu_count() or 1
        result = {
            "machine": 100 * cpus * (busy - self.machine[0]) / max(1, total - self.machine[1]),
            "wrk": 100
            * (children.ru_utime + children.ru_stime - self.children.ru_utime - self.children.ru_stime)
            / elapsed,
        }
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            for part in ("main", "threads"):
                result[f"{name}_{part}"] = 100 * (now[part] - self.start[name][part]) / elapsed
            result[name] = result[f"{name}_main"] + result[f"{name}_threads"]
        result["other"] = max(0.0, result["machine"] - result["wrk"] - sum(result[name] for name in self.pids))
        return {name: round(value, 1) for name, value in result.items()}


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchFailure(f"{self.name} server exited with code {self.process.returncode}:\n{self.tail()}")


def start_server(
    args: argparse.Namespace,
    name: str,
    factory: str,
    env: dict[str, str],
    workdir: Path,
    cpu: int | None,
    http: str | None = None,
) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"bench.ingest.apps:{factory}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        args.loop,
        "--http",
        http or args.http,
        "--lifespan",
        "on",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log = workdir / f"{name}.log"
    pythonpath = os.environ.get("PYTHONPATH", "")
    with log.open("wb") as out:
        process = subprocess.Popen(
            pinned(command, cpu),
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), pythonpath]))},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=own_group_dying_with_us,
        )
    return Server(name, process, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, probe: str, timeout: float = 30.0) -> None:
    """Wait until the server answers `probe` ("GET /path" or "POST /path") with 2xx."""
    method, path = probe.split(" ", 1)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline:
            server.check_alive()
            try:
                response = client.request(method, path, content=b"{}" if method == "POST" else None)
                if response.is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise BenchFailure(f"{server.name} server did not become ready within {timeout:.0f} s:\n{server.tail()}")


# -- Redis ---------------------------------------------------------------------------------------


def redis_stats(connection: redis.Redis) -> dict[str, int]:
    """total_commands_processed and the calls of each command (cmdstat_<name>)."""
    info = connection.execute_command("INFO", "stats", "commandstats")
    stats = {"total_commands_processed": int(info["total_commands_processed"])}
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            stats[key.removeprefix("cmdstat_")] = int(value["calls"])
    return stats


def settle(connection: redis.Redis, timeout: float = 15.0) -> dict[str, int]:
    """Wait until the gateway stops writing to Redis; returns the stats then."""
    previous = redis_stats(connection)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = redis_stats(connection)
        if current["total_commands_processed"] - previous["total_commands_processed"] <= 1:  # only our INFO
            return current
        previous = current
    raise BenchFailure(f"the gateway was still writing to Redis {timeout:.0f} s after the load stopped")


def scrape(url: str) -> dict[str, float]:
    """Koppel's /metrics, summed per metric name (labels dropped)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    sums: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, _, value = line.rpartition(" ")
            sums[name_labels.split("{", 1)[0]] += float(value)
    return dict(sums)


# -- profiling -----------------------------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if Path(found).exists():
        return found
    say("installing py-spy into the venv for --profile")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(Path(sys.executable).with_name("py-spy"))


def start_profiler(pid: int, seconds: float, out: Path, mode: str) -> subprocess.Popen[bytes]:
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(math.ceil(seconds)), "--rate", "250"]
    command += ["--format", "raw", "--threads", "--nonblocking", "--output", str(out)]
    if mode == "gil":
        command.append("--gil")
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=own_group_dying_with_us
    )


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Per thread: share of samples, and the functions with the most self and inclusive samples.

    Shares are % of all samples of the process; inclusive lists leave out the frames every sample
    of a thread goes through (thread bootstrap, uvicorn's run loop).
    """
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_thread: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0].rsplit(": ", 1)[-1].strip('"')  # 'thread (1234): "MainThread"' -> MainThread
        # aggregate per function: "name (path:line)" -> "name (short path)"
        names = [re.sub(r" \((.*?):\d+\)$", lambda m: f" ({_short(m.group(1))})", f) for f in frames[1:]]
        total += count
        per_thread[thread] += count
        if names:
            own[thread][names[-1]] += count
        for name in set(names):
            inclusive[thread][name] += count
    pct = 100.0 / total if total else 0.0
    threads = {}
    for thread, samples in per_thread.most_common():
        threads[thread] = {
            "share": round(samples * pct, 1),
            "self": [(name, round(n * pct, 1)) for name, n in own[thread].most_common(top)],
            "inclusive": [
                (name, round(n * pct, 1))
                for name, n in inclusive[thread].most_common()
                if n < 0.97 * samples and n * pct >= 1.0
            ][: top * 2],
        }
    return {"samples": total, "threads": threads}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Koppel:
    warmup: WrkResult
    run: WrkResult
    jobs: int
    answered_202: int
    in_flight: int
    metric_queued: float
    metric_duplicates: float
    metric_rejected: float
    commands: int
    commands_per_event: float
    transactions: int
    events_per_transaction: float
    commands_by_name_per_event: dict[str, float] = field(default_factory=dict)
    dedupe_marks: int = 0
    aof_enabled: bool = False
    sample_job: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    not_acknowledged: int = 0
    """With WAIT: deliveries answered 503 because the replicas did not acknowledge their batch in time."""


def generate(workdir: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Request files for the warm-up and the measured run: distinct order ids across all of them."""
    prefixes = {"warmup": workdir / "warmup", "run": workdir / "run"}
    budget = {"warmup": args.warmup, "run": args.duration}
    next_id = 100_000
    started = time.monotonic()
    total_bytes = total = 0
    for phase, prefix in prefixes.items():
        per_thread = math.ceil(args.max_rate * budget[phase] * 1.1 / args.threads) + args.connections
        for thread in range(args.threads):
            count, size = write_requests(Path(f"{prefix}-{thread}.req"), next_id, per_thread)
            next_id += count
            total += count
            total_bytes += size
    say(
        f"generated {total:,} distinct signed deliveries (mean body {total_bytes / total:,.0f} bytes) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return prefixes


def load(args: argparse.Namespace, server: Server, prefixes: dict[str, Path]) -> tuple[WrkResult, WrkResult]:
    warmup = run_wrk(args, server.url, args.warmup, prefixes["warmup"])
    server.check_alive()
    run = run_wrk(args, server.url, args.duration, prefixes["run"], {"server": server.process.pid})
    server.check_alive()
    return warmup, run


def bench_noop(args: argparse.Namespace, workdir: Path, prefixes: dict[str, Path]) -> tuple[WrkResult, WrkResult]:
    server = start_server(args, "noop", "noop_app", {}, workdir, args.server_cpu)
    try:
        wait_ready(server, f"POST {PATH}")
        say(f"no-op Starlette: warm-up {args.warmup:g} s, then {args.duration:g} s")
        return load(args, server, prefixes)
    finally:
        stop_group(server.process, "no-op server")


def start_replicas(
    count: int, primary_port: int, workdir: Path, password: str | None = None
) -> list[subprocess.Popen[bytes]]:
    """`count` replicas of the primary (redis-server --replicaof, no persistence of their own), once in sync."""
    replicas = []
    for n in range(count):
        port = free_port()
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(workdir), "--replicaof", "127.0.0.1", str(primary_port)]  # fmt: skip
        if password:  # the embedded primary asks for its password (gateway/redisserver.py)
            command += ["--masterauth", password]
        replicas.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=own_group_dying_with_us))
        say(f"replica {n + 1} of the primary on port {port}")
    primary = redis.Redis(port=primary_port, password=password)
    deadline = time.monotonic() + 30

    def online() -> int:  # replicas done with their initial sync
        info = primary.info("replication")
        return sum(1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online")

    while online() < count:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{count} replica(s) did not sync with the primary within 30 s")
        time.sleep(0.1)
    primary.close()
    return replicas


def bench_koppel(
    args: argparse.Namespace,
    workdir: Path,
    prefixes: dict[str, Path],
    http: str,
    name: str = "koppel",
    wait_replicas: int = 0,
) -> Koppel:
    """Koppel's gateway served with the HTTP protocol `http` (a uvicorn --http value), on a fresh Redis; with
    `wait_replicas`, that many replicas of it and the gateway WAITing for them after each batch."""
    embedded = EmbeddedRedis(data_dir=workdir / f"redis-data-{name}", port=free_port())
    url = embedded.start()
    connection = redis.Redis.from_url(url)
    server: Server | None = None
    profiler: subprocess.Popen[bytes] | None = None
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        env = {REDIS_URL_ENV: url}
        if wait_replicas:
            replicas = start_replicas(wait_replicas, embedded.port, workdir, embedded.password)
            env[WAIT_REPLICAS_ENV] = str(wait_replicas)
        server = start_server(args, name, "koppel_app", env, workdir, args.server_cpu, http)
        wait_ready(server, "GET /readyz")
        before = redis_stats(connection)
        how = f", WAIT {wait_replicas} after each batch" if wait_replicas else ""
        say(
            f"Koppel gateway (--http {http}; Redis {redact_url(url)}, AOF everysec{how}): "
            f"warm-up {args.warmup:g} s, then {args.duration:g} s"
        )
        warmup = run_wrk(args, server.url, args.warmup, prefixes["warmup"])
        server.check_alive()
        if args.profile and not wait_replicas:
            profiler = start_profiler(server.process.pid, args.duration, workdir / "profile.raw", args.profile)
            time.sleep(0.5)  # let py-spy attach
        assert embedded.process is not None
        watch = {"server": server.process.pid, "redis": embedded.process.pid}
        run = run_wrk(args, server.url, args.duration, prefixes["run"], watch)
        server.check_alive()
        after = settle(connection)
        profile = None
        if profiler is not None:
            _, err = profiler.communicate(timeout=args.duration + 30)
            if profiler.returncode != 0 or not (workdir / "profile.raw").exists():
                raise BenchFailure(f"py-spy failed: {err.decode(errors='replace').strip()}")
            profile = summarize_profile(workdir / "profile.raw")

        started = time.monotonic()
        pumped = InboxPump(connection, QUEUE).drain(timeout=300)
        say(f"inbox: pumped {pumped:,} entries into RQ jobs in {time.monotonic() - started:.1f} s")
        if connection.xlen(inbox_key(QUEUE)):
            raise BenchFailure(f"the inbox still holds {connection.xlen(inbox_key(QUEUE))} entries after draining")
        queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
        jobs = queue.count
        sample: dict[str, Any] = {}
        last = queue.get_job_ids(jobs - 1, jobs - 1) if jobs else []
        if last:
            job = Job.fetch(last[0], connection=connection, serializer=JSONSerializer)
            envelope = job.args[0]
            sample = {
                "id": job.id,
                "func": job.func_name,
                "topic": envelope["topic"],
                "resource_id": envelope["resource_id"],
                "payload_bytes": len(json.dumps(envelope["payload"])),
            }
        dedupe_marks = sum(1 for _ in connection.scan_iter(match="koppel:dedupe:*", count=10_000))
        aof_enabled = str(connection.info("persistence").get("aof_enabled")) == "1"
        metrics = scrape(server.url)
    finally:
        if profiler is not None:
            stop_group(profiler, "py-spy")
        if server is not None:
            stop_group(server.process, "Koppel server")
        for replica in replicas:
            stop_group(replica, "replica")
        connection.close()
        embedded.stop()

    accepted = jobs or 1
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    delta.pop("total_commands_processed")
    delta.pop("info", None)  # ours
    commands = sum(delta.values())
    by_name = {name: round(n / accepted, 3) for name, n in sorted(delta.items(), key=lambda kv: -kv[1]) if n > 0}
    transactions = delta.get("evalsha", 0) + delta.get("eval", 0) + delta.get("exec", 0)
    return Koppel(
        warmup=warmup,
        run=run,
        jobs=jobs,
        answered_202=warmup.statuses.get("202", 0) + run.statuses.get("202", 0),
        in_flight=warmup.in_flight + run.in_flight,
        metric_queued=metrics.get("koppel_events_queued_total", 0.0),
        metric_duplicates=metrics.get("koppel_events_duplicate_total", 0.0),
        metric_rejected=metrics.get("koppel_webhooks_rejected_total", 0.0),
        commands=commands,
        commands_per_event=commands / accepted,
        transactions=transactions,
        events_per_transaction=jobs / transactions if transactions else 0.0,
        commands_by_name_per_event=by_name,
        dedupe_marks=dedupe_marks,
        aof_enabled=aof_enabled,
        sample_job=sample,
        profile=profile,
    )


def paced_server(
    args: argparse.Namespace, server: Server, requests: list[bytes], watch: dict[str, int]
) -> dict[str, Any]:
    """A 2 s warm-up and the measured `--rate` run against a started server; its figures and CPU."""
    wait = paced.run_paced(server.url, requests[: int(args.rate * 2)], args.rate, 2, args.rate_connections)
    server.check_alive()
    meter = CpuMeter(watch)
    measured = requests[int(args.rate * 2) :]
    result = paced.run_paced(server.url, measured, args.rate, args.rate_duration, args.rate_connections)
    cpu = meter.stop()
    server.check_alive()
    served = sum(result.statuses.values())
    cpu_ms = 10 * cpu.get("server", 0.0) * result.duration_s / served if served else 0.0
    return asdict(result) | {
        "warmup_statuses": wait.statuses,
        "cpu": cpu,
        "server_cpu_ms_per_request": round(cpu_ms, 4),
    }


def bench_paced(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """`--rate`: the no-op route and Koppel's gateway (fresh Redis), each on a fresh server, offered a fixed
    rate of distinct deliveries (none a duplicate, ids apart from the saturation runs'); prints a table."""
    count = int(args.rate * (2 + args.rate_duration)) + 1
    requests = [paced.encode("127.0.0.1", PATH, signature, body) for signature, body in deliveries(50_000_000, count)]
    figures: dict[str, Any] = {}
    server = start_server(args, "noop-paced", "noop_app", {}, workdir, args.server_cpu)
    try:
        wait_ready(server, f"POST {PATH}")
        say(f"no-op Starlette at {args.rate:g} deliveries/s offered: warm-up 2 s, then {args.rate_duration:g} s")
        figures["noop"] = paced_server(args, server, requests, {"server": server.process.pid})
    finally:
        stop_group(server.process, "no-op server")
    embedded = EmbeddedRedis(data_dir=workdir / "redis-data-paced", port=free_port())
    url = embedded.start()
    try:
        server = start_server(args, "koppel-paced", "koppel_app", {REDIS_URL_ENV: url}, workdir, args.server_cpu,
                              args.koppel_http)  # fmt: skip
        try:
            wait_ready(server, "GET /readyz")
            say(f"Koppel gateway at {args.rate:g} deliveries/s offered: warm-up 2 s, then {args.rate_duration:g} s")
            assert embedded.process is not None
            figures["koppel"] = paced_server(args, server, requests,
                                             {"server": server.process.pid, "redis": embedded.process.pid})  # fmt: skip
        finally:
            stop_group(server.process, "Koppel server")
    finally:
        embedded.stop()
    print()
    print(f"fixed offered rate {args.rate:g} deliveries/s, {args.rate_duration:g} s, {args.rate_connections} "
          "connections (open loop, latency from each request's due time: coordinated omission corrected)")  # fmt: skip
    print(f"{'':8}{'achieved/s':>11}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}"
          f"{'lag p99 ms':>11}{'CPU ms/req':>11}  statuses")  # fmt: skip
    for name, f in figures.items():
        lat = f["latency_ms"]
        print(f"{name:8}{f['achieved_rps']:>11,.0f}{lat['p50']:>9.2f}{lat['p90']:>9.2f}{lat['p99']:>9.2f}"
              f"{lat['p99.9']:>10.2f}{lat['max']:>9.1f}{f['lag_ms']['p99']:>11.2f}"
              f"{f['server_cpu_ms_per_request']:>11.3f}  {f['statuses']} errors {f['errors']}")  # fmt: skip
    noop_cpu, koppel_cpu = figures["noop"]["server_cpu_ms_per_request"], figures["koppel"]["server_cpu_ms_per_request"]
    ratio = round(noop_cpu / koppel_cpu, 2) if koppel_cpu else 0.0
    print(f"ratio at {args.rate:g}/s: no-op CPU per request ÷ Koppel's = {ratio:.2f}")
    p99 = figures["koppel"]["latency_ms"]["p99"]
    met = ratio >= PACED_TARGET_CPU_RATIO and p99 < PACED_TARGET_P99_MS
    verdict = "met" if met else "NOT MET"
    print(f"target (#14, at 2000/s): CPU ratio >= {PACED_TARGET_CPU_RATIO} with Koppel p99 < "
          f"{PACED_TARGET_P99_MS:g} ms: {verdict} (ratio {ratio:.2f}, p99 {p99:.1f} ms)")  # fmt: skip
    return figures | {"rate": args.rate, "cpu_ratio_noop_over_koppel": ratio, "target_met": met}


def check(noop: WrkResult, koppel: Koppel, *, waited: bool = False) -> list[str]:
    """What went wrong; with `waited` (the run with WAIT), a 503 is a batch the replicas did not acknowledge
    in time: its events are stored (the sender's retry would be answered as their duplicate), so it is
    counted (`not_acknowledged`) rather than failed."""
    problems = []
    if waited:
        koppel.not_acknowledged = koppel.warmup.statuses.pop("503", 0) + koppel.run.statuses.pop("503", 0)
        koppel.metric_rejected -= koppel.not_acknowledged
    for name, result in (("no-op", noop), ("Koppel warm-up", koppel.warmup), ("Koppel", koppel.run)):
        if result.non_2xx:
            problems.append(f"{name}: {result.non_2xx} non-2xx answers {result.statuses}")
        if result.socket_errors:
            problems.append(f"{name}: socket errors {result.errors}")
        if result.requests == 0:
            problems.append(f"{name}: no request completed")
    for name, result in (("Koppel warm-up", koppel.warmup), ("Koppel", koppel.run)):
        if result.wraps:
            problems.append(f"{name}: the request file ran out and deliveries were re-sent; raise --max-rate")
    # Every 202 is a stored job; the only extra jobs are requests wrk had in flight when it stopped
    # (the gateway stores them and answers a closed connection).
    extra = koppel.jobs - koppel.answered_202 - koppel.not_acknowledged
    if not 0 <= extra <= koppel.in_flight:
        problems.append(
            f"Redis holds {koppel.jobs} jobs for {koppel.answered_202} answers 202 "
            f"(+ at most {koppel.in_flight} in flight): events were lost or stored twice"
        )
    for name, result in (("Koppel warm-up", koppel.warmup), ("Koppel", koppel.run)):
        other = {status: n for status, n in result.statuses.items() if status != "202"}
        if other:
            problems.append(f"{name}: answers other than 202 {other}")
    if koppel.dedupe_marks != koppel.jobs:
        problems.append(f"Redis holds {koppel.dedupe_marks} dedupe marks for {koppel.jobs} jobs")
    if not koppel.aof_enabled:
        problems.append("the embedded Redis ran without AOF persistence")
    unseen = koppel.jobs - koppel.not_acknowledged - koppel.metric_queued  # with WAIT: 503s wrk did not wait for
    if (unseen != 0) if not waited else not 0 <= unseen <= koppel.in_flight:
        problems.append(f"the gateway counted {koppel.metric_queued:.0f} queued events, Redis holds {koppel.jobs} jobs")
    if koppel.metric_duplicates or koppel.metric_rejected > (koppel.in_flight if waited else 0):
        problems.append(
            f"the gateway saw {koppel.metric_duplicates:.0f} duplicates and {koppel.metric_rejected:.0f} rejections"
        )
    if koppel.sample_job and (koppel.sample_job["topic"] != "order.created" or not koppel.sample_job["resource_id"]):
        problems.append(f"the last job is not a WooCommerce order.created event: {koppel.sample_job}")
    return problems


def report(args: argparse.Namespace, noop: WrkResult, koppel: Koppel, problems: list[str]) -> dict[str, Any]:
    ratio = koppel.run.rps / noop.rps if noop.rps else 0.0
    met = ratio >= TARGET_RATIO and koppel.run.p99_ms < TARGET_P99_MS and not problems
    rows = [("no-op Starlette", noop), ("Koppel gateway", koppel.run)]
    pinning = f"wrk on CPU {args.wrk_cpu}, server on CPU {args.server_cpu}" if args.pin else "no CPU pinning"
    print()
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s after {args.warmup:g} s warm-up, "
        f"uvicorn 1 worker loop={resolved_loop(args.loop)} http={resolved_http(args.http)}, "
        f"{pinning}; Redis unpinned"
    )
    print(f"{'':18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'requests':>10}{'non-2xx':>9}{'errors':>8}")
    for name, r in rows:
        print(
            f"{name:18}{r.rps:>10,.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.max_ms:>9.1f}{r.requests:>10,}"
            f"{r.non_2xx:>9}{r.socket_errors:>8}"
        )
    p50x = koppel.run.p50_ms / noop.p50_ms if noop.p50_ms else 0.0
    p99x = koppel.run.p99_ms / noop.p99_ms if noop.p99_ms else 0.0
    print(f"{'ratio koppel/noop':18}{ratio:>10.3f}{p50x:>8.1f}x{p99x:>8.1f}x")
    print(
        f"target: ratio >= {TARGET_RATIO} with Koppel p99 < {TARGET_P99_MS:g} ms: "
        + (
            "not evaluated: the run failed"
            if problems
            else "MET"
            if met
            else f"NOT MET (ratio {ratio:.3f}, p99 {koppel.run.p99_ms:.1f} ms)"
        )
    )
    print(
        f"stored: {koppel.jobs:,} RQ jobs in queue {QUEUE!r} for {koppel.answered_202:,} answers 202 "
        f"(warm-up + run; {koppel.jobs - koppel.answered_202} more from requests in flight when wrk stopped), "
        f"{koppel.dedupe_marks:,} dedupe marks, AOF {'on' if koppel.aof_enabled else 'OFF'}"
    )
    top = ", ".join(f"{name} {n:g}" for name, n in list(koppel.commands_by_name_per_event.items())[:8])
    print(
        f"Redis: {koppel.commands_per_event:.2f} commands per accepted event ({koppel.commands:,} in all; "
        f"{koppel.transactions:,} Lua scripts/transactions, {koppel.events_per_transaction:.1f} events each); {top}"
    )
    cpu, noop_cpu = koppel.run.cpu, noop.cpu
    print(
        f"CPU, % of one core: no-op server {noop_cpu.get('server', 0):.0f}, wrk {noop_cpu.get('wrk', 0):.0f}, "
        f"other processes {noop_cpu.get('other', 0):.0f} | Koppel server {cpu.get('server', 0):.0f} "
        f"(event loop thread {cpu.get('server_main', 0):.0f}, other threads {cpu.get('server_threads', 0):.0f}), "
        f"Redis {cpu.get('redis', 0):.0f}, wrk {cpu.get('wrk', 0):.0f}, other processes {cpu.get('other', 0):.0f}"
    )
    noisy = max(noop_cpu.get("other", 0), cpu.get("other", 0))
    if noisy > 15:
        print(f"warning: other processes used up to {noisy:.0f}% of a core during the runs; figures are noisy")
    if koppel.profile:
        print_profile(koppel.profile, args.profile)
    for problem in problems:
        print(f"FAILED: {problem}")

    result = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "loop": resolved_loop(args.loop),
            "http": resolved_http(args.http),
            "wrk_cpu": args.wrk_cpu,
            "server_cpu": args.server_cpu,
            "profiled": args.profile,
            "hiredis": importlib.util.find_spec("hiredis") is not None,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "noop": asdict(noop) | {"non_2xx": noop.non_2xx},
        "koppel": asdict(koppel) | {"non_2xx": koppel.run.non_2xx},
        "ratio": ratio,
        "target": {"ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS, "met": met},
        "problems": problems,
        "ok": not problems,
    }
    return result


def cpu_per_request_us(koppel: Koppel) -> float:
    """The server's CPU (`cpu.server`, % of a core) per answered request in the measured run, in µs."""
    return koppel.run.cpu.get("server", 0) / 100 / koppel.run.rps * 1e6 if koppel.run.rps else 0.0


def compare(args: argparse.Namespace, koppel: Koppel, other: Koppel, problems: list[str]) -> dict[str, Any]:
    """The gateway's figures under `--koppel-http` against a second run under `--compare-http`."""
    mine, theirs = cpu_per_request_us(koppel), cpu_per_request_us(other)
    print(
        f"\nKoppel --http {args.koppel_http}: {koppel.run.rps:,.0f} req/s, p99 {koppel.run.p99_ms:.1f} ms, "
        f"{mine:.0f} µs CPU/req (other processes {koppel.run.cpu.get('other', 0):.0f} %)"
    )
    print(
        f"Koppel --http {args.compare_http}: {other.run.rps:,.0f} req/s, p99 {other.run.p99_ms:.1f} ms, "
        f"{theirs:.0f} µs CPU/req (other processes {other.run.cpu.get('other', 0):.0f} %)"
    )
    ratio = mine / theirs if theirs else 0.0
    print(f"CPU per request {args.koppel_http} / {args.compare_http}: {ratio:.3f}")
    for problem in problems:
        print(f"FAILED (--compare-http run): {problem}")
    return {
        "koppel_http": args.koppel_http,
        "compare_http": args.compare_http,
        "cpu_per_request_us": mine,
        "compare_cpu_per_request_us": theirs,
        "cpu_ratio": ratio,
        "run": asdict(other.run),
        "problems": problems,
    }


def cpu_per_request_ms(result: WrkResult) -> float:
    """The gateway process's CPU time per answered request, in ms (its % of one core over the run / req/s)."""
    return result.cpu.get("server", 0) / 100 / result.rps * 1000 if result.rps else 0.0


def report_wait(replicas: int, koppel: Koppel, waited: Koppel) -> dict[str, Any]:
    """What the replica acknowledgement costs: the same load with and without WAIT, side by side."""
    plain, wait = koppel.run, waited.run
    rows = [("Koppel", plain, koppel), (f"Koppel + WAIT {replicas}", wait, waited)]
    print(f"\nreplica acknowledgement ([gateway] wait_replicas = {replicas}, {replicas} replica(s) on this machine)")
    print(f"{'':18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU/req ms':>12}{'Redis CPU %':>12}{'ev/batch':>10}")
    for name, r, k in rows:
        print(
            f"{name:18}{r.rps:>10,.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{cpu_per_request_ms(r):>12.3f}"
            f"{r.cpu.get('redis', 0):>12.0f}{k.events_per_transaction:>10.1f}"
        )
    cpu_ratio = cpu_per_request_ms(wait) / cpu_per_request_ms(plain) if cpu_per_request_ms(plain) else 0.0
    p50x = wait.p50_ms / plain.p50_ms if plain.p50_ms else 0.0
    p99x = wait.p99_ms / plain.p99_ms if plain.p99_ms else 0.0
    rps = wait.rps / plain.rps if plain.rps else 0.0
    print(f"{'with/without':18}{rps:>9.2f}x{p50x:>8.2f}x{p99x:>8.2f}x{cpu_ratio:>11.2f}x")
    print(
        f"not acknowledged by the replica within the timeout (answered 503, stored): {waited.not_acknowledged:,} "
        f"of {waited.answered_202 + waited.not_acknowledged:,} deliveries"
    )
    return {
        "replicas": replicas,
        "run": asdict(wait),
        "events_per_transaction": waited.events_per_transaction,
        "cpu_per_request_ms": {"without": cpu_per_request_ms(plain), "with": cpu_per_request_ms(wait)},
        "ratios": {"rps": rps, "p50": p50x, "p99": p99x, "cpu_per_request": cpu_ratio},
        "not_acknowledged": waited.not_acknowledged,
    }


def print_profile(profile: dict[str, Any], mode: str) -> None:
    what = "the thread holding the GIL" if mode == "gil" else "every active thread"
    print(f"\nprofile of the gateway under load (py-spy: {what}; {profile['samples']:,} samples; % of all samples)")
    for thread, data in profile["threads"].items():
        print(f"  {thread}: {data['share']}%")
        print("    self:      " + "; ".join(f"{name} {share}" for name, share in data["self"][:12]))
        print("    inclusive: " + "; ".join(f"{name} {share}" for name, share in data["inclusive"][:22]))


def resolved_loop(loop: str) -> str:
    if loop == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return loop


def resolved_http(http: str) -> str:
    if http == "auto":
        return "httptools" if importlib.util.find_spec("httptools") else "h11"
    return http


KOPPEL_HTTP = "gateway.limits:LimitedHttpToolsProtocol"
"""The protocol `koppel serve` runs (gateway/limits.py: uvicorn's httptools protocol with request limits)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/ingest/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("-t", "--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("-c", "--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("-d", "--duration", type=float, default=10, help="measured seconds per server (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each run (default 2)")
    parser.add_argument(
        "--max-rate",
        type=int,
        default=15_000,
        help="req/s the request files are sized for (default 15000); a Koppel run that exhausts them fails",
    )
    parser.add_argument("--loop", default="auto", help="uvicorn --loop for both servers (default auto: uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http of the no-op server (default auto: httptools)")
    parser.add_argument(
        "--koppel-http",
        default=KOPPEL_HTTP,
        help=f"uvicorn --http of Koppel's gateway (default {KOPPEL_HTTP}, as `koppel serve` serves it)",
    )
    parser.add_argument(
        "--compare-http",
        metavar="HTTP",
        help="also load Koppel served with this uvicorn --http (e.g. httptools: uvicorn's stock protocol, without "
        "Koppel's request limits) and report the CPU per request of the two",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin wrk and the server to separate CPUs (pinned by default when there are 2 or more)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="all",
        choices=["all", "gil"],
        help="sample the gateway with py-spy during its run: every active thread (all, the default) "
        "or only the thread holding the GIL (gil)",
    )
    parser.add_argument(
        "--wait-replicas",
        type=int,
        default=0,
        metavar="N",
        help="also run Koppel with N replicas attached and [gateway] wait_replicas = N (Redis WAIT after each "
        "batch), and compare CPU per request and latency with the run without",
    )
    parser.add_argument(
        "--rate", type=float, default=0, metavar="R",
        help="also offer R deliveries/s (open loop, bench/ingest/paced.py) to the no-op route and to Koppel, each on "
        "a fresh server, and report latency percentiles at that rate (0: off)",
    )  # fmt: skip
    parser.add_argument("--rate-duration", type=float, default=10, help="measured seconds of the --rate runs")
    parser.add_argument("--rate-connections", type=int, default=64, help="connections of the --rate generator")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (request files, logs, Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write ingest-<timestamp>.json")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.connections < args.threads or args.duration <= 0 or args.warmup <= 0:
        parser.error("need threads >= 1, connections >= threads, duration > 0 and warmup > 0")
    if args.rate < 0 or args.rate_duration <= 0 or args.rate_connections < 1:
        parser.error("need --rate >= 0, --rate-duration > 0 and --rate-connections >= 1")
    cpus = sorted(os.sched_getaffinity(0))
    args.pin = args.pin and len(cpus) >= 2
    args.wrk_cpu, args.server_cpu = (cpus[0], cpus[1]) if args.pin else (None, None)
    return args


WORKDIR_PREFIX = "koppel-bench-ingest-"


def remove_stale_workdirs() -> None:
    """Temp dirs (hundreds of MB of requests) left by a driver that was killed outright."""
    for stale in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime < 60:
                continue  # perhaps another driver that has not written its pid yet
        try:
            pid = int((stale / "driver.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):  # no pid file, or its driver is gone
            if not (stale / "keep").exists():
                shutil.rmtree(stale, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    remove_stale_workdirs()

    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        (workdir / "driver.pid").write_text(str(os.getpid()))
        prefixes = generate(workdir, args)
        _, noop = bench_noop(args, workdir, prefixes)
        koppel = bench_koppel(args, workdir, prefixes, args.koppel_http)
        problems = check(noop, koppel)
        waited = (
            bench_koppel(
                args, workdir, prefixes, args.koppel_http, f"koppel-wait{args.wait_replicas}", args.wait_replicas
            )
            if args.wait_replicas
            else None
        )
        if waited is not None:
            problems += [f"with WAIT: {problem}" for problem in check(noop, waited, waited=True)]
        result = report(args, noop, koppel, problems)
        if args.rate > 0:
            result["paced"] = bench_paced(args, workdir)
        if args.compare_http:
            other = bench_koppel(args, workdir, prefixes, args.compare_http, "koppel-compare")
            compared = check(noop, other)
            problems += [f"--compare-http run: {problem}" for problem in compared]
            result["compare"] = compare(args, koppel, other, compared)
            result["problems"], result["ok"] = problems, not problems
        if waited is not None:
            result["wait_replicas"] = report_wait(args.wait_replicas, koppel, waited)
        return result, 0 if not problems else 1

    def profile_stacks(out: Path, workdir: Path) -> None:
        if (workdir / "profile.raw").exists():  # collapsed stacks, for flamegraph.pl or speedscope
            stacks = out.with_suffix(".pyspy.txt")
            shutil.copyfile(workdir / "profile.raw", stacks)
            print(f"profile stacks: {show(stacks)}")

    return run_bench("ingest", body, results=args.results, keep=args.keep, say=say, failures=(BenchFailure,),
                     prefix=WORKDIR_PREFIX, beside=profile_stacks)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
