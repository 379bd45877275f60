"""Business Central's webhook subscriptions, as `koppel endpoints sync` manages them (workers/subscriptions.py).

* `POST {api}/subscriptions {notificationUrl, resource, clientState}`: the resource is the company's
  entity (`/api/v2.0/companies({id})/customers`); the topic Koppel names it by is the entity. BC answers
  201 only after the notification URL passed the handshake (the receiver echoes `validationToken`).
* `clientState` is the endpoint's secret (at most 2048 characters): BC does not sign notifications, every
  item carries it instead. BC's answers do not show it back, so a changed secret is not seen as drift;
  the first notification with the old one is refused and BC deletes the subscription, which the next sync
  re-creates with the new secret.
* A subscription lives three days (`expirationDateTime`); it is renewed (`PATCH subscriptions('{id}')`
  with `If-Match`, another handshake) once it expires within `webhook_renew_margin_seconds`.
* BC has no disabled state: a subscription whose delivery failed (any answer but 408, 429, 5xx) is
  deleted. Koppel remembers (in Redis) the subscriptions it created, so one gone missing is known lost
  and the system's reconciliation poll is started with its re-creation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.businesscentral.client import BusinessCentralClient
from connectors.businesscentral.connector import bc_client, settings_of
from connectors.businesscentral.errors import BusinessCentralNotFound, BusinessCentralResponseError
from connectors.contract import Subscription, Webhooks
from connectors.readers import iso_time
from gateway import keys
from gateway.config import Endpoint
from gateway.errors import PermanentError

CLIENT_STATE_MAX = 2048
TOPICS: dict[str, str] = {"orders": "salesOrders", "customers": "customers", "products": "items"}
"""Flow → the entity whose notifications feed it (stock has none: posting does not notify; it is polled)."""


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return iso_time(text)


def check_endpoint(endpoint: Endpoint) -> list[str]:
    """The secret travels as every subscription's `clientState`: BC takes at most 2048 characters."""
    if len(endpoint.secret.get_secret_value()) > CLIENT_STATE_MAX:
        return [f"secret: Business Central takes a clientState of at most {CLIENT_STATE_MAX} characters"]
    return []


class BusinessCentralWebhooks(Webhooks):
    @property
    def bc(self) -> BusinessCentralClient:
        return bc_client(self.system, self.context)

    def _url(self, subscription_id: str | None = None) -> str:
        tail = f"('{subscription_id}')" if subscription_id else ""
        return f"{self.bc.api_root}/subscriptions{tail}"

    def _resource(self, entity: str) -> str:
        return f"/api/v2.0/companies({self.bc.company_id})/{entity}"

    def _known(self) -> str:
        return keys.cache(self.system.id, "bc_subscriptions")

    def _subscription(self, record: dict[str, Any]) -> Subscription:
        resource = str(record.get("resource") or "")
        prefix = self._resource("")
        topic = resource[len(prefix):] if resource.lower().startswith(prefix.lower()) else f"other:{resource}"
        return Subscription(id=str(record.get("subscriptionId") or ""), topic=topic,
                            url=str(record.get("notificationUrl") or ""), status="active",
                            expires=_time(record.get("expirationDateTime")))  # fmt: skip

    # -- the contract ---------------------------------------------------------------------------------

    def topics(self, flows: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(TOPICS[flow] for flow in flows if flow in TOPICS))

    def current(self) -> list[Subscription]:
        """The subscriptions the app holds (BC lists a user's own), those of another company as `other:…`."""
        body = self.bc.request("GET", self._url())
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise BusinessCentralResponseError("GET subscriptions: the answer is not an OData list")
        return [self._subscription(r) for r in body["value"] if isinstance(r, dict)]

    def create(self, topic: str, url: str, secret: str, name: str) -> Subscription:
        if len(secret) > CLIENT_STATE_MAX:
            raise PermanentError(f"Business Central takes a clientState (the endpoint's secret) of at most "
                                 f"{CLIENT_STATE_MAX} characters; choose a shorter secret")  # fmt: skip
        body = {"notificationUrl": url, "resource": self._resource(topic), "clientState": secret}
        made = self.bc.request("POST", self._url(), json=body)
        if not isinstance(made, dict) or not made.get("subscriptionId"):
            raise BusinessCentralResponseError("POST subscriptions: Business Central did not return the subscription")
        sub = self._subscription(made)
        self.context.redis.hset(self._known(), f"{url} {topic}", sub.id)
        return sub

    def _patch(self, subscription: Subscription, body: dict[str, Any]) -> Subscription:
        record = self.bc.request("GET", self._url(subscription.id))
        etag = record.get("@odata.etag") if isinstance(record, dict) else None
        if not etag:
            raise BusinessCentralResponseError(f"GET subscriptions('{subscription.id}'): no @odata.etag to renew with")
        updated = self.bc.request("PATCH", self._url(subscription.id), json=body, headers={"If-Match": etag})
        if not isinstance(updated, dict):
            raise BusinessCentralResponseError(f"PATCH subscriptions('{subscription.id}'): no subscription returned")
        return self._subscription(updated)

    def update(self, subscription: Subscription, *, topic: str, url: str, secret: str, name: str) -> Subscription:
        """BC cannot move a subscription to another resource: one on the wrong entity is replaced."""
        if subscription.topic != topic:
            self.delete(subscription)
            return self.create(topic, url, secret, name)
        sub = self._patch(subscription, {"notificationUrl": url, "clientState": secret})
        self.context.redis.hset(self._known(), f"{url} {topic}", sub.id)
        return sub

    def enable(self, subscription: Subscription, secret: str) -> Subscription:
        return self._patch(subscription, {"clientState": secret})

    def renew(self, subscription: Subscription, secret: str) -> Subscription:
        """A PATCH (BC sets a new `expirationDateTime` three days out, after another handshake); one that
        expired in the meantime is made again."""
        try:
            return self._patch(subscription, {"clientState": secret})
        except BusinessCentralNotFound:
            return self.create(subscription.topic, subscription.url, secret, "")

    def delete(self, subscription: Subscription) -> None:
        try:
            record = self.bc.request("GET", self._url(subscription.id))
            etag = record.get("@odata.etag") if isinstance(record, dict) else None
            self.bc.send("DELETE", self._url(subscription.id), headers={"If-Match": str(etag or "*")})
        except BusinessCentralNotFound:
            pass  # already gone
        known = self.context.redis.hgetall(self._known())
        for field, value in known.items():
            if keys.text(value) == subscription.id:
                self.context.redis.hdel(self._known(), field)

    def renew_due(self, subscription: Subscription) -> bool:
        if subscription.expires is None:
            return False
        margin = timedelta(seconds=settings_of(self.system).webhook_renew_margin_seconds)
        return subscription.expires - datetime.now(UTC) <= margin

    def vanished(self, url: str, current: Iterable[Subscription]) -> set[str]:
        held = {sub.id for sub in current}
        known = self.context.redis.hgetall(self._known())
        gone = set()
        for field, value in known.items():
            at, _, topic = keys.text(field).rpartition(" ")
            if at == url and keys.text(value) not in held:
                gone.add(topic)
        return gone


__all__ = ["TOPICS", "BusinessCentralWebhooks", "check_endpoint"]
