"""bench/chaos driver: faults and hostile input against the real stack, a table per experiment.

    .venv/bin/python -m bench.chaos [--short] [--only NAME[,NAME…]] [--expect-fixed NAME[,NAME…]]

Each experiment starts what it needs with gateway/stack.py (an embedded Redis of its own, the WooCommerce
and Exact Online sandboxes on threads of this process, the gateway under uvicorn and `koppel worker`
processes), drives it through public interfaces only (HTTP, processes, the CLI, reads of Redis) and
prints a table (bench/chaos/report.py names the columns). Experiments:

  redis      a webhook stream (4 orders/s) with the embedded Redis stopped for 5 s in the middle
  kills      orders with busy workers SIGKILLed (0.5 s apart at least, each restarted)
  replay     failed jobs replayed by K concurrent `koppel replay --all`
  crosssite  cross-site form posts (Origin: http://evil.example) and GETs on state-changing operator routes
  slow       a 64 MB header (1 and 4 at once), slowloris, a slow body, a connection flood
  oauth      an OAuth consent callback replayed with the same state, and one without the browser's cookie
  hostile    signed bodies with a lone surrogate and nesting 300 deep

Every experiment checks its invariants (nothing acknowledged lost, nothing booked twice, no 5xx for hostile
input, no operator state changed cross-site, …) and says PASS or FAIL. The exit status is 1 when an
experiment in `--expect-fixed` (default: every experiment run) failed or could not run; results are also
written to bench/results/chaos-<UTC timestamp>.json. Loopback only; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry

from bench.chaos.report import Experiment, Row, delivery_row, exit_status, peak_mb, status_counts, table
from bench.common import RESULTS, run_bench
from connectors.woocommerce.wordpress import webhook_signature
from gateway import keys
from gateway.config import GatewaySettings
from gateway.ingest import PUMP_GROUP, find_in_inbox, inbox_key, resolve_job_id
from gateway.stack import Stack, StackOptions

ADMIN_ENV = "KOPPEL_CHAOS_ADMIN_TOKEN"
MISSING_SKU = "KOP-MOK-GROEN"
"""Left out of Exact's items where an experiment needs failed jobs: orders with it fail, naming it."""
SEED = 4242
"""Orders of this seed include some with `MISSING_SKU` and some without."""
EVIL = "http://evil.example"
PAGE = os.sysconf("SC_PAGE_SIZE")
RERUN_S = 15.0
"""A job a killed worker held must be done (finished or failed) within this many seconds of the kill: RQ's
heartbeat and the recovery's ~6 s, plus the job itself on a machine busy restarting workers."""
STILL_S = 5.0
"""Idle this long with no new booking: what is not booked yet will not be (nothing left to do it)."""


