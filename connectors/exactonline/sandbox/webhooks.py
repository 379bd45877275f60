"""Exact Online's webhooks, for the sandbox: subscriptions per division and topic, the validation request,
a signed notification for every change of a subscribed topic's records, retries of failed deliveries.

What it follows (PLATFORMS.md §4; [V] read or run in source code, [S] a secondary source):

* Subscriptions: `POST /api/v1/{division}/webhooks/WebhookSubscriptions {"CallbackURL", "Topic"}` with
  bearer auth (`Description` and `IsInstant`, GoodsDeliveries only, optional); `GET` the same path lists
  them in the OData envelope; `DELETE …/WebhookSubscriptions(guid'{ID}')` removes one (emeq/exact-api
  docs/partners/exact/webhooks.md [S]). Properties ID, CallbackURL, ClientID, Created, Creator,
  CreatorFullName, Description, Division, Topic (picqer `WebhookSubscription.php` [V]), IsInstant, UserID
  (CData's Exact Online provider, table WebhookSubscriptions [S]).
* Creating one makes Exact POST an empty body to the CallbackURL; only 200 or 201 passes, otherwise the
  subscription fails [S emeq]. A second subscription to the same topic in the division: HTTP 500 "Data
  already exists" [S emeq].
* A notification is `{"Content":{"Topic","ClientId","Division","Action","Key","ExactOnlineEndpoint",
  "EventCreatedOn"},"HashCode":"…"}`, compact, members in that order: Division an integer, Key the record's
  GUID, ExactOnlineEndpoint the record's absolute URL `…/api/v1/{division}/{endpoint}(guid'{Key}')`,
  EventCreatedOn a local time with milliseconds, `2020-01-06T16:26:08.587` (payloads captured in public code:
  ExactOnlineBundle's `checkHashCode` doc comment, a WordPress plugin's debug fixture; leapforce's Go type).
* HashCode: upper-case hex HMAC-SHA256 of the Content object's text as sent, keyed with the app's webhook
  secret, one per app (picqer `Webhook/Authenticatable.php` [V]; emeq, verified against a live one [S]).
* A notification not answered 200 or 201 is retried ten times, 2^n minutes after the n-th failure (2, 4, …
  1 024 minutes: ~34 hours) [S emeq].

Where those sources are silent, the sandbox chooses, and says so here:

* Action: the sources show "Update" and "Delete" (emeq: Update | Delete, Delete only for a record removed).
  Whether a new record is told as "Create" or as "Update" is not documented; the sandbox sends
  `SandboxConfig.created_action`, "Create" by default ("Update" acts as those sources describe).
* Which changes are told: the sandbox tells every create, update and delete of an Account, Contact, Item,
  SalesOrder or SalesInvoice (header records: its lines change only with it), made through the API or the
  control routes, at once. Exact's own delay and batching are not documented (IsInstant suggests a delay).
* Topics: Accounts, Contacts, Items, SalesInvoices, SalesOrders. Others Exact has (StockPositions,
  GoodsDeliveries, FinancialTransactions, …) are refused with 400: the sources do not say what their Key
  and ExactOnlineEndpoint name. `webhooks/WebhookTopics` is not modelled; PUT on a subscription answers 405.
* The refusal when the validation fails (400, Exact's error shape, naming the callback's answer), the
  wording of the other refusals, the request headers (notifications: `Content-Type: application/json`;
  the validation: none; both `User-Agent: Exact Online sandbox`) and the callback timeout
  (`webhook_timeout`, 30 s).
* Exact requires an HTTPS CallbackURL on the domain of the app's redirect URI [S emeq]; the sandbox takes any
  http(s) URL, loopback included — what it is for.
* Whether Exact disables a subscription that keeps failing: the sandbox never does (its failures are
  counted, `GET /sandbox/webhooks`). A notification or retry whose subscription was deleted is dropped.
* Retries keep the notification's bytes (same EventCreatedOn, same HashCode). Their wait is
  `2**n * retry_minute` real seconds (60: Exact's minutes); `POST /sandbox/webhooks/retry` sends every
  waiting retry now.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from connectors.exactonline.odata import EXACT_TZ
from connectors.exactonline.sandbox.entities import Record, SandboxError, Spec
from connectors.exactonline.sandbox.shapes import value
from connectors.sandboxkit import Delivery, WebhookSender, hmac_signer

log = logging.getLogger("connectors.exactonline.sandbox")

TOPICS: dict[str, str] = {
    "Accounts": "crm/Accounts",
    "Contacts": "crm/Contacts",
    "Items": "logistics/Items",
    "SalesInvoices": "salesinvoice/SalesInvoices",
    "SalesOrders": "salesorder/SalesOrders",
}
"""The topics the sandbox tells of, and the entity each one's Key and ExactOnlineEndpoint name."""
_TOPIC_OF = {path: topic for topic, path in TOPICS.items()}

