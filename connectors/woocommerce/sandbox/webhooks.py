"""Webhook delivery as WooCommerce does it (PLATFORMS.md §1.1), for the sandbox.

* A change (`Store.on_change`) queues one job per active webhook on that topic — unless a job for the
  same webhook and resource is still pending (Action Scheduler's rule), so bursts collapse.
* The kit's WebhookSender sends the jobs in order, from the server's event loop. The body is built when
  sent (the resource's REST JSON now; `{"id": …}` for deleted; WooCommerce's error body if it is gone), encoded
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
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.sandboxkit import Delivery, WebhookSender
from connectors.woocommerce.sandbox import shapes
from connectors.woocommerce.sandbox.store import Row, Store
from connectors.woocommerce.wordpress import php_json_encode, webhook_signature, wp_hash_delivery_id

log = logging.getLogger("connectors.woocommerce.sandbox")
MAX_FAILURES = 5  # woocommerce_max_webhook_delivery_failures


@dataclass(frozen=True)
class Job:
    webhook_id: int
    resource: str
    event: str
    resource_id: int


def _delivered(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 303


def _pinged(response: httpx.Response) -> bool:
    return response.status_code == 200


class Deliverer:
    """The sandbox's Action Scheduler and WC_Webhook::deliver(), on the kit's sender (`sender.log`: what was sent)."""

    def __init__(
        self, store: Store, sender: WebhookSender, *, salt: bytes, ping_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.store = store
        self.sender = sender
        self.salt = salt
        self.ping_timeout = ping_timeout
        self.clock = clock
        self.sent = 0
        """Deliveries sent (pings not counted)."""
        self._pending: set[tuple[int, int]] = set()
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
            job = Job(hook["id"], resource, event, resource_id)
            try:
                self.sender.schedule(functools.partial(self._run, job))
            except asyncio.QueueFull:
                self.sender.log.record(self._entry(hook, topic, resource_id, error="queue full"))
                continue
            self._pending.add(key)

    @property
    def queued(self) -> int:
        return self.sender.queued

    def reset(self) -> None:
        """Forget the log and drop queued jobs (they belong to the data that was reset)."""
        self.sender.reset()
        self._pending.clear()
        self.sent = 0

    async def aclose(self) -> None:
        await self.sender.aclose()
        self._pending.clear()

    # -- sending ----------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        self._pending.discard((job.webhook_id, job.resource_id))
        await self.deliver(job)

    async def deliver(self, job: Job) -> None:
        hook = self.store.webhooks.get(job.webhook_id)
        if hook is None:  # deleted while queued: WooCommerce's job fails to load it
            return
        resource, _, event = hook["topic"].partition(".")
        payload = {"id": job.resource_id} if job.event == "deleted" else self.store.payload(resource, job.resource_id)
        delivery_id = wp_hash_delivery_id(self.salt, hook["id"], int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": self.store.site_url,
            "X-WC-Webhook-Topic": hook["topic"],
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-ID": str(hook["id"]),
            "X-WC-Webhook-Delivery-ID": delivery_id,
        }

        def settle(delivery: Delivery) -> Mapping[str, Any]:
            """WC_Webhook::failed_delivery(): the failure after the count passed 5 disables the webhook."""
            hook["failure_count"] = min(delivery.failures, MAX_FAILURES + 1)
            if delivery.failures > MAX_FAILURES + 1:
                hook["status"] = "disabled"
                hook["modified"] = self.clock()
                log.info("webhook %s disabled after repeated delivery failures", hook["id"])
            self.sent += 1
            return self._entry(hook, hook["topic"], job.resource_id, delivery_id=delivery_id)

        await self.sender.send(hook["delivery_url"], php_json_encode(payload), headers=headers, key=hook["id"],
                               signer=lambda body: {"X-WC-Webhook-Signature": webhook_signature(body, hook["secret"])},
                               success=_delivered, on_result=settle)  # fmt: skip

    async def ping(self, hook: Row) -> int | None:
        """WC_Webhook::deliver_ping(): its status code (None when unreachable); 200 clears `pending_delivery`."""

        def settle(delivery: Delivery) -> Mapping[str, Any]:
            if delivery.success:
                hook["pending_delivery"] = False
            return self._entry(hook, "ping", None, ping=True)

        delivery = await self.sender.send(
            hook["delivery_url"], f"webhook_id={hook['id']}".encode(), timeout=self.ping_timeout,
            headers={"Content-Type": "application/x-www-form-urlencoded"}, success=_pinged, on_result=settle,
        )  # fmt: skip
        return delivery.status

    # -- the delivery log -------------------------------------------------------------------------

    def _entry(
        self, hook: Row, topic: str, resource_id: int | None, *, delivery_id: str = "", error: str = "",
        ping: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        entry = {"webhook_id": hook["id"], "topic": topic, "resource_id": resource_id, "delivery_id": delivery_id,
                 "ping": ping, "webhook_status": hook["status"], "failure_count": hook["failure_count"],
                 "delivered_at_gmt": shapes.gmt(self.clock())}  # fmt: skip
        if error:  # nothing was sent
            entry |= {"delivery_url": hook["delivery_url"], "status_code": None, "error": error, "success": False,
                      "body_bytes": 0, "duration_ms": None}  # fmt: skip
        return entry

    def entries(self, webhook_id: int | None = None, *, pings: bool = True) -> list[Row]:
        found = self.sender.log.entries() if webhook_id is None else self.sender.log.entries(webhook_id=webhook_id)
        return [e for e in found if pings or not e["ping"]]


def state_of(hook: Row) -> dict[str, Any]:
    """A webhook as the sandbox's state route shows it (the REST API hides the failure count)."""
    return {key: hook[key] for key in ("id", "topic", "status", "delivery_url", "failure_count", "pending_delivery")}