def say(message: str) -> None:
    print(f"bench/chaos: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    """How big and how long each experiment is (`--short`: small and quick)."""

    outage_stream_s: float = 10.0
    outage_s: float = 5.0
    rate: float = 4.0
    kill_orders: int = 200
    kill_window_s: float = 12.0
    replay_orders: int = 60
    replays: int = 20
    crosssite_orders: int = 12
    slow_s: float = 40.0
    """How long slowloris and the slow body dribble before the bench calls them not cut off."""
    flood: int = 1200
    settle_s: float = 90.0
    parallel_headers: int = 4
    limits: dict[str, Any] = field(default_factory=dict)
    """`[gateway]` request limits set where the gateway knows them (`known_settings`); none: its defaults."""


FULL = Sizes()
SHORT = Sizes(outage_stream_s=8.0, outage_s=5.0, kill_orders=50, kill_window_s=5.0, replay_orders=16, replays=5,
              crosssite_orders=8, slow_s=10.0, flood=300, settle_s=20.0, parallel_headers=2,
              limits={"header_timeout_seconds": 3, "body_timeout_seconds": 3, "max_connections": 200})  # fmt: skip


# -- memory ---------------------------------------------------------------------------------------------


def rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class Sampler:
    """Samples the RSS of the stack's gateway and of its workers (summed) every `interval` s on a thread."""

    def __init__(self, stack: Stack, interval: float = 0.05) -> None:
        self.stack = stack
        self.interval = interval
        self.gateway: list[float] = []
        self.workers: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            gateway = self.stack.gateway
            if gateway is not None:
                self.gateway.append(rss(gateway.pid))
            self.workers.append(sum(rss(proc.pid) for proc in list(self.stack.workers)))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def fill(self, row: Row, since: int = 0) -> Row:
        """The row's peak memory from the samples taken since sample number `since`."""
        row.gateway_mb = peak_mb(self.gateway[since:] or self.gateway[-1:])  # a case quicker than a sample: the last
        row.workers_mb = peak_mb(self.workers[since:] or self.workers[-1:])
        return row

    @property
    def mark(self) -> int:
        return len(self.gateway)


# -- reading the stack ------------------------------------------------------------------------------------


def booked_refs(stack: Stack) -> list[str]:
    """Exact's sales orders' YourRef (the shop's order number, here its id), one per sales order."""
    return [str(row.get("YourRef")) for row in stack.exact_rows("salesorder/SalesOrders")]


def order_deliveries(stack: Stack) -> list[dict[str, Any]]:
    return [row for row in stack.deliveries() if str(row.get("topic", "")).startswith("order.")]


def failed_count(stack: Stack) -> int:
    return int(FailedJobRegistry(stack.options.queue, connection=stack.connection).count)


def revive(stack: Stack) -> int:
    """Replace workers that exited on their own; how many."""
    dead = [proc for proc in stack.workers if proc.poll() is not None]
    for proc in dead:
        say(f"worker {proc.pid} exited with status {proc.returncode}; starting another")
        stack.workers.remove(proc)
        stack.start_worker()
    return len(dead)


def quiet(stack: Stack) -> bool:
    """Nothing left to do, as far as Redis says (False while Redis does not answer)."""
    try:
        return stack.idle()
    except redis.RedisError:
        return False


def wait_booked(stack: Stack, ids: list[str], timeout: float, *, tick: Callable[[], None] | None = None) -> float:
    """Wait until every order of `ids` is booked in Exact and the pipeline is idle (or idle with nothing booked
    for `STILL_S` s: the rest will not come), or `timeout` s. The seconds waited."""
    started = changed = time.monotonic()
    wanted = set(ids)
    seen: set[str] = set()
    while time.monotonic() - started < timeout:
        if tick is not None:
            tick()
        booked = set(booked_refs(stack))
        if booked != seen:
            seen, changed = booked, time.monotonic()
        idle = quiet(stack)
        if idle and (wanted <= booked or time.monotonic() - changed > STILL_S):
            break
        time.sleep(0.25)
    return time.monotonic() - started


def workers_up(stack: Stack, timeout: float = 30) -> None:
    """Wait until every worker process has registered with RQ (started, not still importing): a worker that
    starts while Redis is away exits naming it, which is not what the outage experiment is about."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = {proc.pid for proc in stack.workers if proc.poll() is None}
        if live <= {worker.pid for worker in Worker.all(connection=stack.connection)}:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the workers did not register with RQ within {timeout:g} s")


def wait_deliveries_sent(stack: Stack, timeout: float = 20) -> None:
    """Wait until the shop's delivery log stops growing for a second (its queue sent)."""
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(stack.deliveries())
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since > 1.0:
            return
        time.sleep(0.1)


# -- stacks ---------------------------------------------------------------------------------------------


def known_settings(wanted: dict[str, Any]) -> dict[str, Any]:
    """Those of `wanted` that the gateway's config knows (`[gateway]` refuses unknown names): request limits
    that a Koppel without them cannot take."""
    return {name: value for name, value in wanted.items() if name in GatewaySettings.model_fields}


@contextmanager
def stack_for(workdir: Path, name: str, sizes: Sizes, *, workers: int = 2, missing: bool = False) -> Iterator[Stack]:
    gateway = {"admin_token": f"env:{ADMIN_ENV}", **known_settings(sizes.limits)}
    options = StackOptions(data_dir=workdir / name, workers=workers, exact_rate_limits=False,
                           missing_skus=(MISSING_SKU,) if missing else (), gateway=gateway)  # fmt: skip
    started = time.monotonic()
    with Stack(options) as stack:
        say(f"{name}: stack started in {time.monotonic() - started:.1f} s (gateway {stack.gateway_url})")
        yield stack


def admin_token() -> str:
    return os.environ[ADMIN_ENV]


def basic() -> str:
    return "Basic " + base64.b64encode(f"admin:{admin_token()}".encode()).decode()


# -- 1. Redis outage -----------------------------------------------------------------------------------


def exp_redis(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    assert stack.redis is not None and stack.redis.embedded is not None, "needs the stack's embedded Redis"
    embedded = stack.redis.embedded
    placed: list[str] = []
    exits = 0
    outage: dict[str, float] = {}
    down_at = (sizes.outage_stream_s - sizes.outage_s) / 2

    def cut(elapsed: float) -> None:
        """Stop Redis once `down_at` s have passed, start it again `outage_s` s later. From this (the main)
        thread: the embedded Redis dies with the thread that started it (PR_SET_PDEATHSIG)."""
        if "down" not in outage and elapsed >= down_at:
            outage["down"] = time.monotonic()
            embedded.stop()
        elif "down" in outage and "up" not in outage and elapsed >= down_at + sizes.outage_s:
            embedded.start()
            outage["up"] = time.monotonic()

    workers_up(stack)
    with Sampler(stack) as sampler:
        started = time.monotonic()
        count = round(sizes.outage_stream_s * sizes.rate)
        for n in range(count):
            while (delay := started + n / sizes.rate - time.monotonic()) > 0:
                cut(time.monotonic() - started)
                time.sleep(min(delay, 0.05))
            cut(time.monotonic() - started)
            placed += stack.place_orders(1)
        while "up" not in outage:
            cut(time.monotonic() - started)
            time.sleep(0.05)
        wait_deliveries_sent(stack)
        exits += revive(stack)

        def tick() -> None:
            nonlocal exits
            exits += revive(stack)

        waited = wait_booked(stack, placed, sizes.settle_s, tick=tick)
        deliveries = order_deliveries(stack)
        booked = booked_refs(stack)
        row = sampler.fill(delivery_row(f"{len(placed)} orders at {sizes.rate:g}/s, Redis down {sizes.outage_s:g} s",
                                        deliveries, booked))  # fmt: skip
    exp.rows.append(row)
    hooks = list(stack.woo_client().webhooks())
    states = {str(h["topic"]): str(h["status"]) for h in hooks}
    never = [oid for oid in placed if oid not in set(booked)]
    down, up = outage["down"] - started, outage["up"] - started
    after = [d for d in deliveries if d.get("status_code") is not None]
    exp.notes += [
        f"Redis stopped at +{down:.1f} s, answering again at +{up:.1f} s; waited {waited:.0f} s for the bookings",
        f"orders placed {len(placed)}, booked {len(placed) - len(never)}, never booked {len(never)}",
        f"deliveries by status: {dict(sorted(_by_status(after).items()))}",
        f"the shop's webhooks at the end: {states}",
        f"workers that exited on their own (then restarted by the bench): {exits}",
    ]
    if row.lost:
        exp.broken.append(f"{row.lost} acknowledged order(s) never booked")
    if row.dup:
        exp.broken.append(f"{row.dup} order(s) booked twice")
    if never:
        exp.broken.append(f"{len(never)} of {len(placed)} orders placed never booked")
    if any(status != "active" for status in states.values()):
        exp.broken.append(f"webhooks no longer active: {states}")
    if exits:
        exp.broken.append(f"{exits} worker(s) exited during the outage")


def _by_status(deliveries: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in deliveries:
        key = str(row.get("status_code") or row.get("error") or "none")
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- 2. Worker kills -----------------------------------------------------------------------------------


def exp_kills(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    queue = Queue(stack.options.queue, connection=stack.connection)
    taken: dict[str, float] = {}
    """Job id → when the worker holding it (or one that had just taken it) was last killed."""
    kills_of: dict[str, int] = {}
    """Job id → how many of its workers were killed."""
    again: dict[str, float] = {}
    """Job id → seconds from that kill to the job finished or failed."""
    kills = exits = 0

    stream = inbox_key(stack.options.queue)

    def in_flight(pid: int) -> list[str]:
        """The work worker `pid` holds: its RQ job, jobs between queue and worker, and the inbox entries its pump
        read and has not finished (the direct path runs them without a job: `[gateway] direct_events`)."""
        ids: list[str] = []
        for worker in Worker.all(connection=stack.connection):
            if worker.pid == pid and (job_id := worker.get_current_job_id()):
                ids.append(job_id)
        between = stack.connection.lrange(queue.intermediate_queue_key, 0, -1)
        ids += [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in between]
        try:
            consumers = stack.connection.xinfo_consumers(stream, PUMP_GROUP)
        except redis.ResponseError:  # no group yet
            return ids
        for consumer in consumers:
            name = keys.text(consumer["name"])
            if name.split(":")[1:2] != [str(pid)] or not consumer["pending"]:
                continue
            pending = stack.connection.xpending_range(stream, PUMP_GROUP, "-", "+", 100, consumername=name)
            for entry in pending:
                found = stack.connection.xrange(stream, entry["message_id"], entry["message_id"])
                ids += [keys.text(fields[b"id"]) for _, fields in found if b"id" in fields]
        return ids

    def busy_worker(within: float) -> tuple[subprocess.Popen[bytes] | None, list[str]]:
        """A live worker that holds work (`in_flight`), looked for during `within` s (None: none did), and its ids."""
        deadline = time.monotonic() + within
        while True:
            live = [proc for proc in stack.workers if proc.poll() is None]
            for proc in live:
                held = in_flight(proc.pid)
                if held:
                    return proc, held
            if time.monotonic() > deadline:
                return None, []
            time.sleep(0.02)

    def tick() -> None:
        nonlocal exits
        exits += revive(stack)
        now = time.monotonic()
        for job_id, killed_at in list(taken.items()):
            if job_id in again:
                continue
            ran_in = resolve_job_id(stack.connection, job_id)  # an event merged into another's run
            if stack.connection.exists(keys.done(ran_in)):  # run by a pump, without an RQ job
                again[job_id] = now - killed_at
                continue
            status = stack.connection.hget(f"rq:job:{ran_in}", "status")
            in_inbox = status is None and find_in_inbox(stack.connection, stack.options.queue, job_id) is not None
            if not in_inbox and (status is None or status in (b"finished", b"failed")):
                again[job_id] = now - killed_at

    with Sampler(stack) as sampler:
        placed = stack.place_orders(sizes.kill_orders, seed=SEED)
        started = time.monotonic()
        while time.monotonic() - started < sizes.kill_window_s:
            time.sleep(0.5)
            victim, held = busy_worker(3.0)
            if victim is not None:
                stack.kill_worker(victim)
                kills += 1
                killed_at = time.monotonic()
                for job_id in held:
                    taken[job_id] = killed_at  # from its latest kill: a job killed again starts over
                    kills_of[job_id] = kills_of.get(job_id, 0) + 1
                stack.start_worker()
            tick()
        waited = wait_booked(stack, placed, sizes.settle_s, tick=tick)
        tick()
        row = sampler.fill(delivery_row(f"{len(placed)} orders, {kills} kills", order_deliveries(stack),
                                        booked_refs(stack)))  # fmt: skip
    exp.rows.append(row)
    booked = set(booked_refs(stack))
    never = [oid for oid in placed if oid not in booked]
    waits = sorted(again.values())
    slow = [w for w in waits if w > RERUN_S]
    pending = len(taken) - len(again)
    exp.notes += [
        f"{kills} SIGKILLs over {sizes.kill_window_s:g} s, each worker restarted; waited {waited:.0f} s for the "
        f"bookings; orders never booked: {len(never)}",
        f"jobs held by a killed worker: {len(taken)} ({sum(n > 1 for n in kills_of.values())} of them killed "
        "more than once); done (finished or failed) after their latest kill (s): "
        + (
            f"max {waits[-1]:.1f}, median {statistics.median(waits):.1f}, over {RERUN_S:g} s: {len(slow)}"
            if waits
            else "-"
        )
        + (f"; still not done at the end: {pending}" if pending else ""),
        f"workers that exited on their own: {exits}",
    ]
    if row.lost:
        exp.broken.append(f"{row.lost} acknowledged order(s) never booked")
    if row.dup:
        exp.broken.append(f"{row.dup} order(s) booked twice")
    if not kills:
        exp.broken.append("no worker was seen holding work, so none was killed: the experiment proved nothing")
    if slow or pending:
        exp.broken.append(f"{len(slow) + pending} killed worker's job(s) not run again within {RERUN_S:g} s")


# -- 3. Replay storm -----------------------------------------------------------------------------------


def exp_replay(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    with Sampler(stack) as sampler:
        placed = stack.place_orders(sizes.replay_orders, seed=SEED)
        settle_all(stack, placed, sizes.settle_s)
        failed = failed_count(stack)
        stack.add_exact_items([MISSING_SKU])
        with ThreadPoolExecutor(sizes.replays) as pool:
            runs = list(pool.map(lambda _: stack.cli("replay", "--all"), range(sizes.replays)))
        requeued = sum(int(m.group(1)) for run in runs for m in re.finditer(r"requeued (\d+)", run.stdout))
        waited = wait_booked(stack, placed, sizes.settle_s)
        row = sampler.fill(delivery_row(f"{len(placed)} orders, {failed} failed, {sizes.replays} replays",
                                        order_deliveries(stack), booked_refs(stack)))  # fmt: skip
    exp.rows.append(row)
    booked = set(booked_refs(stack))
    never = [oid for oid in placed if oid not in booked]
    codes = sorted({run.returncode for run in runs})
    exp.notes += [
        f"failed jobs before the storm: {failed}; {sizes.replays} concurrent `koppel replay --all` (exit "
        f"statuses {codes}) requeued {requeued} in all; waited {waited:.0f} s; orders never booked: {len(never)}",
    ]
    if not failed:
        exp.error = f"no failed jobs to replay (orders of seed {SEED} should include {MISSING_SKU})"
    if row.lost or never:
        exp.broken.append(f"{max(row.lost, len(never))} order(s) never booked")
    if row.dup:
        exp.broken.append(f"{row.dup} order(s) booked twice")


# -- 4. Cross-site operator requests -------------------------------------------------------------------


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    return found.group(1) if found else ""


def console_login(stack: Stack, client: httpx.Client) -> bool:
    """Log `client` in to the console (a session cookie), as a browser does; whether it got a session."""
    page = client.get(f"{stack.gateway_url}/console/login")
    form = {"token": admin_token(), **({"csrf": t} if (t := csrf_of(page.text)) else {})}
    client.post(f"{stack.gateway_url}/console/login", data=form)
    return bool(client.cookies)


def settle_all(stack: Stack, placed: list[str], timeout: float) -> None:
    """Wait until the shop sent its deliveries, every order of `placed` has an outcome (booked, failed,
    skipped) and the pipeline is idle, or `timeout` s."""
    wait_deliveries_sent(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcomes = stack.outcomes(placed)
        if all(o.outcome != "pending" for o in outcomes.values()) and quiet(stack):
            return
        time.sleep(0.25)


def requeued_by(response: httpx.Response) -> int:
    """The jobs a 2xx answer of rq-dashboard's requeue route says it requeued (0 for any other answer)."""
    if not 200 <= response.status_code < 300:
        return 0
    try:
        count = response.json().get("count", 0)
    except (ValueError, AttributeError):
        return 0
    return count if isinstance(count, int) else 0


def exp_crosssite(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    queue = stack.options.queue
    cross = {"Origin": EVIL, "Referer": f"{EVIL}/", "Sec-Fetch-Site": "cross-site",
             "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    with Sampler(stack) as sampler:
        placed = stack.place_orders(sizes.crosssite_orders, seed=SEED)
        settle_all(stack, placed, sizes.settle_s)
        http = httpx.Client(timeout=30, trust_env=False)
        browser = httpx.Client(timeout=30, trust_env=False)
        logged_in = console_login(stack, browser)

        def probe(case: str, method: str, path: str, headers: dict[str, str], client: httpx.Client = http) -> None:
            before = failed_count(stack)
            mark = sampler.mark
            response = client.request(method, f"{stack.gateway_url}{path}", headers=headers, content="x=1")
            time.sleep(0.2)
            after = failed_count(stack)
            gone = max(before - after, 0)
            _, acked, server, other = status_counts([response.status_code])
            requeued = requeued_by(response)
            changed = gone > 0 or requeued > 0 or (response.status_code < 400 and "/console/" in path)
            row = Row(case, 1, acked, gone, 0, server, other, note=f"answered {response.status_code}; failed jobs "
                      f"{before} → {after}" + (f", {requeued} requeued" if requeued else "")
                      + ("; STATE CHANGED" if changed else ""))  # fmt: skip
            exp.rows.append(sampler.fill(row, mark))
            if changed:
                exp.broken.append(f"{case}: {method} answered {response.status_code}, failed jobs {before} → {after}"
                                  + (f", {requeued} requeued" if requeued else ""))  # fmt: skip
            if gone or requeued:  # requeued events fail again: let them, so the next probe has jobs to lose
                settle_all(stack, placed, 15)

        if failed_count(stack) == 0:
            exp.error = f"no failed jobs to lose (orders of seed {SEED} should include {MISSING_SKU})"
            return
        probe("GET requeue (Basic)", "GET", f"/ops/rq/requeue/{queue}", {"Authorization": basic()})
        probe("cross-site POST empty failed (Basic)", "POST", f"/ops/rq/queue/{queue}/failed/empty",
              {**cross, "Authorization": basic()})  # fmt: skip
        if failed_count(stack) == 0:  # the previous probe emptied it: make new failed jobs for the next
            placed += stack.place_orders(sizes.crosssite_orders, seed=SEED + 1000)
            settle_all(stack, placed, sizes.settle_s)
        probe("cross-site POST requeue (Bearer)", "POST", f"/ops/rq/requeue/{queue}",
              {**cross, "Authorization": f"Bearer {admin_token()}"})  # fmt: skip
        if logged_in:  # a browser with a console session (the operator pages' login once #13 is fixed)
            probe("GET requeue (cookie)", "GET", f"/ops/rq/requeue/{queue}", {}, browser)
            probe(
                "cross-site POST empty failed (cookie)", "POST", f"/ops/rq/queue/{queue}/failed/empty", cross, browser
            )
            integration = stack.pair.integration
            probe("cross-site POST console switch (cookie)", "POST", f"/console/integrations/{integration}/switch",
                  cross, browser)  # fmt: skip
            probe("cross-site POST console logout (cookie)", "POST", "/console/logout", cross, browser)
        else:
            exp.notes.append("could not log in to the console: its cross-site POSTs were not tried")
        http.close()
        browser.close()
    exp.notes.append(
        "lost = accepted events (failed jobs) deleted by the request; a requeue that answered "
        "2xx changed the queue too (the jobs run again)"
    )


# -- 5. Slow and huge requests -------------------------------------------------------------------------


def _host_port(stack: Stack) -> tuple[str, int]:
    return "127.0.0.1", stack.gateway_port


def read_status(sock: socket.socket, timeout: float) -> int | None:
    """The status code of the answer on `sock` (None: closed or reset without one, or no answer in time)."""
    sock.settimeout(timeout)
    try:
        head = sock.recv(64)
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def huge_header(stack: Stack, size: int) -> int | None:
    """A POST to the webhook route with one header of `size` bytes; its status (None: cut off)."""
    try:
        with socket.create_connection(_host_port(stack), timeout=30) as sock:
            sock.sendall(b"POST /webhooks/webshop HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            chunk = b"a" * 2**20
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\nContent-Length: 2\r\n\r\n{}")
            return read_status(sock, 30)
    except OSError:
        return None


def dribble(stack: Stack, seconds: float, *, body: bool) -> tuple[int | None, float | None]:
    """Send a request one byte a second (headers, or with `body` the body) for up to `seconds`; the status
    answered, and after how many seconds the gateway cut the connection (None: it did not)."""
    started = time.monotonic()
    try:
        with socket.create_connection(_host_port(stack), timeout=5) as sock:
            if body:
                sock.sendall(b"POST /webhooks/webshop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                             b"\r\nContent-Length: 100000\r\n\r\n")  # fmt: skip
            else:
                sock.sendall(b"POST /webhooks/webshop HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while time.monotonic() - started < seconds:
                sock.setblocking(False)
                try:
                    answer = sock.recv(64)
                except BlockingIOError:
                    answer = None
                except OSError:
                    return None, time.monotonic() - started
                sock.setblocking(True)
                if answer is not None:
                    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
                    return (int(match.group(1)) if match else None), time.monotonic() - started
                sock.sendall(b"a" if body else b"X")
                time.sleep(1.0)
    except OSError:
        return None, time.monotonic() - started
    return None, None


def exp_slow(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    big = 64 * 2**20
    with Sampler(stack, interval=0.02) as sampler:
        time.sleep(0.3)
        baseline = peak_mb(sampler.gateway)
        for parallel in (1, sizes.parallel_headers):
            mark = sampler.mark
            started = time.monotonic()
            with ThreadPoolExecutor(parallel) as pool:
                statuses = list(pool.map(lambda _: huge_header(stack, big), range(parallel)))
            took = time.monotonic() - started
            time.sleep(0.3)
            sent, acked, server, other = status_counts(statuses)
            row = sampler.fill(Row(f"64 MB header x{parallel}", sent, acked, 0, 0, server, other,
                                   note=f"answers {statuses} (None: cut off) after {took:.1f} s"), mark)  # fmt: skip
            exp.rows.append(row)
            if acked or server or row.gateway_mb - baseline > 32:
                exp.broken.append(f"64 MB header x{parallel}: answers {statuses}, gateway peak {row.gateway_mb:.0f} MB "
                                  f"(at rest {baseline:.0f} MB)")  # fmt: skip
        mark = sampler.mark
        with ThreadPoolExecutor(2) as pool:
            loris, slowbody = pool.map(lambda body: dribble(stack, sizes.slow_s, body=body), (False, True))
        for case, (status, cut) in (("slowloris (headers 1 B/s)", loris), ("slow body (1 B/s)", slowbody)):
            _, acked, server, other = status_counts([status])
            verdict = f"cut off after {cut:.1f} s, answer {status}" if cut is not None else \
                f"not cut off in {sizes.slow_s:g} s"  # fmt: skip
            exp.rows.append(sampler.fill(Row(case, 1, acked, 0, 0, server, other, note=verdict), mark))
            if cut is None or server:
                exp.broken.append(f"{case}: {verdict}")
        mark = sampler.mark
        opened: list[socket.socket] = []
        try:
            for _ in range(sizes.flood):
                try:
                    opened.append(socket.create_connection(_host_port(stack), timeout=2))
                except OSError:
                    break
            started = time.monotonic()
            try:
                during = httpx.get(f"{stack.gateway_url}/healthz", timeout=5, trust_env=False).status_code
            except httpx.HTTPError as exc:
                during = None
                say(f"/healthz during the flood: {exc.__class__.__name__}")
            took = time.monotonic() - started
        finally:
            for sock in opened:
                sock.close()
        time.sleep(0.5)
        try:
            after = httpx.get(f"{stack.gateway_url}/healthz", timeout=5, trust_env=False).status_code
        except httpx.HTTPError:
            after = None
        _, acked, server, other = status_counts([during])
        exp.rows.append(sampler.fill(Row(f"flood of {sizes.flood} idle connections", len(opened), acked, 0, 0, server,
                                         other, note=f"{len(opened)} opened; /healthz during the flood: {during} "
                                         f"in {took:.1f} s; after: {after}"), mark))  # fmt: skip
        if after != 200:
            exp.broken.append(f"after a flood of {len(opened)} connections /healthz answered {after}")
    limits = known_settings(sizes.limits)
    shown = ", ".join(f"{k} {v}" for k, v in limits.items()) or "none (the gateway's defaults)"
    exp.notes.append(f"gateway at rest: {baseline:.0f} MB; request limits set by the bench: {shown}")


# -- 6. OAuth state reuse ------------------------------------------------------------------------------


def exp_oauth(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    browser = httpx.Client(timeout=30, trust_env=False)
    """The operator's browser: its cookies (the console session, the consent's own) kept."""
    stranger = httpx.Client(timeout=30, trust_env=False)
    sampler = Sampler(stack)

    def consent() -> str:
        """Start the consent in the console as the browser; the authorize URL at Exact (with its state)."""
        page = browser.get(f"{stack.gateway_url}/console/")
        answer = browser.post(f"{stack.gateway_url}/console/connect/exact", data={"csrf": csrf_of(page.text)})
        if answer.status_code not in (302, 303, 307) or "location" not in answer.headers:
            raise RuntimeError(f"the console's connect answered {answer.status_code}, not a redirect")
        return to_exact(str(answer.headers["location"]))

    def to_exact(location: str) -> str:
        """Follow the browser's redirects to Exact's authorize URL. A step on another host than Exact's is
        the gateway's (its public address is the redirect URI's host, which the stack cannot listen on)."""
        exact = urlsplit(stack.url("exact")).netloc
        for _ in range(5):
            step = urlsplit(location)
            if step.netloc == exact:
                return location
            answer = browser.get(f"{stack.gateway_url}{step.path}" + (f"?{step.query}" if step.query else ""))
            if answer.status_code not in (302, 303, 307) or "location" not in answer.headers:
                raise RuntimeError(f"{step.path} answered {answer.status_code}, not a redirect on to Exact")
            location = urljoin(f"{stack.gateway_url}{step.path}", str(answer.headers["location"]))
        raise RuntimeError("more than 5 redirects before Exact's consent")

    def approve(authorize: str) -> str:
        """Exact approves at once; the callback's path and query as the browser would be sent to it."""
        answer = stack.http.get(authorize)
        if answer.status_code != 302:
            raise RuntimeError(f"the Exact sandbox's consent answered {answer.status_code}")
        target = urlsplit(answer.headers["location"])
        return f"{target.path}?{target.query}"

    def callback(case: str, path: str, client: httpx.Client, *, refused: bool) -> None:
        mark = sampler.mark
        answer = client.get(f"{stack.gateway_url}{path}")
        _, acked, server, other = status_counts([answer.status_code])
        exp.rows.append(sampler.fill(Row(case, 1, acked, 0, 0, server, other, note=f"answered {answer.status_code}: "
                                         f"{answer.text.strip()[:90]}"), mark))  # fmt: skip
        if not refused and not acked:
            raise RuntimeError(f"the consent's first callback answered {answer.status_code}: no consent to reuse")
        if refused and answer.status_code < 400:
            exp.broken.append(f"{case}: answered {answer.status_code}, the tokens replaced")
        if server:
            exp.broken.append(f"{case}: answered {answer.status_code}")

    with sampler, browser, stranger:
        if not console_login(stack, browser):
            raise RuntimeError("could not log in to the console")
        authorize = consent()
        first = approve(authorize)
        callback("callback, first use", first, browser, refused=False)
        state = parse_qs(urlsplit(first).query)["state"][0]
        again = approve(authorize)  # the same state, a new code
        assert parse_qs(urlsplit(again).query)["state"][0] == state
        callback("same state again, new code", again, browser, refused=True)
        other = approve(consent())
        callback("callback without the browser's cookie", other, stranger, refused=True)


# -- 7. Hostile bodies ---------------------------------------------------------------------------------


def exp_hostile(stack: Stack, sizes: Sizes, exp: Experiment) -> None:
    secret = stack.env["KOPPEL_STACK_WC_SECRET"]
    hook_id = str(next(iter(stack.woo_client().webhooks()))["id"])
    bodies = {
        "lone surrogate \\ud800": b'{"id": 900001, "status": "processing", "customer_note": "\\ud800"}',
        "nesting 300 deep": b'{"id": 900002, "status": "processing", "meta_data": ' + b"[" * 300 + b"]" * 300 + b"}",
        "nesting 300 deep (objects)": b'{"id": 900003, "x": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}",
    }
    with Sampler(stack) as sampler, httpx.Client(timeout=30, trust_env=False) as http:
        for case, body in bodies.items():
            mark = sampler.mark
            headers = {"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.created",
                       "X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": "created",
                       "X-WC-Webhook-ID": hook_id, "X-WC-Webhook-Source": "http://127.0.0.1/",
                       "X-WC-Webhook-Signature": webhook_signature(body, secret)}  # fmt: skip
            answer = http.post(f"{stack.gateway_url}/webhooks/webshop", content=body, headers=headers)
            _, acked, server, other = status_counts([answer.status_code])
            exp.rows.append(
                sampler.fill(
                    Row(
                        f"signed, {case}",
                        1,
                        acked,
                        0,
                        0,
                        server,
                        other,
                        note=f"answered {answer.status_code}: {answer.text.strip()[:80]}",
                    ),
                    mark,
                )
            )
            if server:
                exp.broken.append(f"signed body with {case}: answered {answer.status_code}")


# -- the run ---------------------------------------------------------------------------------------------


EXPERIMENTS: dict[str, tuple[str, Callable[[Stack, Sizes, Experiment], None], dict[str, Any]]] = {
    "redis": ("Redis outage during a webhook stream", exp_redis, {}),
    "kills": ("busy workers SIGKILLed every 0.5 s or so", exp_kills, {}),
    "replay": ("replay storm", exp_replay, {"missing": True}),
    "crosssite": ("cross-site operator requests", exp_crosssite, {"missing": True, "shared": True}),
    "slow": ("slow and huge requests", exp_slow, {"missing": True, "shared": True}),
    "hostile": ("hostile bodies, signed", exp_hostile, {"missing": True, "shared": True}),
    "oauth": ("OAuth state reuse", exp_oauth, {"missing": True, "shared": True}),
}
"""Name → (title, run, stack wishes). The `shared` ones run on one stack, one after another."""


def run_all(names: list[str], sizes: Sizes, workdir: Path) -> list[Experiment]:
    done: list[Experiment] = []
    shared = [n for n in names if EXPERIMENTS[n][2].get("shared")]
    own = [n for n in names if n not in shared]

    def attempt(name: str, stack: Stack) -> None:
        title, run, _ = EXPERIMENTS[name]
        exp = Experiment(name, title)
        started = time.monotonic()
        say(f"{name}: {title}")
        try:
            run(stack, sizes, exp)
        except Exception as exc:  # the harness failed: say so, run the next one
            exp.error = f"{exc.__class__.__name__}: {exc}"
        exp.seconds = time.monotonic() - started
        print(table(exp) + "\n", flush=True)
        done.append(exp)

    for name in own:
        try:
            with stack_for(
                workdir, name, sizes, **{k: v for k, v in EXPERIMENTS[name][2].items() if k != "shared"}
            ) as stack:
                attempt(name, stack)
        except RuntimeError as exc:  # the stack did not start
            done.append(Experiment(name, EXPERIMENTS[name][0], error=f"the stack did not start: {exc}"))
    if shared:
        try:
            with stack_for(workdir, "shared", sizes, missing=True) as stack:
                for name in shared:
                    attempt(name, stack)
        except RuntimeError as exc:
            done += [Experiment(n, EXPERIMENTS[n][0], error=f"the stack did not start: {exc}") for n in shared]
    return done


def names_of(value: str | None, parser: argparse.ArgumentParser, flag: str) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"{flag}: no experiment {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chaos/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="small counts and short waits (CI)")
    parser.add_argument("--only", help=f"comma-separated experiments to run, of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--expect-fixed", help="comma-separated experiments whose FAIL makes the exit status 1 "
                        "(default: every experiment run; 'none': report only)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (the stacks' logs, Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write chaos-<timestamp>.json")
    args = parser.parse_args(argv)
    names = names_of(args.only, parser, "--only") or list(EXPERIMENTS)
    enforce: set[str] | None = None
    if args.expect_fixed is not None:
        enforce = (
            set() if args.expect_fixed == "none" else set(names_of(args.expect_fixed, parser, "--expect-fixed") or [])
        )
    sizes = SHORT if args.short else FULL
    os.environ.setdefault(ADMIN_ENV, base64.urlsafe_b64encode(os.urandom(24)).decode())
    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        started = time.monotonic()
        experiments = run_all(names, sizes, workdir)
        total = time.monotonic() - started
        print("summary: " + ", ".join(f"{e.name} {e.verdict}" for e in experiments) + f" ({total:.0f} s)")
        result = {"short": args.short, "seconds": round(total, 1), "sizes": asdict(sizes),
                  "experiments": [asdict(e) | {"verdict": e.verdict} for e in experiments]}  # fmt: skip
        return result, exit_status(experiments, enforce)

    return run_bench("chaos", body, results=args.results, keep=args.keep, say=say, failures=())


__all__ = ["EXPERIMENTS", "main"]
