"""Webhook delivery as WooCommerce does it (PLATFORMS.md §1.1), for the sandbox.

* A change (`Store.on_change`) queues one job per active webhook on that topic — unless a job for the
  same webhook and resource is still pending (Action Scheduler's rule), so bursts collapse.
* One worker task in the server's event loop sends the jobs in order. The body is built when sent (the
  resource's REST JSON now; `{"id": …}` for deleted; WooCommerce's error body if it is gone), encoded
  as PHP's `json_encode` would, signed `base64(HMAC-SHA256(wp_specialchars_decode(secret), body))`.
* Headers: Content-Type, User-Agent `WooCommerce/{wc} Hookshot (WordPress/{wp})`, X-WC-Webhook-Source
  (site URL, trailing slash), -Topic, -Resource, -Event, -Signature, -ID, -Delivery-ID (`wp_hash(id .
  time())`: the same for two deliveries of one webhook within a second). Redirects are not followed.
* HTTP 200-302 is success and resets the failure count; anything else (or no answer within the
  timeout) counts a failure, and the failure after the count passed 5 — the 7th in a row — disables
  the webhook. Jobs already queued are still sent, as WooCommerce's queue does; no new ones are queued.
* Unlike WooCommerce (`wp_safe_remote_request`), loopback and private delivery URLs on any port are
  allowed: that is what the sandbox is for.
* Creating a webhook (and re-activating one whose ping is pending) pings: an unsigned form POST
  `webhook_id=<id>` with only a User-Agent (and the transport's Content-Type); only 200 clears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.woocommerce import sandbox_shapes as shapes
from connectors.woocommerce.sandbox_store import Row, Store
from connectors.woocommerce.wordpress import php_json_encode, webhook_signature, wp_hash_delivery_id

log = logging.getLogger("connectors.woocommerce.sandbox")
MAX_FAILURES = 5  # woocommerce_max_webhook_delivery_failures


@dataclass(frozen=True)
class Job:
    webhook_id: int
    resource: str
    event: str
    resource_id: int
    generation: int


class Deliverer:
    """The sandbox's Action Scheduler and WC_Webhook::deliver(); `log` holds what was sent and how it went."""

    def __init__(
        self,
        store: Store,
        *,
        user_agent: str,
        salt: bytes,
        timeout: float = 60.0,
        ping_timeout: float = 5.0,
        queue_size: int = 10_000,
        keep: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.user_agent = user_agent
        self.salt = salt
        self.timeout = timeout
        self.ping_timeout = ping_timeout
        self.clock = clock
        self.log: deque[Row] = deque(maxlen=keep)
        self.sent = 0
        self.generation = 0
        self.queue_size = queue_size
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self._pending: set[tuple[int, int]] = set()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._logged = asyncio.Event()
        store.on_change = self.on_change

    # -- queueing (called from request handlers, in the event loop) -----------------------------------

    def on_change(self, resource: str, event: str, resource_id: int) -> None:
        topic = f"{resource}.{event}"
        if not self.store.deliverable(resource, resource_id):
            return
        for hook in list(self.store.webhooks.values()):
            key = (hook["id"], resource_id)
            if hook["status"] != "active" or hook["topic"] != topic or key in self._pending:
                continue
            try:
                self._queue.put_nowait(Job(hook["id"], resource, event, resource_id, self.generation))
            except asyncio.QueueFull:
                self._record(hook, topic, resource_id, status=None, error="queue full", delivery_id="", started=None)
                continue
            self._pending.add(key)
        if not self._queue.empty():
            self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="woocommerce-sandbox-webhooks")

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def reset(self) -> None:
        """Forget the log and drop queued jobs (they belong to the data that was reset)."""
        self.generation += 1
        self._pending.clear()
        self.log.clear()
        self.sent = 0

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        # asyncio primitives bind to the loop that first waits on them: fresh ones for a later server.
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._logged = asyncio.Event()
        self._pending.clear()

    # -- sending ----------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                if job.generation == self.generation:
                    self._pending.discard((job.webhook_id, job.resource_id))
                    await self.deliver(job)
            except Exception:  # a sandbox bug must not stop later deliveries
                log.exception("webhook delivery of %s %s failed", job.resource, job.resource_id)
            finally:
                self._queue.task_done()

    async def deliver(self, job: Job) -> None:
        hook = self.store.webhooks.get(job.webhook_id)
        if hook is None:  # deleted while queued: WooCommerce's job fails to load it
            return
        resource, _, event = hook["topic"].partition(".")
        payload = {"id": job.resource_id} if job.event == "deleted" else self.store.payload(resource, job.resource_id)
        body = php_json_encode(payload)
        delivery_id = wp_hash_delivery_id(self.salt, hook["id"], int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            "X-WC-Webhook-Source": self.store.site_url,
            "X-WC-Webhook-Topic": hook["topic"],
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": webhook_signature(body, hook["secret"]),
            "X-WC-Webhook-ID": str(hook["id"]),
            "X-WC-Webhook-Delivery-ID": delivery_id,
        }
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            response = await self.client.post(hook["delivery_url"], content=body, headers=headers, timeout=self.timeout)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        if status is not None and 200 <= status < 303:
            hook["failure_count"] = 0
        elif hook["failure_count"] > MAX_FAILURES:
            hook["status"] = "disabled"
            hook["modified"] = self.clock()
            log.info("webhook %s disabled after repeated delivery failures", hook["id"])
        else:
            hook["failure_count"] += 1
        self.sent += 1
        self._record(hook, hook["topic"], job.resource_id, status=status, error=error, delivery_id=delivery_id,
                     started=started, size=len(body))  # fmt: skip

    async def ping(self, hook: Row) -> int | None:
        """WC_Webhook::deliver_ping(): its status code (None when unreachable); 200 clears `pending_delivery`."""
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            response = await self.client.post(
                hook["delivery_url"],
                content=f"webhook_id={hook['id']}".encode(),
                headers={"User-Agent": self.user_agent, "Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.ping_timeout,
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        if status == 200:
            hook["pending_delivery"] = False
        self._record(hook, "ping", None, status=status, error=error, delivery_id="", started=started, ping=True)
        return status

    # -- the delivery log -------------------------------------------------------------------------

    def _record(
        self,
        hook: Row,
        topic: str,
        resource_id: int | None,
        *,
        status: int | None,
        error: str,
        delivery_id: str,
        started: float | None,
        ping: bool = False,
        size: int = 0,
    ) -> None:
        self.log.append({
            "webhook_id": hook["id"], "topic": topic, "resource_id": resource_id, "delivery_id": delivery_id,
            "delivery_url": hook["delivery_url"], "status_code": status, "error": error,
            "success": status == 200 if ping else status is not None and 200 <= status < 303, "ping": ping,
            "webhook_status": hook["status"], "failure_count": hook["failure_count"], "body_bytes": size,
            "duration_ms": None if started is None else round((time.monotonic() - started) * 1000, 1),
            "delivered_at_gmt": shapes.gmt(self.clock()),
        })  # fmt: skip
        self._logged.set()
        self._logged = asyncio.Event()

    def entries(self, webhook_id: int | None = None, *, pings: bool = True) -> list[Row]:
        return [e for e in self.log if webhook_id in (None, e["webhook_id"]) and (pings or not e["ping"])]

    async def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until `ready()` (checked after each logged delivery) or `timeout` s; whether it became ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._logged.wait(), remaining)
        return True


def state_of(hook: Row) -> dict[str, Any]:
    """A webhook as the sandbox's state route shows it (the REST API hides the failure count)."""
    return {key: hook[key] for key in ("id", "topic", "status", "delivery_url", "failure_count", "pending_delivery")}