_FIELDS = frozenset({
    "ID", "CallbackURL", "ClientID", "Created", "Creator", "CreatorFullName", "Description", "Division", "IsInstant",
    "Topic", "UserID",
})  # fmt: skip
SUBSCRIPTIONS = Spec(
    path="webhooks/WebhookSubscriptions",
    key="ID",
    fields=_FIELDS,
    type_name="Exact.Web.Api.Models.WebhookSubscription",
)
_GIVEN = ("CallbackURL", "Topic", "Description", "IsInstant")
"""What a POST sets; the other properties of the body are Exact's to fill in."""
USER_AGENT = "Exact Online sandbox"


class WebhookSettings(Protocol):
    """What the webhooks read, at each use, from the sandbox's configuration (SandboxConfig)."""

    client_id: str
    webhook_secret: str
    webhook_timeout: float
    webhook_retries: int
    retry_minute: float
    created_action: str


@dataclass(frozen=True)
class Notification:
    """One notification as built when the change happened: its bytes are what every attempt sends."""

    subscription: str
    url: str
    division: int
    topic: str
    action: str
    key: str
    body: bytes


def accepted(response: httpx.Response) -> bool:
    """Exact takes 200 or 201 only, for the validation and for notifications."""
    return response.status_code in (200, 201)


def content_text(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, separators=(",", ":")).encode()


def notification_body(content: bytes, secret: str) -> bytes:
    """`{"Content":…,"HashCode":…}` around the Content's exact bytes."""
    hash_code = hmac_signer("HashCode", secret.encode(), encoding="HEX")(content)["HashCode"]
    return b'{"Content":' + content + b',"HashCode":"' + hash_code.encode() + b'"}'


def _guid(key: str) -> str:
    try:
        return str(uuid.UUID(key))
    except ValueError:
        raise SandboxError(400, "Invalid GUID for ID") from None


