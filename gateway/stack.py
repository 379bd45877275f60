"""A whole Koppel on one machine: Redis, a pair's sandboxes, the gateway and workers, wired as in production.

The main job (`koppel demo`), its other pairs (`--pair`), the end-to-end tests and `bench/e2e` all run
this one stack; what runs is a pair's description (gateway/pairs.py, default the WooCommerce ⇄ Exact
Online pair):

* Redis: the given URL, else an embedded `redis-server` of the stack's own (data under `data_dir`),
  emptied at start: Koppel's state there (ledger, caches, tokens) belongs to sandboxes that live
  only as long as the stack, so it must not meet a user's Redis or an earlier run's state. What an
  earlier stack left in `data_dir` (its Redis files, logs and config) is removed at start
  (`clear_data_dir`); anything else there stays.
* The pair's sandboxes (WooCommerce, Exact Online, Winstore, Business Central): uvicorn servers on
  threads of this process, reached by system id (`url("bc")`, `control("winstore", "articles", …)`,
  `calls("exact")`).
* The gateway (`koppel serve`) and the workers (`koppel worker`): child processes that the kernel
  stops when this process dies (PR_SET_PDEATHSIG), started from a config file written here (the
  pair's systems, endpoints and integrations) with secrets passed only through their environment.
* The wiring a user does by hand: for the WooCommerce ⇄ Exact pair, Koppel authorised at Exact through
  the OAuth consent flow, Exact's items matching the shop's SKUs (minus `missing_skus`), and WooCommerce
  webhooks for `order.created` and `order.updated` created through the WooCommerce API, pointing at
  the gateway.

Orders are then placed in the shop (`place_orders`): WooCommerce's checkout fires its webhooks, signed
as WooCommerce signs them, and `settle` waits until the activity log has an outcome for every order (or
any record of another integration: `settle(ids, integration=…)`) and nothing is left to do (`backlog`:
the inbox, the queue, jobs a worker took but has not started, running, waiting to retry).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis
import tomlkit
import uvicorn
from rq.job import Job
from starlette.types import ASGIApp

from connectors import registry
from gateway import keys, redisclient, vault
from gateway.activity import Activity, ActivityLog
from gateway.config import Config, GatewaySettings
from gateway.ingest import inbox_key, make_queue
from gateway.limits import server_config
from gateway.redisserver import EmbeddedRedis, RedisChoice, die_with_parent, free_port
from workers.pollers import POLL_JOB_PREFIX
from workers.subscriptions import CHECK_JOB_PREFIX

if TYPE_CHECKING:
    from gateway.pairs import Pair

INTEGRATION = "shop-to-exact"
WRITEBACK = "exact-to-shop"
ENDPOINT = "webshop"
WOO_KEY, WOO_SECRET = "ck_koppel_stack", "cs_koppel_stack"
FINAL = frozenset({"created", "updated", "skipped", "failed", "error", "ignored"})


@dataclass
class LiveServer:
    """A uvicorn server on a thread of this process."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(
    app: ASGIApp, port: int | None = None, name: str = "server", gateway: GatewaySettings | None = None
) -> LiveServer:
    """`app` served on 127.0.0.1; with `gateway`, as `koppel serve` serves the receiver (gateway/limits.py)."""
    port = port or free_port()
    if gateway is not None:
        config = server_config(app, gateway, host="127.0.0.1", port=port, log_level="warning")
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the {name} did not start")
        time.sleep(0.01)
    return LiveServer(f"http://127.0.0.1:{port}", server, thread)


