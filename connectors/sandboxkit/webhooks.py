"""Sending webhooks as a platform sends them: signed bytes POSTed in the background, logged, failures counted.

* `WebhookSender.send(url, body, signer=…)`: one POST of exactly these bytes, the signer's headers added
  (`hmac_signer` covers base64 and hex HMACs; a platform may pass its own). Redirects are not followed
  and no proxy is taken from the environment. Success is a 2xx unless `success` says otherwise (a
  validation handshake: `echoes(token)`). Consecutive failures are counted per `key` (a subscription),
  reset by a success; the platform decides what they cost (WooCommerce disables a webhook).
* `WebhookSender.schedule(job)`: deliveries leave after the API has answered, one at a time in order, from
  one task in the server's event loop; `reset()` drops what is queued; `aclose()` at shutdown. With
  `concurrency` N (default 1; settable while running, `POST /sandbox/deliveries/concurrency`) N tasks take
  the jobs in order, so up to N deliveries are in flight at once, as a platform with several queue runners
  sends them (WooCommerce's Action Scheduler with concurrent batches): a load that is not the sender's pace.
* `DeliveryLog`: what was sent and how it went, for `GET /sandbox/deliveries`; `wait` lets a test wait
  for deliveries instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

log = logging.getLogger("connectors.sandboxkit.webhooks")

Signer = Callable[[bytes], Mapping[str, str]]
"""The headers that sign a body."""
SuccessTest = Callable[[httpx.Response], bool]
Job = Callable[[], Awaitable[None]]
MAX_CONCURRENCY = 64
"""The most deliveries a sender keeps in flight at once (`WebhookSender.concurrency`)."""


def hmac_signer(
    header: str, key: bytes, *, digest: str = "sha256", encoding: Literal["base64", "hex", "HEX"] = "base64"
) -> Signer:
    """A signer that puts HMAC(`key`, body) in `header`: base64 (WooCommerce, Shopify), lower-case hex
    (Squarespace; its key is the hex-decoded secret) or upper-case hex."""

    def sign(body: bytes) -> dict[str, str]:
        mac = hmac.new(key, body, digest)
        value = base64.b64encode(mac.digest()).decode("ascii") if encoding == "base64" else mac.hexdigest()
        return {header: value.upper() if encoding == "HEX" else value}

    return sign


def succeeded(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def echoes(token: str) -> SuccessTest:
    """A validation handshake's test (Business Central): 200 with the token as the whole body."""
    return lambda response: response.status_code == 200 and response.text == token


@dataclass(frozen=True)
class Delivery:
    """How one POST went: `status` None when there was no answer (`error` names why)."""

    url: str
    status: int | None
    error: str
    success: bool
    failures: int
    """Consecutive failures of its key, this one included (0 after a success, or without a key)."""
    body_bytes: int
    duration_ms: float

    def entry(self) -> dict[str, Any]:
        return {"delivery_url": self.url, "status_code": self.status, "error": self.error, "success": self.success,
                "body_bytes": self.body_bytes, "duration_ms": self.duration_ms}  # fmt: skip


class DeliveryLog:
    """The last `keep` deliveries, as dicts, oldest first."""

    def __init__(self, keep: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._logged = asyncio.Event()

    def record(self, entry: Mapping[str, Any]) -> None:
        self._entries.append(dict(entry))
        self._logged.set()
        self._logged = asyncio.Event()

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """The entries whose fields equal `match` (all of them without)."""
        return [e for e in self._entries if all(e.get(k) == v for k, v in match.items())]

    async def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until `ready()` (checked after each entry) or `timeout` s; whether it became ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._logged.wait(), remaining)
        return True

    def clear(self) -> None:
        self._entries.clear()

    def rebind(self) -> None:
        """A fresh event: asyncio primitives bind to the loop that first waits on them (a later server's is new)."""
        self._logged = asyncio.Event()


