"""Live reload end to end: `koppel serve` and `koppel worker` processes on real Redis take a changed config
file while webhooks keep arriving, on SIGHUP, and from one another (the Redis announcement); an invalid
file is refused and the running config stays.

The load test runs the WooCommerce → Exact Online stack (gateway/stack.py): the shop's checkout fires
signed webhooks continuously while the config file is rewritten by hand to add an endpoint and change the
orders mapping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import tomlkit

from gateway.ingest import make_queue
from gateway.live import CHANNEL
from gateway.redisserver import die_with_parent, free_port
from gateway.stack import Stack, StackOptions
from tests.conftest import woo_order, woo_signature
from tests.samples import SECRETS
from tests.test_reload import SHOP2
from workers.pollers import poll_job_ids

pytestmark = pytest.mark.integration

FAST = {"worker_heartbeat_seconds": 1, "retry_base_seconds": 1}
UNLIMITED = {"exact_per_minute": 100_000, "exact_per_day": 1_000_000}
RELOADED = "Reloaded order "


def wait_for(what: str, check: Callable[[], object], timeout: float) -> float:
    """Seconds until `check()` held (asserted within `timeout`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def signed(body: bytes, secret: str, topic: str = "order.created") -> dict[str, str]:
    """WooCommerce's delivery headers, signed with `secret` as WooCommerce signs."""
    return {
        "content-type": "application/json",
        "x-wc-webhook-topic": topic,
        "x-wc-webhook-resource": "order",
        "x-wc-webhook-event": "created",
        "x-wc-webhook-id": "9",
        "x-wc-webhook-delivery-id": os.urandom(16).hex(),
        "x-wc-webhook-source": "https://shop.example/",
        "x-wc-webhook-signature": woo_signature(body, secret),
    }


def logged(path: Path, *needles: str) -> bool:
    text = path.read_text(errors="replace") if path.exists() else ""
    return any(all(n in line for n in needles) for line in text.splitlines())


# -- under load --------------------------------------------------------------------------------------------


def test_a_config_changed_under_load_drops_nothing_and_the_new_endpoint_goes_live(tmp_path: Path, redis_url: str):
    options = StackOptions(data_dir=tmp_path, redis_url=redis_url, workers=2, gateway=FAST, log_level="INFO",
                           **UNLIMITED)  # fmt: skip
    with Stack(options) as stack:
        secret = stack.env["KOPPEL_STACK_WC_SECRET"]
        placed: list[str] = []
        stop = threading.Event()

        def checkout() -> None:  # the shop's checkout fires order.created and order.updated, signed
            while not stop.is_set():
                placed.extend(stack.place_orders(2))
                time.sleep(0.05)

        load = threading.Thread(target=checkout, daemon=True)
        load.start()
        wait_for("the first orders", lambda: len(placed) >= 6, 30)
        # The gateway and both workers run (with the config as it was): each listens for announcements.
        wait_for("every process", lambda: stack.connection.pubsub_numsub(CHANNEL)[0][1] >= 3, 30)
        wait_for("the first orders booked", lambda: len(stack.exact_rows("salesorder/SalesOrders")) >= 3, 60)
        booked_before = {str(row["YourRef"]) for row in stack.exact_rows("salesorder/SalesOrders")}

        # The file rewritten by hand (in place): a second endpoint, and the orders mapping changed.
        document = tomlkit.parse(stack.config_path.read_text())
        endpoint = tomlkit.table()
        endpoint.update({"id": "shop2", "kind": "woocommerce", "secret": "env:KOPPEL_STACK_WC_SECRET"})
        document["endpoints"].append(endpoint)
        integration = document["integrations"][0]
        integration["mappings"] = {"orders": {"exactonline": {"Description": f"$left('{RELOADED}' & number, 60)"}}}
        stack.config_path.write_text(tomlkit.dumps(document))
        changed_at = time.monotonic()

        answers: list[int] = []
        with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:

            def new_endpoint_accepts() -> bool:
                body = woo_order(900_000 + len(answers))
                answers.append(client.post("/webhooks/shop2", content=body, headers=signed(body, secret)).status_code)
                return answers[-1] == 202

            wait_for("the new endpoint to accept signed deliveries", new_endpoint_accepts, 10)
        live_after = time.monotonic() - changed_at
        logs = [stack.log_dir / "gateway.log", *sorted(stack.log_dir.glob("worker-*.log"))]
        for log in logs:  # every process applied it: the gateway and both workers
            wait_for(f"{log.name} to reload", lambda log=log: logged(log, "reloaded", "integrations changed"), 15)
        time.sleep(1.0)  # the load goes on across and after the change
        stop.set()
        load.join(30)
        after = stack.place_orders(4)  # placed once every process runs the new config
        orders = placed + after
        outcomes = stack.settle(orders, timeout=120)

        assert set(answers[:-1]) <= {404} and answers[-1] == 202, answers
        assert live_after < 10
        wait_for("every delivery", lambda: len(stack.deliveries()) >= 2 * len(orders), 30)  # created + updated
        deliveries = stack.deliveries()
        assert not [d for d in deliveries if d["error"] or not 200 <= d["status_code"] < 300], "a delivery failed"
        assert Counter(o.outcome for o in outcomes.values()) == {"created": len(orders)}
        assert stack.idle()
        shop = {str(o["id"]): str(o["number"]) for o in stack.woo_client().orders()}
        booked = stack.exact_rows("salesorder/SalesOrders")
        refs = Counter(str(row["YourRef"]) for row in booked)
        assert {shop[i]: refs[shop[i]] for i in orders} == {shop[i]: 1 for i in orders}  # each exactly once
        described = {str(row["YourRef"]): str(row.get("Description", "")) for row in booked}
        assert all(described[shop[i]] == f"{RELOADED}{shop[i]}" for i in after), [described[shop[i]] for i in after]
        assert all(described[ref] == f"Webshop order {ref}" for ref in booked_before)  # the default mapping's
        failed = stack.connection.zcard(f"rq:registry:failed:{options.queue}")
        assert failed == 0


# -- SIGHUP, the announcement, an invalid file ----------------------------------------------------------------

SHOP = """
[gateway]
queue = "reload-e2e"
admin_token = "env:ADMIN_TOKEN"

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:WC_SECRET"
"""


POLLED = """
[[systems]]
id = "exact"
kind = "exactonline"
[systems.settings]
client_id = "koppel-test"
redirect_uri = "http://127.0.0.1/oauth/exactonline/callback"
[systems.credentials]
client_secret = "env:EXACT_SECRET"

[[systems]]
id = "wshop"
kind = "woocommerce"
base_url = "http://127.0.0.1:9"
[systems.credentials]
consumer_key = "env:WC_SECRET"
consumer_secret = "env:WC_SECRET"

[[integrations]]
id = "exact-to-shop"
source = "exact"
target = "wshop"
flows = ["orders"]
"""
"""A polled source (Exact's Sync API): the workers schedule its polls once they run this config."""

INVALID = """
[[endpoints]]
id = "shop3"
kind = "woocommerce"
secret = "pasted-secret-value"
"""


class Process:
    def __init__(self, args: list[str], config: Path, redis_url: str, log: Path) -> None:
        environ = {**os.environ, **SECRETS, "REDIS_URL": redis_url, "KOPPEL_LOG_LEVEL": "INFO",
                   "KOPPEL_CONFIG_WATCH_SECONDS": "0"}  # fmt: skip  # no file watch: only SIGHUP and announcements
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
                env=environ, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )  # fmt: skip

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(15)


