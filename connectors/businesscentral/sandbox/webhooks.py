"""Webhook subscriptions and notifications as Business Central does them (PLATFORMS.md §3), for the sandbox.

* `POST subscriptions {notificationUrl, resource, clientState}`: the handshake first — a POST with an empty
  body to `notificationUrl?validationToken=…`, which must answer 200 with the token as the whole body within
  `handshake_timeout` s — then 201 with `expirationDateTime` `subscription_lifetime` s out on the sandbox
  clock. A failed handshake is 400 and no subscription. The resource must be a company's entity
  (`/api/v2.0/companies({id})/customers`); clientState at most 2048 characters.
* `PATCH subscriptions('{id}')` (If-Match required): another handshake, then a new expiry and ETag.
  `DELETE` (If-Match) removes it. A subscription past its expiry is gone.
* Changes collect per subscription until the batch is sent: `batch_seconds` after the first change (BC
  online: 30; 0: only when `POST /sandbox/notify` sends it). One POST per notification URL with
  `{"value": [...]}`, every item with its subscription's clientState; more than `collection_threshold`
  changes of one subscription in a batch become one `collection` item whose resource carries
  `$filter={collection_field} gt {time}` (the field named as BC's docs sample does).
* The answer decides: 2xx delivered; 408, 429, 5xx or no answer → the items wait for the next batch
  (BC retries over 36 h); any other status deletes the subscriptions whose items the POST carried.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from connectors.businesscentral.sandbox.store import BCError, Record
from connectors.sandboxkit import Delivery, WebhookSender, echoes

RETRIED = frozenset({408, 429})
CLIENT_STATE_MAX = 2048


@dataclass(frozen=True)
class Change:
    subscription: str
    entity: str
    record_id: str
    change: str
    modified: str


def _fields(fields: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    return fields


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Notifier:
    def __init__(
        self, clock: Callable[[], float], companies: Callable[[], list[str]], *, lifetime: float,
        handshake_timeout: float, batch_seconds: float, collection_threshold: int, collection_field: str,
        user_agent: str = "Dynamics 365 Business Central",
    ) -> None:  # fmt: skip
        self.clock = clock
        self.companies = companies
        self.lifetime = lifetime
        self.handshake_timeout = handshake_timeout
        self.batch_seconds = batch_seconds
        self.collection_threshold = collection_threshold
        self.collection_field = collection_field
        self.sender = WebhookSender(user_agent=user_agent, timeout=30.0, name="bc-sandbox-webhooks")
        self.subscriptions: dict[str, Record] = {}
        self.pending: list[Change] = []
        self.deleted: list[dict[str, Any]] = []
        """Subscriptions deleted after a failed delivery: id, resource, status answered."""
        self._timer: asyncio.TimerHandle | None = None
        self._version = 0

    # -- subscriptions ----------------------------------------------------------------------------------

    def expire(self) -> None:
        now = self.clock()
        for sub_id in [i for i, s in self.subscriptions.items() if s["_expires"] <= now]:
            del self.subscriptions[sub_id]

    def public(self, sub: Record) -> Record:
        return {k: v for k, v in sub.items() if not k.startswith("_") and k != "clientState"}

    def listing(self) -> list[Record]:
        self.expire()
        return [self.public(s) for s in self.subscriptions.values()]

    def get(self, sub_id: str) -> Record:
        self.expire()
        found = self.subscriptions.get(sub_id.lower())
        if found is None:
            raise BCError(404, "BadRequest_NotFound", f"The subscription '{sub_id}' does not exist.")
        return found

    def _entity(self, resource: str) -> tuple[str, str]:
        head, _, entity = resource.strip().lstrip("/").rpartition("/")
        for company in self.companies():
            if head.lower() == f"api/v2.0/companies({company})".lower() and entity in (
                "customers", "items", "salesOrders", "salesInvoices", "vendors",
            ):  # fmt: skip
                return company, entity
        raise BCError(400, "BadRequest", f"The resource '{resource}' is not supported for subscriptions.")

    async def handshake(self, url: str) -> None:
        token = secrets.token_urlsafe(24)
        joiner = "&" if "?" in url else "?"
        delivery = await self.sender.send(f"{url}{joiner}validationToken={quote(token)}", b"",
                                          timeout=self.handshake_timeout, success=echoes(token),
                                          on_result=lambda d: {"handshake": True})  # fmt: skip
        if not delivery.success:
            raise BCError(400, "BadRequest", f"The notification URL '{url}' did not answer the validation request "
                                             f"with the validation token (status {delivery.status or delivery.error}).")

    def _stamp(self, sub: Record) -> None:
        self._version += 1
        sub["@odata.etag"] = f'W/"{self._version}"'
        sub["lastModifiedDateTime"] = _iso(self.clock())
        sub["_expires"] = self.clock() + self.lifetime
        sub["expirationDateTime"] = _iso(sub["_expires"])

    async def create(self, body: Record, *, handshake: bool = True) -> Record:
        """A new subscription; `handshake=False` only for the control route (one made earlier, as it were)."""
        url, resource, state = body.get("notificationUrl"), body.get("resource"), body.get("clientState", "")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BCError(400, "BadRequest", "notificationUrl must be an absolute http(s) URL.")
        if not isinstance(resource, str):
            raise BCError(400, "BadRequest", "resource is required.")
        if not isinstance(state, str) or len(state) > CLIENT_STATE_MAX:
            raise BCError(400, "BadRequest", f"clientState must be text of at most {CLIENT_STATE_MAX} characters.")
        company, entity = self._entity(resource)
        if handshake:
            await self.handshake(url)
        sub: Record = {"subscriptionId": uuid.uuid4().hex, "notificationUrl": url, "resource": resource,
                       "userId": str(uuid.UUID(int=0)), "clientState": state, "_company": company,
                       "_entity": entity}  # fmt: skip
        self._stamp(sub)
        self.subscriptions[sub["subscriptionId"]] = sub
        return self.public(sub)

    def _etag(self, sub: Record, if_match: str | None) -> None:
        if not if_match:
            raise BCError(400, "BadRequest_InvalidToken", "Could not validate the client concurrency token required "
                                                          "by the service. Please provide a valid token in the "
                                                          "client request.")  # fmt: skip
        if if_match != "*" and if_match != sub["@odata.etag"]:
            raise BCError(412, "Request_EntityChanged", "Another user has already changed the record.")

    async def update(self, sub_id: str, body: Record, if_match: str | None) -> Record:
        sub = self.get(sub_id)
        self._etag(sub, if_match)
        url = body.get("notificationUrl", sub["notificationUrl"])
        state = body.get("clientState", sub["clientState"])
        if not isinstance(state, str) or len(state) > CLIENT_STATE_MAX:
            raise BCError(400, "BadRequest", f"clientState must be text of at most {CLIENT_STATE_MAX} characters.")
        if "resource" in body and body["resource"] != sub["resource"]:
            raise BCError(400, "BadRequest", "The resource of a subscription cannot be changed.")
        await self.handshake(str(url))
        sub["notificationUrl"], sub["clientState"] = url, state
        self._stamp(sub)
        return self.public(sub)

    def delete(self, sub_id: str, if_match: str | None) -> None:
        sub = self.get(sub_id)
        self._etag(sub, if_match)
        self.drop(sub["subscriptionId"])

    def drop(self, sub_id: str) -> bool:
        """BC deletes the subscription (as after a failed delivery); its pending changes go with it."""
        found = self.subscriptions.pop(sub_id.lower(), None)
        self.pending = [c for c in self.pending if c.subscription != sub_id.lower()]
        return found is not None

    # -- changes and batches ----------------------------------------------------------------------------

    def on_change(self, company: str, entity: str, record: Record, change: str) -> None:
        self.expire()
        noted = False
        for sub in self.subscriptions.values():
            if sub["_company"] == company and sub["_entity"] == entity:
                self.pending.append(Change(sub["subscriptionId"], entity, str(record["id"]), change,
                                           str(record.get("lastModifiedDateTime") or _iso(self.clock()))))  # fmt: skip
                noted = True
        if noted and self.batch_seconds > 0 and self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.batch_seconds, self._batch_due)

    def _batch_due(self) -> None:
        self._timer = None
        self.sender.schedule(self._send_batch)

    async def _send_batch(self) -> None:
        await self.notify()

    def _items(self, changes: list[Change]) -> list[Record]:
        by_sub: dict[str, list[Change]] = {}
        for change in changes:
            by_sub.setdefault(change.subscription, []).append(change)
        items: list[Record] = []
        for sub_id, subs in by_sub.items():
            sub = self.subscriptions[sub_id]
            base = f"api/v2.0/companies({sub['_company']})/{sub['_entity']}"
            common = {"subscriptionId": sub_id, "clientState": sub["clientState"],
                      "expirationDateTime": sub["expirationDateTime"]}  # fmt: skip
            if len(subs) > self.collection_threshold:
                earliest = min(c.modified for c in subs)
                since = _iso(datetime.fromisoformat(earliest.replace("Z", "+00:00")).timestamp() - 1)
                resource = f"{base}?$filter={quote(f'{self.collection_field} gt {since}')}"
                items.append(common | {"resource": resource, "changeType": "collection",
                                       "lastModifiedDateTime": max(c.modified for c in subs)})  # fmt: skip
                continue
            latest: dict[str, Change] = {}
            for change in subs:  # several changes of one record in a batch: one item, the last change
                latest[change.record_id] = change
            items += [common | {"resource": f"{base}({c.record_id})", "changeType": c.change,
                                "lastModifiedDateTime": c.modified} for c in latest.values()]  # fmt: skip
        return items

    async def notify(self) -> list[dict[str, Any]]:
        """Send what is pending now, one POST per notification URL; settle each by its answer. How each went
        (as logged: status, items, change types)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.expire()
        batch = [c for c in self.pending if c.subscription in self.subscriptions]
        self.pending = []
        by_url: dict[str, list[Change]] = {}
        for change in batch:
            by_url.setdefault(self.subscriptions[change.subscription]["notificationUrl"], []).append(change)
        deliveries = []
        for url, changes in by_url.items():
            items = self._items(changes)
            body = json.dumps({"value": items}).encode()
            fields = {"items": len(items), "changes": sorted({str(item["changeType"]) for item in items})}
            delivery = await self.sender.send(url, body, headers={"Content-Type": "application/json"},
                                              on_result=functools.partial(_fields, fields))  # fmt: skip
            deliveries.append(delivery.entry() | fields)
            if delivery.success:
                continue
            if delivery.status is None or delivery.status in RETRIED or delivery.status >= 500:
                self.pending += changes  # retried with the next batch
                continue
            for sub_id in dict.fromkeys(c.subscription for c in changes):
                sub = self.subscriptions.get(sub_id)
                if sub is not None:
                    self.deleted.append({"subscriptionId": sub_id, "resource": sub["resource"],
                                         "status": delivery.status})  # fmt: skip
                    self.drop(sub_id)
        return deliveries

    def reset(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.sender.reset()
        self.subscriptions.clear()
        self.pending.clear()
        self.deleted.clear()

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.sender.aclose()


__all__ = ["Notifier"]