class WebhookSender:
    def __init__(
        self,
        *,
        user_agent: str | None = None,
        timeout: float = 60.0,
        queue_size: int = 10_000,
        keep: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "sandbox-webhooks",
        concurrency: int = 1,
    ) -> None:
        self.user_agent = user_agent
        self.timeout = timeout
        self.queue_size = queue_size
        self.transport = transport
        self.name = name
        self.log = DeliveryLog(keep)
        self.sent = 0
        self.failed = 0
        self._failures: Counter[Hashable] = Counter()
        self._generation = 0
        self._queue: asyncio.Queue[tuple[int, Job]] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._concurrency = 1
        self.concurrency = concurrency

    @property
    def concurrency(self) -> int:
        """How many deliveries may be in flight at once (1: one at a time, strictly in order)."""
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}")
        self._concurrency = value
        # More runners start with the next scheduled job. Fewer: idle runners over the number stop now (they
        # hold no job), busy ones once their delivery is done.
        idle = [task for task in self._tasks if task not in self._busy and not task.done()]
        for task in idle[: max(0, len(self._tasks) - value)]:
            task.cancel()
            self._tasks.remove(task)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False, transport=self.transport)
        return self._client

    def failures(self, key: Hashable) -> int:
        """Consecutive failed deliveries for `key` since its last success."""
        return self._failures[key]

    async def send(
        self,
        url: str,
        body: bytes,
        *,
        signer: Signer | None = None,
        headers: Mapping[str, str] | None = None,
        key: Hashable | None = None,
        timeout: float | None = None,
        success: SuccessTest = succeeded,
        on_result: Callable[[Delivery], Mapping[str, Any]] | None = None,
    ) -> Delivery:
        """POST `body` to `url` and log it; `on_result` gives the log entry's own fields (and may act on the result)."""
        sent_headers = {**({"User-Agent": self.user_agent} if self.user_agent else {}), **(headers or {})}
        if signer is not None:
            sent_headers.update(signer(body))
        started = time.monotonic()
        status: int | None = None
        error = ""
        ok = False
        try:
            response = await self.client.post(url, content=body, headers=sent_headers,
                                              timeout=self.timeout if timeout is None else timeout)  # fmt: skip
            status, ok = response.status_code, success(response)
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        self.sent += 1
        if not ok:
            self.failed += 1
        if key is not None:
            self._failures[key] = 0 if ok else self._failures[key] + 1
        delivery = Delivery(url, status, error, ok, self._failures[key] if key is not None else 0, len(body),
                            round((time.monotonic() - started) * 1000, 1))  # fmt: skip
        self.log.record({**delivery.entry(), **(on_result(delivery) if on_result else {})})
        return delivery

    # -- the background queue -----------------------------------------------------------------------

    def schedule(self, job: Job) -> None:
        """Run `job` after the jobs before it (with `concurrency` > 1: started after them), in the running
        event loop; asyncio.QueueFull when full."""
        self._queue.put_nowait((self._generation, job))
        self._tasks = [task for task in self._tasks if not task.done()]
        loop = asyncio.get_running_loop()
        while len(self._tasks) < self._concurrency:
            self._tasks.append(loop.create_task(self._run(), name=self.name))

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            if len(self._tasks) > self._concurrency:  # concurrency lowered while this runner was busy
                current = asyncio.current_task()
                self._tasks = [task for task in self._tasks if task is not current]
                return
            generation, job = await self._queue.get()
            me = asyncio.current_task()
            if me is not None:
                self._busy.add(me)
            try:
                if generation == self._generation:
                    await job()
            except Exception:  # a sandbox bug must not stop later deliveries
                log.exception("a webhook delivery of %s failed", self.name)
            finally:
                self._busy.discard(me)
                self._queue.task_done()

    def reset(self) -> None:
        """Forget the log and the counts, and drop queued jobs (they belong to the data that was reset)."""
        self._generation += 1
        self._failures.clear()
        self.log.clear()
        self.sent = self.failed = 0

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._busy.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self.log.rebind()