@pytest.fixture
def processes(tmp_path: Path, redis_url: str) -> Iterator[tuple[Path, str, Process, Process]]:
    config = tmp_path / "koppel.toml"
    config.write_text(SHOP)
    port = free_port()
    gateway = Process(["serve", "--port", str(port)], config, redis_url, tmp_path / "gateway.log")
    worker = Process(["worker"], config, redis_url, tmp_path / "worker.log")
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the gateway", ready, 30)
        with redis.Redis.from_url(redis_url) as connection:  # both listen for announcements
            wait_for("both to listen", lambda: connection.pubsub_numsub(CHANNEL)[0][1] >= 2, 30)
        yield config, url, gateway, worker
    finally:
        running = [gateway.proc.poll(), worker.proc.poll()]
        gateway.stop()
        worker.stop()
        assert running == [None, None], running  # neither died of a signal or a refused file


def deliver(url: str, endpoint: str, order_id: int) -> int:
    body = woo_order(order_id)
    headers = signed(body, "wc&secret-\u00e9")  # the WC_SECRET as WooCommerce signs with it (entities decoded)
    return httpx.post(f"{url}/webhooks/{endpoint}", content=body, headers=headers, timeout=10).status_code


def test_sighup_reloads_the_gateway_which_tells_the_worker_and_an_invalid_file_is_refused(
    processes: tuple[Path, str, Process, Process], redis_url: str
) -> None:
    config, url, gateway, worker = processes
    assert deliver(url, "shop2", 1) == 404

    queue = make_queue(redis.Redis.from_url(redis_url), "reload-e2e")
    polls = poll_job_ids("exact", "SalesOrderHeaders")
    assert not any(queue.fetch_job(job_id) for job_id in polls)

    config.write_text(SHOP + SHOP2 + POLLED)
    time.sleep(1.5)
    assert deliver(url, "shop2", 2) == 404  # no file watch in these processes: nothing yet
    gateway.hup()
    wait_for("the gateway to take SIGHUP", lambda: deliver(url, "shop2", 3) == 202, 5)
    assert logged(gateway.log, "gateway: config", "reloaded (SIGHUP)", "endpoints added: shop2")
    wait_for("the worker to hear of it", lambda: logged(worker.log, "reloaded (announced by another process)"), 5)
    wait_for("the new source's polls", lambda: any(queue.fetch_job(job_id) for job_id in polls), 5)

    config.write_text(SHOP + SHOP2 + POLLED + INVALID)
    gateway.hup()
    worker.hup()
    wait_for("the gateway's refusal", lambda: logged(gateway.log, "refused (SIGHUP)", "endpoints[2].secret"), 5)
    wait_for("the worker's refusal", lambda: logged(worker.log, "refused (SIGHUP)", "endpoints[2].secret"), 5)
    for log in (gateway.log, worker.log):
        text = log.read_text()
        assert "pasted-secret-value" not in text
        assert len([line for line in text.splitlines() if "refused" in line]) == 1
    assert deliver(url, "shop2", 4) == 202  # the running config stays
    assert deliver(url, "shop", 5) == 202
    assert deliver(url, "shop3", 6) == 404