@dataclass
class StackOptions:
    data_dir: Path = Path(".koppel")
    redis_url: str | None = None
    """None: an embedded Redis of the stack's own, emptied at start."""
    workers: int = 1
    exact_rate_limits: bool = True
    exact_per_minute: int = 60
    exact_per_day: int = 5000
    missing_skus: tuple[str, ...] = ()
    """Shop SKUs left out of Exact's items: orders with them fail, naming them."""
    queue: str = "koppel-stack"
    gateway: dict[str, Any] = field(default_factory=dict)
    """Extra `[gateway]` settings (retry_base_seconds, worker_heartbeat_seconds, …)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Extra settings of the WooCommerce → Exact integration (document_type, order_statuses, …)."""
    checkout_update: bool = True
    """WooCommerce saves a paid order again at checkout: `order.updated` follows `order.created`."""
    writeback_poll_seconds: int | None = None
    """Set: also the `exact-to-shop` integration — Exact's Sync API polled this often, order status
    written back to the shop (workers/flows/orders.py, `write_back`)."""
    shop_settings: dict[str, Any] = field(default_factory=dict)
    """Settings of the WooCommerce system. The stack turns the reconciliation poll off unless given
    (`reconcile_interval_seconds`): its tests count every event a webhook brought."""
    public_url: bool = False
    """Set `[gateway] public_url` to the gateway's address, so Koppel manages the shop's webhooks
    (`koppel endpoints sync`, the worker's check)."""
    create_webhooks: bool = True
    """Create the shop's order webhooks by hand, as the stack always did (False: `koppel endpoints sync` does)."""
    pair: bool = False
    """The whole WooCommerce ⇄ Exact Online pair, as the main job shows it: the shop starts without a
    catalogue and Exact without the shop's items (the products flow brings them), customers travel on
    their own, the shop's webhooks are made by `koppel endpoints sync`, and `exact-to-shop` (with
    `writeback_poll_seconds`) also brings Exact's stock to the shop."""
    product_filter: str | None = None
    """`pair`: the products flow's `settings.product_filter` (which products travel to Exact)."""
    poll_seconds: int = 2
    """The other pairs (gateway/pairs.py): how often their polled systems (Winstore, Exact as a source,
    Business Central's reconciliation) are read."""
    log_level: str = "WARNING"
    """`KOPPEL_LOG_LEVEL` of the gateway and workers (their logs: `log_dir`)."""
    direct_events: bool | None = None
    """`[gateway] direct_events` of the stack's config: the workers run a record's events straight from the
    inbox (True) or make each an RQ job (False, as bench/drain's RQ path); None: the config's default."""

    def gateway_settings(self) -> dict[str, Any]:
        """The `[gateway]` table the stack's config gets (before the pair's own additions, such as public_url)."""
        chosen = {} if self.direct_events is None else {"direct_events": self.direct_events}
        return {**self.gateway, **chosen, "queue": self.queue}


@dataclass
class OrderOutcome:
    order_id: str
    outcome: str
    """created / skipped / failed / pending: what became of the order. Each delivery (job) counts with its
    latest outcome (a failed job replayed and booked is booked), and of those the most decisive counts:
    created or updated, then failed, skipped, ignored."""
    number: str = ""
    target_id: str = ""
    reason: str = ""
    events: int = 0
    calls: int = 0
    latency: float | None = None
    """Seconds from the gateway's receipt of the creating delivery to the order's POST at Exact."""


@dataclass(frozen=True)
class Backlog:
    """The event jobs not done yet, by where they are; the pollers' own jobs (always one scheduled, queued
    or running while a source is polled) and the webhook checks left out."""

    inbox: int = 0
    """Accepted events no worker has made a job of yet (the inbox stream)."""
    queued: int = 0
    dequeued: int = 0
    """Taken off the queue by a worker, not started yet (RQ's intermediate queue)."""
    running: int = 0
    scheduled: int = 0
    """Waiting to be retried (RQ's scheduled registry)."""
    abandoned: int = 0
    """Started by a worker that stopped beating (died): waiting to be run again (workers/recovery.py)."""

    @property
    def empty(self) -> bool:
        return not (self.inbox or self.queued or self.dequeued or self.running or self.scheduled or self.abandoned)

    def describe(self) -> str:
        """E.g. "3 queued, 1 running, 2 waiting to retry"; empty when nothing is left."""
        parts = [(self.inbox, "in the inbox"), (self.queued, "queued"), (self.dequeued, "taken by a worker"),
                 (self.running, "running"), (self.abandoned, "whose worker died, to be run again"),
                 (self.scheduled, "waiting to retry")]  # fmt: skip
        return ", ".join(f"{count} {where}" for count, where in parts if count)