class Webhooks:
    """The app's subscriptions in every division and the notifications to them, on the kit's sender."""

    def __init__(
        self,
        settings: Callable[[], WebhookSettings],
        sender: WebhookSender,
        *,
        user: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.user = user
        self.clock = clock
        self.subscriptions: dict[str, Record] = {}
        """By ID; `_base` is the URL the subscription was made through (ExactOnlineEndpoint's)."""
        self.sent = 0
        """Notifications sent (validations not counted, retries counted)."""
        self._waiting: dict[int, tuple[Notification, int, asyncio.TimerHandle]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> datetime:
        """Exact's wall clock: Dutch local time, naive."""
        return datetime.fromtimestamp(self.clock(), UTC).astimezone(EXACT_TZ).replace(tzinfo=None)

    # -- subscriptions (the API) ------------------------------------------------------------------

    def listing(self, division: int) -> list[Record]:
        return [s for s in self.subscriptions.values() if s["Division"] == division]

    def get(self, division: int, key: str) -> Record:
        found = self.subscriptions.get(_guid(key))
        if found is None or found["Division"] != division:
            raise SandboxError(404, "Record not found")
        return found

    def delete(self, division: int, key: str) -> None:
        found = self.get(division, key)
        del self.subscriptions[found["ID"]]
        for ident, (notification, _, handle) in list(self._waiting.items()):
            if notification.subscription == found["ID"]:
                handle.cancel()
                del self._waiting[ident]

    async def subscribe(self, division: int, body: Mapping[str, Any], base: str) -> Record:
        """Check the body, POST the empty validation request, and keep the subscription if it was answered
        200 or 201; SandboxError otherwise."""
        for name in body:
            if not name.startswith("__") and name not in SUBSCRIPTIONS.fields:
                raise SandboxError(400, f"Property '{name}' does not exist on type '{SUBSCRIPTIONS.type_name}'")
        given = {name: body.get(name) for name in _GIVEN}
        for name in ("CallbackURL", "Topic"):
            if given[name] in (None, ""):
                raise SandboxError(400, f"Mandatory field missing: {name}")
        url, topic = given["CallbackURL"], given["Topic"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if not isinstance(url, str) or parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise SandboxError(400, "Invalid CallbackURL: an absolute http(s) URL is expected")
        if topic not in TOPICS:
            raise SandboxError(400, f"Topic {topic!r} is not supported by the sandbox ({', '.join(TOPICS)})")
        instant = given["IsInstant"]
        if instant not in (None, False, True):
            raise SandboxError(400, "Invalid value for IsInstant")
        if instant:
            raise SandboxError(400, "IsInstant is only supported for topic GoodsDeliveries")
        self._refuse_duplicate(division, topic)
        settings = self.settings()

        def settle(delivery: Delivery) -> Mapping[str, Any]:
            return self._entry(None, division, topic, validation=True)

        validation = await self.sender.send(url, b"", timeout=settings.webhook_timeout, success=accepted,
                                            on_result=settle)  # fmt: skip
        if not validation.success:
            answer = f"answered {validation.status}" if validation.status is not None else validation.error
            raise SandboxError(400, f"Webhook subscription refused: the CallbackURL {answer} to the validation "
                                    "request (200 or 201 expected)")  # fmt: skip
        self._refuse_duplicate(division, topic)  # another one may have been made while we waited
        self._loop = asyncio.get_running_loop()
        record: Record = {
            "ID": str(uuid.uuid4()), "CallbackURL": url, "ClientID": settings.client_id, "Created": self.now(),
            "Creator": self.user["UserID"], "CreatorFullName": self.user["FullName"],
            "Description": given["Description"], "Division": division, "IsInstant": False, "Topic": topic,
            "UserID": self.user["UserID"], "_base": base,
        }  # fmt: skip
        self.subscriptions[record["ID"]] = record
        return record

    def _refuse_duplicate(self, division: int, topic: str) -> None:
        if any(s["Division"] == division and s["Topic"] == topic for s in self.subscriptions.values()):
            raise SandboxError(500, "Data already exists")

    # -- notifications (Store.on_change, from the request that made the change) ------------------------

    def on_change(self, division: int, path: str, action: str, key: str) -> None:
        topic = _TOPIC_OF.get(path)
        if topic is None:
            return
        subscribed = [s for s in self.subscriptions.values() if s["Division"] == division and s["Topic"] == topic]
        if not subscribed:
            return
        settings = self.settings()
        told = settings.created_action if action == "Create" else action
        created_on = self.now().isoformat(timespec="milliseconds")
        for sub in subscribed:
            content = {
                "Topic": topic, "ClientId": sub["ClientID"], "Division": division, "Action": told, "Key": key,
                "ExactOnlineEndpoint": f"{sub['_base']}/api/v1/{division}/{path}(guid'{key}')",
                "EventCreatedOn": created_on,
            }  # fmt: skip
            body = notification_body(content_text(content), settings.webhook_secret)
            self._submit(Notification(sub["ID"], sub["CallbackURL"], division, topic, told, key, body))

    def _submit(self, notification: Notification) -> None:
        """Queue from the server's event loop; a change made from another thread is handed over to it."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and (running is self._loop or self._loop is None or self._loop.is_closed()):
            self._enqueue(notification, 0)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._enqueue, notification, 0)
        else:
            log.warning("no event loop to send the %s %s notification from", notification.topic, notification.action)

    def _enqueue(self, notification: Notification, attempt: int) -> None:
        try:
            self.sender.schedule(functools.partial(self._deliver, notification, attempt))
        except asyncio.QueueFull:
            entry = self._entry(notification.subscription, notification.division, notification.topic,
                                action=notification.action, key=notification.key, attempt=attempt)  # fmt: skip
            unsent = {"delivery_url": notification.url, "status_code": None, "error": "queue full", "success": False,
                      "body_bytes": 0, "duration_ms": None}  # fmt: skip
            self.sender.log.record({**entry, **unsent})

    async def _deliver(self, notification: Notification, attempt: int) -> None:
        if notification.subscription not in self.subscriptions:  # deleted since
            return
        settings = self.settings()

        def settle(delivery: Delivery) -> Mapping[str, Any]:
            self.sent += 1
            retry_in = None
            if not delivery.success and attempt < settings.webhook_retries:
                retry_in = 2 ** (attempt + 1) * settings.retry_minute
                self._wait(notification, attempt + 1, retry_in)
            return self._entry(notification.subscription, notification.division, notification.topic,
                               action=notification.action, key=notification.key, attempt=attempt,
                               retry_in=retry_in)  # fmt: skip

        await self.sender.send(notification.url, notification.body, headers={"Content-Type": "application/json"},
                               key=notification.subscription, timeout=settings.webhook_timeout, success=accepted,
                               on_result=settle)  # fmt: skip

    # -- retries ------------------------------------------------------------------------------------------

    def _wait(self, notification: Notification, attempt: int, delay: float) -> None:
        ident = next(self._ids)
        handle = asyncio.get_running_loop().call_later(delay, self._due, ident)
        self._waiting[ident] = (notification, attempt, handle)

    def _due(self, ident: int) -> None:
        waiting = self._waiting.pop(ident, None)
        if waiting is not None:
            self._enqueue(waiting[0], waiting[1])

    def retry_now(self) -> int:
        """Send every waiting retry now (in the order they failed); how many there were."""
        due = sorted(self._waiting)
        for ident in due:
            notification, attempt, handle = self._waiting.pop(ident)
            handle.cancel()
            self._enqueue(notification, attempt)
        return len(due)

    # -- the sandbox's view ---------------------------------------------------------------------------------

    def _entry(
        self, subscription: str | None, division: int, topic: str, *, action: str = "", key: str = "",
        attempt: int = 0, validation: bool = False, retry_in: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return {"subscription": subscription, "division": division, "topic": topic, "action": action, "key": key,
                "attempt": attempt, "validation": validation, "retry_in": retry_in}  # fmt: skip

    def state(self) -> dict[str, Any]:
        subscriptions = [
            {**{name: value(name, sub[name]) for name in sorted(SUBSCRIPTIONS.fields)},
             "failures": self.sender.failures(sub["ID"])}
            for sub in self.subscriptions.values()
        ]  # fmt: skip
        waiting = [
            {"subscription": n.subscription, "topic": n.topic, "action": n.action, "key": n.key, "attempt": attempt}
            for n, attempt, _ in (self._waiting[ident] for ident in sorted(self._waiting))
        ]
        return {"subscriptions": subscriptions, "waiting_retries": waiting, "sent": self.sent,
                "queued": self.sender.queued}  # fmt: skip

    def _cancel_retries(self) -> None:
        for _, _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()

    def reset(self) -> None:
        """No subscriptions, nothing queued or waiting, an empty delivery log."""
        self._cancel_retries()
        self.subscriptions.clear()
        self.sender.reset()
        self.sent = 0

    async def aclose(self) -> None:
        self._cancel_retries()
        await self.sender.aclose()
        self._loop = None