MARKER = ".koppel-stack"
"""The file that marks a directory as a stack's data directory (a `koppel demo --data-dir`)."""
_MADE = ("stack.toml", "logs/gateway.log", "logs/worker-*.log", "redis/appendonlydir", "redis/dump.rdb",
         "redis/temp-*.rdb", "redis/redis.log", "journal")  # fmt: skip
"""What a stack puts in its data directory (the embedded Redis's files under `redis/`; the gateway's journal
of events Redis could not take, which belongs to that Redis)."""


def clear_data_dir(data_dir: Path, *, redis_too: bool = True) -> list[Path]:
    """Remove what an earlier stack left in `data_dir` (`_MADE`; the embedded Redis's files only with
    `redis_too`), so each run starts empty, as its sandboxes do; anything else there stays. The paths removed.

    A directory with Redis data but neither the marker nor a stack's config is not a stack's (a Koppel's own
    `.koppel`, say): RuntimeError, nothing removed.
    """
    redis_dir = data_dir / "redis"
    ours = (data_dir / MARKER).exists() or (data_dir / "stack.toml").exists()
    if redis_too and not ours and redis_dir.is_dir() and any(redis_dir.iterdir()):
        raise RuntimeError(
            f"{data_dir} holds Redis data that no demo put there (no {MARKER}): give --data-dir a new or "
            "empty directory, or one an earlier demo used"
        )
    removed: list[Path] = []
    for pattern in _MADE:
        if pattern.startswith(("redis/", "journal")) and not redis_too:
            continue
        for path in sorted(data_dir.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    vault.private_dir(data_dir)
    marker = data_dir / MARKER
    if not marker.exists():
        vault.private_file(marker, "koppel demo's data directory: what it puts here is removed at each run\n")
    return removed


def budget_waits(connection: redis.Redis, now: float | None = None) -> list[str]:
    """Exact divisions whose API budget is used up, each with the seconds to its reset, as the shared
    budget in Redis says (connectors/exactonline/ratelimit.py): "Exact's minutely API budget used up,
    resets in 41 s"."""
    found: list[str] = []
    now_ms = (time.time() if now is None else now) * 1000
    for key in sorted(connection.scan_iter(match=f"{keys.RATELIMIT}:*", count=100)):
        state = connection.hgetall(key)
        for prefix, window in ((b"m", "minutely"), (b"d", "daily")):
            remaining, reset = state.get(prefix + b"rem"), state.get(prefix + b"reset")
            if remaining is None or reset is None or int(remaining) > 0 or float(reset) <= now_ms:
                continue
            seconds = (float(reset) - now_ms) / 1000
            when = f"in {seconds:.0f} s" if seconds >= 1 else "now"
            found.append(f"Exact's {window} API budget used up, resets {when}")
    return found


def outcomes_of(record_ids: list[str], entries: list[Activity]) -> dict[str, OrderOutcome]:
    """What became of each record, from activity log entries in the log's order (`OrderOutcome.outcome`)."""
    result = {oid: OrderOutcome(oid, "pending") for oid in record_ids}
    rank = {"created": 4, "updated": 4, "failed": 3, "error": 3, "skipped": 2, "ignored": 1}
    latest: dict[tuple[str, str], tuple[int, Activity]] = {}  # per record and delivery (job): its last final entry
    for index, entry in enumerate(entries):
        outcome = result.get(entry.resource_id)
        if outcome is None:
            continue
        outcome.calls += entry.calls
        if entry.outcome in FINAL:
            outcome.events += 1
            latest[(entry.resource_id, entry.job_id)] = (index, entry)  # a replayed job's replaces its old
    for _, entry in sorted(latest.values(), key=lambda found: found[0]):  # of equal rank, the later decides
        outcome = result[entry.resource_id]
        if rank.get(entry.outcome, 0) >= rank.get(outcome.outcome, 0):
            outcome.outcome = entry.outcome if entry.outcome != "error" else "failed"
            outcome.number = entry.number or outcome.number
            outcome.target_id = entry.target_id or outcome.target_id
            outcome.reason = entry.reason
            if entry.outcome == "created":
                outcome.latency = entry.latency
    return result


def backlog(connection: redis.Redis, queue_name: str) -> Backlog:
    """What is left of a queue's event jobs, read in one MULTI (a job moving on is counted once, not lost
    between two reads). Only looks: RQ's `count` would also clean the registries up, handing a dead
    worker's job back from here instead of from the workers' own maintenance.

    A job a worker took off the queue sits in RQ's intermediate queue until the worker starts it (in
    neither the queue nor the StartedJobRegistry): it counts while its status is still `queued`. A started
    job whose heartbeat expired (its worker died) counts as `abandoned` until the recovery of the other
    workers (workers/recovery.py, every heartbeat) queues it again; one whose worker died before starting
    it counts as taken until the recovery queues it again (three heartbeats later).
    """
    queue = make_queue(connection, queue_name)
    started, scheduled = queue.started_job_registry, queue.scheduled_job_registry
    with connection.pipeline(transaction=True) as pipe:
        pipe.xlen(inbox_key(queue_name))
        pipe.lrange(queue.key, 0, -1)
        pipe.lrange(queue.intermediate_queue_key, 0, -1)
        pipe.zrange(started.key, 0, -1, withscores=True)
        pipe.zrange(scheduled.key, 0, -1)
        pipe.time()
        inbox, waiting, taken, started_entries, retrying, (seconds, micros) = pipe.execute()

    def events(ids: list[str]) -> set[str]:
        return {job_id for job_id in ids if not job_id.startswith((POLL_JOB_PREFIX, CHECK_JOB_PREFIX))}

    server_now = seconds + micros / 1e6
    running_ids = events([started.parse_job_id(entry) for entry, expires in started_entries if expires >= server_now])
    dead_ids = events([started.parse_job_id(entry) for entry, _ in started_entries]) - running_ids
    taken_ids = events([keys.text(job_id) for job_id in taken]) - running_ids - dead_ids
    if taken_ids:  # a multi-queue worker leaves its jobs there until maintenance: only those not started count
        with connection.pipeline(transaction=False) as pipe:
            for job_id in taken_ids:
                pipe.hget(Job.key_for(job_id), "status")
            statuses = pipe.execute()
        taken_ids = {job_id for job_id, status in zip(taken_ids, statuses, strict=True) if status == b"queued"}
    waiting_ids = events([keys.text(job_id) for job_id in waiting]) - taken_ids - running_ids - dead_ids
    return Backlog(int(inbox), len(waiting_ids), len(taken_ids), len(running_ids),
                   len(events([keys.text(job_id) for job_id in retrying])), len(dead_ids))  # fmt: skip


class Stack:
    """Start with `with Stack(options) as stack:`; everything started is stopped on exit."""

    def __init__(self, options: StackOptions | None = None, pair: Pair | None = None) -> None:
        from gateway.pairs import PAIRS, WOO_EXACT

        self.options = options or StackOptions()
        self.pair = pair or PAIRS[WOO_EXACT]
        """What runs: the pair's systems as sandboxes, its endpoints and integrations (gateway/pairs.py)."""
        self.redis: RedisChoice | None = None
        self.redis_url = ""
        self.sandboxes: dict[str, LiveServer] = {}
        """The pair's sandboxes by system id (`shop`, `exact`, `winstore`, `bc`)."""
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_url = ""
        self.gateway_port = 0
        self.workers: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        self.config_path = self.options.data_dir / "stack.toml"
        self.log_dir = self.options.data_dir / "logs"
        """The gateway's and the workers' output (`gateway.log`, `worker-N.log`)."""
        self.started_at = 0.0
        self.http = httpx.Client(timeout=30, trust_env=False)
        self._conn: redis.Redis | None = None
        self._spawned = 0
        self._own_key = ""
        """The key this stack generated into its data directory and put into the environment (none given)."""

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def woo(self) -> LiveServer | None:
        """The WooCommerce sandbox (system `shop`), when the pair has one."""
        return self.sandboxes.get("shop")

    @property
    def exact(self) -> LiveServer | None:
        """The Exact Online sandbox (system `exact`), when the pair has one."""
        return self.sandboxes.get("exact")

    def url(self, system_id: str) -> str:
        """The address of a system's sandbox (its control routes are under `/sandbox/`)."""
        return self.sandboxes[system_id].url

    def start(self) -> None:
        opts = self.options
        clear_data_dir(opts.data_dir, redis_too=not opts.redis_url)
        vault.private_dir(self.log_dir)
        if not os.environ.get(vault.KEY_VAR):  # the stack's own key: tokens are stored encrypted (gateway/vault.py)
            os.environ[vault.KEY_VAR] = self._own_key = vault.ensure_key_file(opts.data_dir)
        self.started_at = time.time()
        if opts.redis_url:
            self.redis_url = opts.redis_url
        else:
            embedded = EmbeddedRedis(data_dir=opts.data_dir, port=free_port())
            self.redis = RedisChoice(embedded.start(), embedded)
            self.redis_url = self.redis.url
        self._conn = redisclient.connect(self.redis_url)
        if self.redis is not None:
            self._conn.flushall()
        for system in self.pair.systems:
            self.sandboxes[system.id] = serve(system.app(opts), name=f"{system.title} sandbox")
        self.env = {name: value for system in self.pair.systems for name, value in system.secrets.items()}
        self.env |= {name: secrets.token_hex(32) for name in self.pair.webhook_secrets}  # hex: Squarespace needs it
        self.gateway_port = free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        vault.private_file(self.config_path, tomlkit.dumps(self.pair.build_config(self)))
        for system in self.pair.systems:
            if system.connect is not None:
                system.connect(self)
        if self.pair.prepare is not None:
            self.pair.prepare(self)
        self._start_gateway()
        for _ in range(opts.workers):
            self.start_worker()
        if self.pair.started is not None:
            self.pair.started(self)

    def stop(self) -> None:
        for proc in [*self.workers, *([self.gateway] if self.gateway else [])]:
            _terminate(proc)
        self.workers.clear()
        self.gateway = None
        for server in self.sandboxes.values():
            server.stop()
        self.sandboxes.clear()
        self.http.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self._own_key and os.environ.get(vault.KEY_VAR) == self._own_key:
            del os.environ[vault.KEY_VAR]
        self._own_key = ""

    @property
    def connection(self) -> redis.Redis:
        assert self._conn is not None, "the stack is not started"
        return self._conn

    # -- set-up steps ---------------------------------------------------------------------------

    def shop_skus(self) -> list[str]:
        """Every SKU the shop sells (variations included), read through the WooCommerce API."""
        client = self.woo_client()
        skus: list[str] = []
        for product in client.products():
            if product["type"] == "variable":
                skus += [v["sku"] for v in client.variations(product["id"]) if v.get("sku")]
            elif product.get("sku"):
                skus.append(product["sku"])
        return skus

    def add_exact_items(self, skus: list[str]) -> None:
        assert self.exact is not None
        self.http.post(f"{self.exact.url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()

    def woo_client(self) -> Any:
        from connectors.woocommerce.client import WooCommerceClient

        assert self.woo is not None
        return WooCommerceClient(self.http, base_url=self.woo.url, consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)

    def config(self) -> Config:
        """The stack's config, as its gateway and workers load it."""
        return registry.load(self.config_path, environ=self.env)

    def _environ(self) -> dict[str, str]:
        # KOPPEL_DATA_DIR: the gateway's journal goes to <data dir>/journal (gateway/journal.py).
        return {**os.environ, **self.env, "REDIS_URL": self.redis_url, "KOPPEL_LOG_LEVEL": self.options.log_level,
                "KOPPEL_DATA_DIR": str(self.options.data_dir.resolve())}  # fmt: skip

    def _start_gateway(self) -> None:
        self.gateway = _spawn(
            ["serve", "--config", str(self.config_path), "--port", str(self.gateway_port), "--log-level", "info"],
            {**self._environ(), "KOPPEL_LOG_LEVEL": "INFO"},  # start-up, each refused delivery, errors: no access log
            self.log_dir / "gateway.log",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get(f"{self.gateway_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.gateway.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start (exit status {self.gateway.poll()})")
            time.sleep(0.05)

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start one more `koppel worker` process."""
        self._spawned += 1
        log = self.log_dir / f"worker-{self._spawned}.log"
        proc = _spawn(["worker", "--config", str(self.config_path)], self._environ(), log)
        self.workers.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `koppel <args> --config <the stack's config>` as an operator would; its output captured."""
        return subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "gateway.cli", *args, "--config", str(self.config_path)],
            env=self._environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker, as the OOM killer or a pulled plug would."""
        proc.kill()
        proc.wait(timeout=10)
        self.workers.remove(proc)

    # -- driving it ---------------------------------------------------------------------------------

    def place_orders(self, count: int, *, seed: int | None = None, status: str = "processing") -> list[str]:
        """Checkout orders in the shop (WooCommerce fires its webhooks); their order ids."""
        assert self.woo is not None
        ids: list[str] = []
        while len(ids) < count:  # the sandbox places at most 1 000 per request
            batch = min(1000, count - len(ids))
            body: dict[str, Any] = {"count": batch, "status": status}
            if seed is not None:
                body["seed"] = seed + len(ids)
            response = self.http.post(f"{self.woo.url}/sandbox/orders", json=body)
            response.raise_for_status()
            ids += [str(i) for i in response.json()["orders"]]
        return ids

    def sync_endpoints(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`koppel endpoints sync <args>`: the shop's webhooks made, repaired or re-activated."""
        return self.cli("endpoints", "sync", *args)

    def seed_shop_products(self) -> list[str]:
        """The sample catalogue created in the shop (WooCommerce fires product.created); product ids."""
        assert self.woo is not None
        response = self.http.post(f"{self.woo.url}/sandbox/products/seed")
        response.raise_for_status()
        return [str(i) for i in response.json()["products"]]

    def set_webhook_status(self, topic_prefix: str, status: str) -> list[str]:
        """Set the status of the shop's webhooks whose topic starts with `topic_prefix` (what WooCommerce
        does itself after failed deliveries); the webhook ids."""
        client = self.woo_client()
        hooks = [h for h in client.webhooks() if str(h["topic"]).startswith(topic_prefix)]
        for hook in hooks:
            client.update_webhook(int(hook["id"]), {"status": status})
        return [str(h["id"]) for h in hooks]

    def exact_rows(self, entity: str) -> list[dict[str, Any]]:
        """The Exact sandbox's records of one entity (e.g. "logistics/Items") in its division."""
        state = self.exact_state()
        return list(state["entities"][str(state["divisions"][0])].get(entity, []))

    def set_exact_stock(self, sku: str, quantity: float) -> int:
        """A stock count in Exact: the item's stock position set to `quantity`; what is free of it now
        (on hand minus what open sales orders plan out), which the shop should show."""
        assert self.exact is not None
        body = {"sku": sku, "quantity": quantity}
        response = self.http.post(f"{self.exact.url}/sandbox/stock", json=body)
        response.raise_for_status()
        return round(float(response.json()["FreeStock"]))

    def deliveries(self) -> list[dict[str, Any]]:
        """The shop's webhook delivery log (pings left out)."""
        assert self.woo is not None
        rows = self.http.get(f"{self.woo.url}/sandbox/deliveries").json()["deliveries"]
        return [row for row in rows if not row["ping"]]

    def deliver_in_exact(self, numbers: list[str]) -> list[str]:
        """Mark the Exact sales orders of these shop order numbers delivered (Status 21), as a person in
        Exact would; the Exact order ids changed."""
        assert self.exact is not None
        state = self.exact_state()
        orders = state["entities"][str(state["divisions"][0])].get("salesorder/SalesOrders", [])
        changed = [str(o["OrderID"]) for o in orders if str(o.get("YourRef")) in set(numbers)]
        for order_id in changed:
            body = {"entity": "salesorder/SalesOrders", "id": order_id, "fields": {"Status": 21}}
            self.http.post(f"{self.exact.url}/sandbox/update", json=body).raise_for_status()
        return changed

    def shop_statuses(self, order_ids: list[str]) -> dict[str, str]:
        """The shop's current status of each order."""
        client = self.woo_client()
        return {oid: str(client.get_order(int(oid))["status"]) for oid in order_ids}

    def exact_state(self) -> dict[str, Any]:
        assert self.exact is not None
        return dict(self.http.get(f"{self.exact.url}/sandbox/state").json())

    def exact_calls(self) -> dict[str, Any]:
        """The Exact sandbox's own count of the API calls it answered: `total` and `by_endpoint`."""
        assert self.exact is not None
        return dict(self.http.get(f"{self.exact.url}/sandbox/calls").json())

    def calls(self, system_id: str) -> dict[str, Any]:
        """A sandbox's own count of the API calls it answered: `total` and `by_endpoint` (`/sandbox/counters`)."""
        return dict(self.http.get(f"{self.url(system_id)}/sandbox/counters").raise_for_status().json())

    def control(self, system_id: str, action: str, body: Any = None, method: str = "POST") -> Any:
        """A sandbox's control route (`/sandbox/<action>`): what a user does in that system; its answer."""
        response = self.http.request(method, f"{self.url(system_id)}/sandbox/{action}", json=body)
        return response.raise_for_status().json()

    def activity(self, since: float | None = None, integration: str | None = None) -> list[Activity]:
        """An integration's activity log (default: the pair's main one) since the stack started (or since
        `since`, epoch s)."""
        return ActivityLog(self.connection).entries(
            integration or self.pair.integration, since=max(since or 0.0, self.started_at)
        )

    def idle(self) -> bool:
        """Nothing left to do: the inbox drained, no event job queued, taken by a worker, running or
        waiting to retry (`backlog`)."""
        return self.backlog().empty

    def backlog(self) -> Backlog:
        """The event jobs not done yet, by where they are (`backlog` of the stack's queue)."""
        return backlog(self.connection, self.options.queue)

    def waits(self) -> list[str]:
        """What the workers wait for besides work (`budget_waits`)."""
        return budget_waits(self.connection)

    def outcomes(
        self, order_ids: list[str], *, since: float | None = None, integration: str | None = None
    ) -> dict[str, OrderOutcome]:
        """What became of each record (an order, an article…: the activity log's resource ids), from an
        integration's activity log (default: the pair's main one; from `since`, epoch s, when given)."""
        return outcomes_of(order_ids, self.activity(since, integration))

    def settle(
        self,
        order_ids: list[str],
        *,
        timeout: float = 120,
        progress: Callable[[dict[str, OrderOutcome]], None] | None = None,
        since: float | None = None,
        interval: float = 0.1,
        integration: str | None = None,
    ) -> dict[str, OrderOutcome]:
        """Wait until every order has an outcome and the pipeline is idle (or `timeout` s); the outcomes.

        `since` (epoch s) reads only the activity logged from then on, and `interval` spaces the checks:
        a benchmark sets both so that waiting costs little CPU beside the sandboxes in this process.
        """
        deadline = time.monotonic() + timeout
        while True:
            outcomes = self.outcomes(order_ids, since=since, integration=integration)
            decided = sum(o.outcome != "pending" for o in outcomes.values())
            if progress is not None:
                progress(outcomes)
            if decided == len(order_ids) and self.idle():
                return outcomes
            if time.monotonic() > deadline:
                return outcomes
            for proc in self.workers:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {proc.pid} stopped (exit status {proc.returncode})")
            time.sleep(interval)


def _spawn(args: list[str], environ: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`koppel <args>` as a child process, its output written to `log_path`."""
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as log:  # owner-only
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "gateway.cli", *args],
            env=environ,
            preexec_fn=die_with_parent,  # no orphan if this process is killed
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # warm shutdown: a worker finishes its current job
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


__all__ = [
    "INTEGRATION", "WRITEBACK", "Backlog", "LiveServer", "OrderOutcome", "Stack", "StackOptions", "backlog",
    "budget_waits", "clear_data_dir", "outcomes_of", "serve",
]  # fmt: skip
